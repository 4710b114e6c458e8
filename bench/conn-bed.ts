// The connection-rate test bed of the benchmarks (bench-lb, bench-policy):
// one node namespace of the e2e Topology, a client pod, ten backend pods
// (BACKEND_IPS) running acceptd, and connrate in the client for a number of
// runs of a few seconds (median taken). With an agent, the agent starts first
// and makes the pods through the CNI plugin (its IPAM hands out 10.244.1.1 to
// the client, then BACKEND_IPS in order); without one the harness makes them
// with the same addresses.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BACKEND_IPS } from './lb-ns-per-packet.ts';
import type { TestAgent } from '../test/e2e/lib/agent.ts';
import { type Pod, Topology } from '../test/e2e/lib/topology.ts';

export const BENCH_BIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), 'build');
export const BACKEND_PORT = 8080;

export interface Bed {
  topo: Topology;
  client: Pod;
  backends: Pod[];
  work: string;
}

export interface Rate { conns_per_s: number; conns: number; failed: number }

export interface RateOptions {
  runs: number;
  seconds: number;
  concurrency: number | string;
  log: (s: string) => void;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

export async function bed(name: string, agent?: (topo: Topology, work: string) => Promise<TestAgent>): Promise<Bed & { agent?: TestAgent }> {
  const work = mkdtempSync(path.join(tmpdir(), 'hypha-bench-'));
  const topo = await Topology.create({ name });
  const node = await topo.addNode('n1', { podCidr: '10.244.1.0/24' });
  const a = agent ? await agent(topo, work) : undefined;
  const client = await topo.addPod(node, 'client', a ? {} : { ip: '10.244.1.1' });
  const backends: Pod[] = [];
  for (const [i, ip] of BACKEND_IPS.entries()) {
    const b = await topo.addPod(node, `b${i}`, a ? {} : { ip });
    if (b.ip !== ip) throw new Error(`backend b${i} got ${b.ip}, the Services name ${ip}`);
    backends.push(b);
  }
  await topo.exec(client, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
  for (const b of backends) {
    await topo.exec(b, ['sysctl', '-q', '-w', 'net.core.somaxconn=4096']);
    await topo.spawnReady(b, [path.join(BENCH_BIN, 'acceptd'), '--ports', String(BACKEND_PORT)]);
  }
  return { topo, client, backends, work, ...(a ? { agent: a } : {}) };
}

/** connrate in the client to random `targets` (ip:port): `runs` runs of
 *  `seconds` after 1 s of warm-up; the median rate and every run's counts. */
export async function connRate(b: Bed, targets: string[], opts: RateOptions): Promise<Rate> {
  const file = path.join(b.work, 'targets');
  writeFileSync(file, `${targets.join('\n')}\n`);
  const rates: number[] = [];
  let conns = 0;
  let failed = 0;
  for (let i = 0; i < opts.runs; i++) {
    const r = await b.topo.execJson<{ conns_per_s: number; conns: number; failed: number; errors: Record<string, number> }>(b.client, [
      path.join(BENCH_BIN, 'connrate'), '--targets', file, '--duration', String(opts.seconds), '--warmup', '1',
      '--concurrency', String(opts.concurrency), '--seed', String(i + 1),
    ]);
    if (r.failed > 0) opts.log(`  run ${i + 1}: ${r.failed} failed connections ${JSON.stringify(r.errors)}`);
    rates.push(r.conns_per_s);
    conns += r.conns + r.failed;
    failed += r.failed;
  }
  opts.log(`  conns/s runs: ${rates.map((x) => Math.round(x)).join(', ')}`);
  return { conns_per_s: Math.round(median(rates)), conns, failed };
}
