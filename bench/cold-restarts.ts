// The spread of the agent's cold start at one size: N Services x 10 endpoints
// are created once in a test API server (as bench/control-plane.ts does),
// then a fresh agent (empty pin root, default settings) is started on them
// --starts times, one after another. Each start prints its time from process
// start to the first programmed sync, its peak RSS (VmHWM) and its RSS and
// live heap after a collection (GET /memory?gc=1); a last line gives the
// range. bench-control measures one start per size; this says how far one
// start is from the next (V8's collections and the final compaction move the
// peak by a few MB). Each start also says when its lists were complete (from
// the agent's log), how long its first full sync took, and the CPU seconds
// the API server and etcd spent meanwhile (they share the machine's cores).
// Nothing is written under bench/results.
//
// With --other <checkout> (another clone, built with `make build`), the
// starts alternate between this checkout's bin/hypha and the other's on the
// same API server, so a change is compared under the same load and noise.
//
//   node bench/cold-restarts.ts [--services 100000] [--starts 5] [--other DIR]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { uintToIp4 } from '../src/abi/codec.ts';
import { TestAgent } from '../test/e2e/lib/agent.ts';
import { Cluster } from '../test/e2e/lib/cluster.ts';
import { cpuMs } from '../test/e2e/lib/proc.ts';
import { serviceObject, sliceObject } from '../test/e2e/lib/manifests.ts';
import { seedClient } from './api-seed.ts';

const { values } = parseArgs({ options: { services: { type: 'string', default: '100000' }, starts: { type: 'string', default: '5' }, other: { type: 'string' } } });
const N = Number(values.services);
const STARTS = Number(values.starts);
const log = (s: string): void => {
  process.stderr.write(`[cold-restarts ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};
// The same addresses as bench/control-plane.ts.
const vip = (i: number): string => uintToIp4(0x0a600000 + 1000 + i);
const epIp = (i: number): string => uintToIp4(0x0ac80000 + i + 1);
const cpuSeconds = (pid: number | undefined): number => (pid === undefined ? 0 : cpuMs(pid) / 1000);
/** Seconds from the agent's first log line to the first line whose msg matches. */
const phaseAt = (lines: Record<string, unknown>[], re: RegExp): number | undefined => {
  const t0 = Number(lines[0]?.time);
  const hit = lines.find((l) => re.test(String(l.msg)));
  return hit ? (Number(hit.time) - t0) / 1000 : undefined;
};
const status = (pid: number, field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

const cluster = await Cluster.create({ name: 'bcr', nodes: 1, log, clusterIpAllocator: 'bitmap', noAgents: true });
interface Start { bin: string; seconds: number; peakMb: number; rssMb: number; heapMb: number; listedS?: number; syncMs?: number; apiserverCpuS: number; etcdCpuS: number }
const runs: Start[] = [];
try {
  const api = seedClient(cluster.cp, 32);
  const t0 = performance.now();
  let next = 0;
  try {
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < N) {
        const i = next++;
        const spec = { name: `s${i}`, clusterIP: vip(i), ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
        const endpoints = Array.from({ length: 10 }, (_, k) => ({ ip: epIp(i * 10 + k), node: 'elsewhere' }));
        const ports = [{ name: 'http', port: 8080 }];
        await api.create('/api/v1/namespaces/default/services', serviceObject(spec), () => cluster.applyService(spec));
        await api.create('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', sliceObject(spec, endpoints, ports), () => cluster.applySlice(spec, endpoints, ports));
      }
    }));
  } finally {
    api.close();
  }
  log(`created ${N} Services and their EndpointSlices in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const bins = values.other ? ['this', 'other'] : ['this'];
  for (let run = 1; run <= STARTS * bins.length; run++) {
    const bin = bins[(run - 1) % bins.length]!;
    const agent = new TestAgent(cluster.topo, cluster.nodes[0]!, {
      ...(bin === 'other' ? { bin: path.resolve(values.other!, 'bin/hypha') } : {}),
      pinRoot: `/sys/fs/bpf/${cluster.topo.prefix}start${run}`, kubeconfig: cluster.cp.kubeconfigPath,
      workDir: path.join(cluster.work, `start-${run}`), cni: false, mapSizes: {},
    });
    try {
      const pids = cluster.cp.pids();
      const api0 = cpuSeconds(pids.apiserver);
      const etcd0 = cpuSeconds(pids.etcd);
      const t = performance.now();
      await agent.start(600_000);
      const seconds = (performance.now() - t) / 1000;
      const apiserverCpuS = cpuSeconds(pids.apiserver) - api0;
      const etcdCpuS = cpuSeconds(pids.etcd) - etcd0;
      const pid = agent.proc!.pid!;
      const peakMb = status(pid, 'VmHWM');
      const mem = JSON.parse((await agent.http('/memory?gc=1')).body) as { rssMb: number; heapUsedMb: number };
      // Where the start went: its log's times (first line to "listed"), the first sync's own figure.
      const lines = agent.logs();
      const listedS = phaseAt(lines, /^Kubernetes state listed/);
      const syncMs = Number(lines.find((l) => l.msg === 'load balancer synced' && l.kind === 'full')?.ms) || undefined;
      runs.push({ bin, seconds, peakMb, rssMb: mem.rssMb, heapMb: mem.heapUsedMb, listedS, syncMs, apiserverCpuS, etcdCpuS });
      log(`start ${run}${values.other ? ` (${bin})` : ''}: ready in ${seconds.toFixed(2)} s (listed at ${listedS?.toFixed(2)} s of the agent's log, first sync ${syncMs} ms; `
        + `apiserver ${apiserverCpuS.toFixed(1)} CPU-s, etcd ${etcdCpuS.toFixed(1)}), peak RSS ${peakMb.toFixed(0)} MB; `
        + `after a collection RSS ${mem.rssMb} MB, live heap ${mem.heapUsedMb} MB; ${agent.frontends().length} frontends`);
    } finally {
      await agent.stop();
      agent.cleanupPins();
    }
  }
} finally {
  await cluster.destroy();
}
const range = (xs: number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
for (const bin of new Set(runs.map((r) => r.bin))) {
  const of = runs.filter((r) => r.bin === bin);
  const sorted = of.map((r) => r.seconds).sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({
    bin: bin === 'other' ? path.resolve(values.other!) : 'this', services: N, starts: of.length, seconds: range(sorted, 2), median_s: Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(2)),
    peak_rss_mb: range(of.map((r) => r.peakMb), 0), rss_after_gc_mb: range(of.map((r) => r.rssMb), 0), heap_mb: range(of.map((r) => r.heapMb), 0), runs: of,
  })}\n`);
}
