// Conntrack GC pass over a large map: the bounded-batch sweep the agent runs
// (Datapath.collectConntrack: lookup batches and delete runs of at most 4096
// entries, bpf/tc/ct_gc.c) next to the single-run design it replaced
// (bench/bpf/ct_gc_one_run.c: one bpf_for_each_map_elem over the whole map),
// on the same map in the same run. For each share of timed-out entries: the
// whole pass's wall and CPU time, and the longest single kernel call in CPU
// time (how long one CPU is held at a stretch: the single run has preemption
// off throughout, as every BPF_PROG_TEST_RUN of a tc program does).
//
//   node bench/ct-gc.ts [--entries 1000000] [--runs 3] [--batch 4096]
//
// Runs as root (loads programs, pins under a temporary /sys/fs/bpf root);
// writes bench/results/ct-gc.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as native from '../native/index.ts';
import { CtDir, CtFlags, layouts } from '../src/abi/abi.gen.ts';
import { codec } from '../src/abi/codec.ts';
import { CT_GC_KEYS_MAP, Datapath } from '../src/datapath/loader.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PEER_SRC = path.join(ROOT, 'bench/bpf/ct_gc_one_run.c');
const PEER_OBJ = path.join(ROOT, 'bench/build/ct_gc_one_run.o');

