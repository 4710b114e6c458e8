// Per-packet cost of hypha_from_pod alone (new flow, established, floor), for
// 1 and 100 000 Services, through the measurement bench-lb uses
// (bench/lb-ns-per-packet.ts). --tree runs another checkout's measurement and
// objects (built there: `make build`), so two versions can be compared in one
// session, alternately, on the same machine:
//   node bench/packet-cost.ts [--tree DIR] [--services 1,100000]
import path from 'node:path';
import { parseArgs } from 'node:util';

const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({ options: { tree: { type: 'string', default: here }, services: { type: 'string', default: '1,100000' } } });
const tree = path.resolve(values.tree);
const { measurePacketCost } = await import(path.join(tree, 'bench/lb-ns-per-packet.ts')) as typeof import('./lb-ns-per-packet.ts');
for (const n of values.services.split(',').map(Number)) {
  const c = await measurePacketCost(n, { repeat: 1_000_000, runs: 5, floorObject: path.join(here, 'bench/build/floor.o'), log: () => {} });
  process.stdout.write(`${JSON.stringify({ tree, services: n, new_flow_ns: c.newFlowNs, established_ns: c.establishedNs, floor_ns: c.floorNs })}\n`);
}
