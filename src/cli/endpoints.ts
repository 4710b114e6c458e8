// `hypha endpoint list`: the pods this node's agent made, from the agent
// (records and datapath state) or, with the agent down, from its records on
// disk and the pinned endpoints map.
import path from 'node:path';
import * as native from '../../native/index.ts';
import { endpointKeyCodec, endpointValueCodec } from '../datapath/endpoints-reconciler.ts';
import type { EndpointView } from '../endpoints/manager.ts';
import { readEndpointRecords } from '../endpoints/store.ts';

export interface EndpointListOptions {
  agent: string;
  stateDir: string;
  pinRoot: string;
  json?: boolean;
}

function fromDisk(stateDir: string, pinRoot: string): EndpointView[] {
  let map: native.MapHandle | undefined;
  try {
    map = native.openPinnedMap(path.join(pinRoot, 'hypha_endpoints_v1'));
  } catch {
    map = undefined;
  }
  try {
    return readEndpointRecords(stateDir).map((r) => {
      const v = map ? native.mapLookup(map, endpointKeyCodec.encode({ value: r.ip })) : undefined;
      const mapped = v !== undefined && endpointValueCodec.decode(v).ifindex === r.hostIfindex;
      let attached = false;
      try {
        attached = native.tcQuery(r.hostIfindex, 'ingress', { handle: 0x4859, priority: 1 }) !== undefined;
      } catch {
        attached = false;
      }
      return { ...r, datapath: { attached, mapped } };
    });
  } finally {
    if (map) native.close(map);
  }
}

export async function listEndpoints(o: EndpointListOptions): Promise<void> {
  let eps: EndpointView[];
  let source = 'agent';
  try {
    const res = await fetch(new URL('/endpoints', o.agent), { signal: AbortSignal.timeout(2000) });
    eps = (await res.json()) as EndpointView[];
  } catch {
    eps = fromDisk(o.stateDir, o.pinRoot);
    source = `records in ${o.stateDir} (agent not reachable at ${o.agent})`;
  }
  eps.sort((a, b) => `${a.pod?.namespace}/${a.pod?.name}`.localeCompare(`${b.pod?.namespace}/${b.pod?.name}`));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(eps, null, 2)}\n`);
    return;
  }
  if (source !== 'agent') process.stdout.write(`(from ${source})\n`);
  const rows = [['NAMESPACE', 'POD', 'CONTAINER', 'ADDRESS', 'INTERFACE', 'HOST VETH', 'LABELS', 'DATAPATH']];
  for (const e of eps) {
    const dp = e.datapath.attached && e.datapath.mapped ? 'ok' : [e.datapath.attached ? '' : 'programs missing', e.datapath.mapped ? '' : 'not in map'].filter(Boolean).join(', ');
    const labels = e.labels ? Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-' : '-';
    rows.push([e.pod?.namespace ?? '-', e.pod?.name ?? '-', e.containerId.slice(0, 12), e.ip, e.ifname, `${e.hostIfname} (${e.hostIfindex})`, labels.length > 40 ? `${labels.slice(0, 39)}…` : labels, dp]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('')}\n`);
  if (eps.length === 0) process.stdout.write('no endpoints\n');
}