const { values: args } = parseArgs({
  options: {
    entries: { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '3' },
    batch: { type: 'string', default: '4096' },
  },
});
const ENTRIES = Number(args.entries);
const RUNS = Number(args.runs);
const BATCH = Number(args.batch);
for (const [name, v] of [['entries', ENTRIES], ['runs', RUNS], ['batch', BATCH]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} ${String(v)} is not a positive integer`);
}
// Per-CPU LRU lists: every CPU's share must hold all entries (userspace writes
// from whichever CPU it runs on).
const CT_SIZE = 2 ** Math.ceil(Math.log2(ENTRIES * 2));

const ctKey = codec<Record<string, unknown>>(layouts.hypha_ct4_key);
const ctEntry = codec<Record<string, unknown>>(layouts.hypha_ct4_entry);
const EXPIRES = layouts.hypha_ct4_entry.fields.find((f) => f.name === 'expires')!.offset;

function fill(dp: Datapath, deadShare: number): void {
  const now = Number(process.hrtime.bigint() / 1_000_000_000n);
  const ks = ctKey.layout.size;
  const vs = ctEntry.layout.size;
  const keyT = ctKey.encode({ saddr: '10.0.0.0', daddr: '10.96.0.10', sport: 0, dport: 80, proto: 6, dir: CtDir.SERVICE });
  const valT = ctEntry.encode({ nat_addr: '10.244.0.11', nat_addr2: '0.0.0.0', nat_port: 8080, nat_port2: 0, flags: CtFlags.SEEN_NON_SYN, svc_id: 1, backend_id: 1, expires: 0 });
  const chunk = 65536;
  const keys = new Uint8Array(chunk * ks);
  const values = new Uint8Array(chunk * vs);
  const kv = new DataView(keys.buffer);
  const vv = new DataView(values.buffer);
  const deadEvery = deadShare > 0 ? Math.round(1 / deadShare) : 0;
  for (let start = 0; start < ENTRIES; start += chunk) {
    const n = Math.min(chunk, ENTRIES - start);
    for (let j = 0; j < n; j++) {
      const i = start + j;
      keys.set(keyT, j * ks);
      kv.setUint32(j * ks, 0x0a000000 + Math.floor(i / 60000), false); // saddr
      kv.setUint16(j * ks + 8, 1024 + (i % 60000), false); // sport
      values.set(valT, j * vs);
      vv.setUint32(j * vs + EXPIRES, deadEvery && i % deadEvery === 0 ? now - 5 : now + 21600, true);
    }
    native.mapUpdateBatch(dp.map('hypha_ct4_v1'), keys.subarray(0, n * ks), values.subarray(0, n * vs), n);
  }
  const count = native.mapDump(dp.map('hypha_ct4_v1')).count;
  if (count !== ENTRIES) throw new Error(`filled ${count} of ${ENTRIES} entries (LRU evicted: map too small?)`);
}

function clear(dp: Datapath): void {
  const m = dp.map('hypha_ct4_v1');
  const { keys, count } = native.mapDump(m);
  if (count) native.mapDeleteBatch(m, keys, count);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};
const r2 = (n: number): number => Math.round(n * 100) / 100;

async function main(): Promise<void> {
  mkdirSync(path.dirname(PEER_OBJ), { recursive: true });
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-Wall', '-I', path.join(ROOT, 'bpf'), '-I', path.join(ROOT, 'bpf/include'),
    `-I/usr/include/${process.arch === 'x64' ? 'x86_64' : 'aarch64'}-linux-gnu`, '-c', PEER_SRC, '-o', PEER_OBJ]);
  const pinRoot = `/sys/fs/bpf/hypha-bench-ctgc-${process.pid}`;
  const dp = await Datapath.load({ pinRoot, mapSizes: { ct: CT_SIZE } });
  const peerObj = native.openObject(PEER_OBJ, { pinRoot, maxEntries: { hypha_ct4_v1: CT_SIZE } });
  const rows = [];
  try {
    await native.loadObject(peerObj);
    const peer = native.objectProgram(peerObj, 'ct_gc_one_run');
    const keysMap = native.openPinnedMap(path.join(pinRoot, CT_GC_KEYS_MAP));
    for (const deadShare of [0, 0.1, 0.5]) {
      const one = { ms: [] as number[], cpuMs: [] as number[], runMs: [] as number[], deleted: 0 };
      const bat = { ms: [] as number[], cpuMs: [] as number[], maxCallMs: [] as number[], maxCallWallMs: [] as number[], maxRunMs: [] as number[], deleted: 0, lookups: 0, runs: 0 };
      for (let run = 0; run < RUNS; run++) {
        clear(dp);
        fill(dp, deadShare);
        let t = performance.now();
        let cpu = process.cpuUsage();
        const o = await native.progTestRunAsync(peer, { data: new Uint8Array(64) });
        one.ms.push(performance.now() - t);
        cpu = process.cpuUsage(cpu);
        one.cpuMs.push((cpu.user + cpu.system) / 1000);
        one.runMs.push(o.durationNs / 1e6);
        one.deleted = o.retval;

        clear(dp);
        fill(dp, deadShare);
        t = performance.now();
        // what collectConntrack runs, with the kernel's own timing of the runs
        const s = await native.mapSweepAsync(dp.map('hypha_ct4_v1'), keysMap, dp.programs.ctGc, { expiresOffset: EXPIRES, batch: BATCH });
        bat.ms.push(performance.now() - t);
        bat.cpuMs.push(s.cpuNs / 1e6);
        bat.maxCallMs.push(s.maxCallCpuNs / 1e6);
        bat.maxCallWallMs.push(s.maxCallNs / 1e6);
        bat.maxRunMs.push(s.maxRunNs / 1e6);
        Object.assign(bat, { deleted: s.deleted, lookups: s.lookups, runs: s.runs });
      }
      const row = {
        entries: ENTRIES, timedOut: Math.round(ENTRIES * deadShare),
        oneRun: { passMs: r2(median(one.ms)), passCpuMs: r2(median(one.cpuMs)), longestCallMs: r2(median(one.runMs)), deleted: one.deleted },
        batched: {
          passMs: r2(median(bat.ms)), passCpuMs: r2(median(bat.cpuMs)), longestCallMs: r2(median(bat.maxCallMs)), longestCallWallMs: r2(median(bat.maxCallWallMs)),
          longestRunMs: r2(median(bat.maxRunMs)), deleted: bat.deleted, lookups: bat.lookups, runs: bat.runs, batch: BATCH,
        },
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
    native.close(keysMap);
    native.close(peer);
  } finally {
    native.close(peerObj);
    dp.close();
    rmSync(pinRoot, { recursive: true, force: true });
  }
  const out = path.join(ROOT, 'bench/results/ct-gc.json');
  const machine = { kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(), cpus: availableParallelism(), loadAverage: loadavg().map(r2) };
  writeFileSync(out, `${JSON.stringify({ at: new Date().toISOString(), machine, runs: RUNS, rows }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

await main();
