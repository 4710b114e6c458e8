// Where the load balancer's memory goes, without an API server: N Services
// of one port and 10 endpoints (raw objects as the API sends them) through
// normalize, LbSync, LbTable and LbReconciler over real maps in a pin root of
// its own; prints RSS and heap after a full collection when fed and when
// programmed, and the flush time. `snap` also writes a heap snapshot to
// /tmp/hypha-lb-memory.heapsnapshot. Root (BPF maps).
//
//   node --expose-gc --max-old-space-size=4000 bench/lb-memory.ts 100000 [snap]
import { pino } from 'pino';
import { Datapath } from '../src/datapath/loader.ts';
import { BACKENDS_MAP, LbReconciler, NAMES_MAP, SERVICES_MAP } from '../src/datapath/lb-reconciler.ts';
import { LbTable } from '../src/services/lb-table.ts';
import { LbSync } from '../src/agent/lb-sync.ts';
import { normalizeEndpointSlice, normalizeService } from '../src/services/normalize.ts';
import { uintToIp4 } from '../src/abi/codec.ts';
import { readFileSync, rmSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
const N = Number(process.argv[2] ?? 25000);
const gc = (globalThis as { gc?: () => void }).gc!;
const mb = (x: number) => Math.round(x / 1048576);
const mem = (what: string) => {
  gc(); gc();
  const m = process.memoryUsage();
  console.log(what.padEnd(30), 'rss', mb(m.rss), 'heap', mb(m.heapUsed), 'heapTotal', mb(m.heapTotal), 'ext', mb(m.external), 'ab', mb(m.arrayBuffers));
  const st = readFileSync('/proc/self/status', 'utf8');
  const h = getHeapStatistics();
  console.log(''.padEnd(30), ['RssAnon', 'RssFile'].map((k) => `${k} ${mb(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) * 1024)}`).join(', '), 'v8 malloced', mb(h.malloced_memory), 'peak', mb(h.peak_malloced_memory));
  // V8's spaces: committed (resident for good once touched) against used
  console.log(''.padEnd(30), getHeapSpaceStatistics().filter((x) => x.space_size > 1 << 20).map((x) => `${x.space_name.replace('_space', '')} ${mb(x.space_used_size)}/${mb(x.space_size)}`).join(', '));
};
// The peak of the heap V8 committed while it runs (sampled between turns of the event loop).
let peakHeapTotal = 0;
const sampler = setInterval(() => (peakHeapTotal = Math.max(peakHeapTotal, process.memoryUsage().heapTotal)), 20);
const pinRoot = '/sys/fs/bpf/hymem-' + process.pid;
mem('start');
const dp = await Datapath.load({ pinRoot, mapSizes: { services: 1 << 21, backends: 1 << 21, affinity: 1024, ct: 65536 } });
mem('datapath');
const table = new LbTable({ services: 1 << 21, backends: 1 << 21 });
const rec = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP), names: dp.mapIO(NAMES_MAP), changed: () => dp.bumpLbGeneration() });
const sync = new LbSync({ table, reconciler: rec, node: { name: 'n1', addresses: ['192.168.1.1'] }, log: pino({ level: 'warn' }), gated: true });
const vip = (i: number) => uintToIp4(0x0a600000 + 1000 + i);
const ep = (i: number) => uintToIp4(0x0ac80000 + i + 1);
for (let i = 0; i < N; i++) {
  const raw = { metadata: { name: `s${i}`, namespace: 'default', uid: `u-${i}-aaaa-bbbb-cccc`, resourceVersion: String(i), creationTimestamp: '2026-12-01T00:00:00Z' }, spec: { type: 'ClusterIP', clusterIP: vip(i), clusterIPs: [vip(i)], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: `s${i}` }, sessionAffinity: 'None', ipFamilies: ['IPv4'] } };
  const n = normalizeService(raw);
  sync.report(`services default/s${i}`, n.problems);
  sync.setService(`default/s${i}`, n.value);
  const sl = { metadata: { name: `s${i}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${i}` }, resourceVersion: String(i) }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: Array.from({ length: 10 }, (_, k) => ({ addresses: [ep(i * 10 + k)], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'elsewhere' })) };
  const s = normalizeEndpointSlice(sl);
  sync.report(`endpointslices default/s${i}-1`, s.problems);
  sync.setSlice(`default/s${i}-1`, s.value);
}
mem('fed (normalized, not flushed)');
const t0 = performance.now();
sync.open();
await sync.flushed();
console.log('flush ms', Math.round(performance.now() - t0), 'peak heapTotal (sampled)', mb(peakHeapTotal));
mem('flushed');
if (process.argv[3] === 'snap') { const v8 = await import('node:v8'); console.log(v8.writeHeapSnapshot('/tmp/hypha-lb-memory.heapsnapshot')); }
clearInterval(sampler);
sync.stop(); dp.close(); rmSync(pinRoot, { recursive: true, force: true });
