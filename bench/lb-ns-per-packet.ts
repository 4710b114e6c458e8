// Per-packet cost of the Service translation program (hypha_from_pod)
// through BPF_PROG_TEST_RUN, for a number of Services with 10 backends each,
// next to a program that only returns (the floor).
//
// BPF_PROG_TEST_RUN runs the program `repeat` times on one buffer, so a
// rewritten packet would stop being Service traffic after the first run. The
// measured Service therefore lists its own address among its 10 backends, and
// the client port is chosen so the flow hashes to that backend: the rewrite
// then writes the bytes that are already there, and every run does the whole
// job. Two paths are measured:
//  - new flow: SYN+FIN, so each run finds the flow's conntrack entry closing
//    and treats the packet as a new connection on the reused tuple: Service
//    lookup, backend selection, two conntrack writes, NAT and checksums;
//  - established: an ACK on a tracked flow: conntrack lookup, NAT, checksums.
import { rmSync } from 'node:fs';
import path from 'node:path';
import * as native from '../native/index.ts';
import { LbReconciler, BACKENDS_MAP, SERVICES_MAP } from '../src/datapath/lb-reconciler.ts';
import { Datapath } from '../src/datapath/loader.ts';
import { uintToIp4 } from '../src/abi/codec.ts';
import { compileService } from '../src/services/compile.ts';
import { slice, svc } from '../src/services/fixtures.ts';
import { LbTable } from '../src/services/lb-table.ts';
import { buildPacket, parsePacket } from '../test/lib/packet.ts';

export const BENCH_NODE = { name: 'bench-node', addresses: ['192.168.77.11'] };
export const BACKEND_IPS = Array.from({ length: 10 }, (_, i) => `10.244.1.${i + 2}`);
export const vipOf = (i: number): string => uintToIp4(0x0a600000 + i + 1); // 10.96.0.1 onwards
const CLIENT = '10.244.1.200';

export interface PacketCost {
  services: number;
  newFlowNs: number;
  establishedNs: number;
  floorNs: number;
  programSeconds: number;
}

export const BENCH_MAP_SIZES = { services: 1 << 21, backends: 1 << 20, affinity: 1 << 16, ct: 1 << 20 };

/** Program `n` Services (the last one is the probe) through the real compiler, table and reconciler. */
async function program(dp: Datapath, n: number, log: (s: string) => void): Promise<{ probeVip: string; seconds: number }> {
  const t0 = performance.now();
  const table = new LbTable({ services: dp.sizes.services, backends: dp.sizes.backends });
  const lb = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP) });
  for (let i = 0; i < n - 1; i++) {
    table.set(`default/s${i}`, compileService(svc(`s${i}`, { clusterIPs: [vipOf(i)] }), [slice(`s${i}`, BACKEND_IPS)], BENCH_NODE));
    if (i % 20000 === 19999) log(`  compiled ${i + 1}/${n} Services`);
  }
  const probeVip = vipOf(n - 1);
  const probe = svc('probe', { clusterIPs: [probeVip], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }] });
  const probeSlices = [
    slice('probe', [probeVip], { name: 'probe-self', ports: [{ name: 'http', protocol: 'TCP', port: 80 }] }),
    slice('probe', BACKEND_IPS.slice(0, 9), { name: 'probe-pods', ports: [{ name: 'http', protocol: 'TCP', port: 80 }] }),
  ];
  table.set('default/probe', compileService(probe, probeSlices, BENCH_NODE));
  const stats = await lb.resync(table);
  log(`  programmed ${n} Services: ${stats.upserts} entries in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { probeVip, seconds: (performance.now() - t0) / 1000 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

export async function measurePacketCost(n: number, opts: { repeat: number; runs: number; floorObject: string; log: (s: string) => void }): Promise<PacketCost> {
  const pinRoot = `/sys/fs/bpf/hypha-bench-${process.pid}`;
  rmSync(pinRoot, { recursive: true, force: true });
  const dp = await Datapath.load({ pinRoot, mapSizes: BENCH_MAP_SIZES });
  const floorObj = native.openObject(opts.floorObject);
  try {
    await native.loadObject(floorObj);
    const floor = native.objectProgram(floorObj, 'bench_floor');
    const { probeVip, seconds } = await program(dp, n, opts.log);
    const prog = dp.programs.fromPod;
    // The client port whose flow lands on the probe's own address.
    let sport = 0;
    for (let p = 40000; p < 41000 && !sport; p++) {
      const out = parsePacket(native.progTestRun(prog, { data: buildPacket({ src: CLIENT, dst: probeVip, proto: 'tcp', sport: p, dport: 80, flags: ['SYN', 'FIN'] }) }).dataOut);
      if (out.dst === probeVip && out.dport === 80) sport = p;
    }
    if (!sport) throw new Error('no client port hashes to the probe backend');
    const run = (p: native.ProgHandle, data: Uint8Array): number => {
      const r = native.progTestRun(p, { data, repeat: opts.repeat });
      const out = parsePacket(r.dataOut);
      if (p === prog && (out.dst !== probeVip || out.dport !== 80 || r.retval !== 0)) throw new Error(`probe packet changed: ${JSON.stringify(out)}`);
      return r.durationNs;
    };
    const newFlow = buildPacket({ src: CLIENT, dst: probeVip, proto: 'tcp', sport, dport: 80, flags: ['SYN', 'FIN'] });
    const established = buildPacket({ src: CLIENT, dst: probeVip, proto: 'tcp', sport: sport + 1000, dport: 80, flags: ['ACK'] });
    const newFlowNs: number[] = [];
    const establishedNs: number[] = [];
    const floorNs: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      newFlowNs.push(run(prog, newFlow));
      floorNs.push(run(floor, newFlow));
    }
    // The established flow must land on the probe address too: find its port.
    let eport = 0;
    for (let p = 50000; p < 51000 && !eport; p++) {
      const out = parsePacket(native.progTestRun(prog, { data: buildPacket({ src: CLIENT, dst: probeVip, proto: 'tcp', sport: p, dport: 80, flags: ['SYN'] }) }).dataOut);
      if (out.dst === probeVip) eport = p;
    }
    const est = buildPacket({ src: CLIENT, dst: probeVip, proto: 'tcp', sport: eport, dport: 80, flags: ['ACK'] });
    void established;
    for (let i = 0; i < opts.runs; i++) establishedNs.push(run(prog, est));
    native.close(floor);
    return { services: n, newFlowNs: median(newFlowNs), establishedNs: median(establishedNs), floorNs: median(floorNs), programSeconds: seconds };
  } finally {
    native.close(floorObj);
    dp.close();
    rmSync(pinRoot, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const n = Number(process.argv[2] ?? 1000);
  const r = await measurePacketCost(n, { repeat: 1_000_000, runs: 5, floorObject: path.resolve('bench/build/floor.o'), log: (s) => process.stderr.write(`${s}\n`) });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
