// What the load-balancer maps hold, grouped for people: frontend -> scopes ->
// backends. Reads pinned maps, so it works with the agent down.
import * as native from '../../native/index.ts';
import type { MapHandle } from '../../native/index.ts';
import { BackendFlags, type Lb4Backend, SvcFlags } from '../abi/abi.gen.ts';
import { backendCodec, decodeName, svcKeyCodec, svcValCodec, u32Codec } from '../abi/lb-codecs.ts';
import { layouts } from '../abi/abi.gen.ts';

const PROTO: Record<number, string> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

export interface BackendView {
  id: number;
  address: string;
  state: 'active' | 'terminating' | 'missing';
  local: boolean;
}

export interface FrontendView {
  /** "namespace/name:port" of the Service port, when the names map has it. */
  service: string;
  frontend: string;
  svcId: number;
  kind: string;
  scopes: { scope: 'internal' | 'external'; flags: string[]; backends: BackendView[] }[];
  /** Known to the frontend but taking no new flows. */
  standby: BackendView[];
}

function flagNames(flags: number): string[] {
  const names: string[] = [];
  if (flags & SvcFlags.AFFINITY) names.push('affinity');
  if (flags & SvcFlags.LOCAL_ONLY) names.push('local-only');
  if (flags & SvcFlags.TERMINATING_FALLBACK) names.push('terminating-fallback');
  return names;
}

function kindOf(flags: number): string {
  if (flags & SvcFlags.NODEPORT) return 'NodePort';
  if (flags & SvcFlags.LOADBALANCER) return 'LoadBalancer';
  if (flags & SvcFlags.EXTERNAL_IP) return 'ExternalIP';
  return 'ClusterIP';
}

export function describeLbMaps(services: MapHandle, backends: MapHandle, names?: MapHandle): FrontendView[] {
  const nameOf = new Map<number, string>();
  if (names) {
    const nd = native.mapDump(names);
    const size = layouts.hypha_lb4_svc_name.size;
    for (let i = 0; i < nd.count; i++) {
      nameOf.set(u32Codec.decode(nd.keys, i * u32Codec.layout.size).value, decodeName(nd.values.subarray(i * size, (i + 1) * size)));
    }
  }
  const be = new Map<number, Lb4Backend>();
  const bd = native.mapDump(backends);
  for (let i = 0; i < bd.count; i++) be.set(u32Codec.decode(bd.keys, i * u32Codec.layout.size).value, backendCodec.decode(bd.values, i * backendCodec.layout.size));
  const sd = native.mapDump(services);
  const masters = new Map<string, { scope: number; count: number; flags: number; svcId: number; slots: Map<number, number> }>();
  const slots: { id: string; slot: number; backend: number }[] = [];
  for (let i = 0; i < sd.count; i++) {
    const k = svcKeyCodec.decode(sd.keys, i * svcKeyCodec.layout.size);
    const v = svcValCodec.decode(sd.values, i * svcValCodec.layout.size);
    if (k.proto === 0) continue; // VIP marker
    const id = `${k.addr}:${k.dport}/${PROTO[k.proto] ?? k.proto}|${k.scope}`;
    if (k.slot === 0) masters.set(id, { scope: k.scope, count: v.count, flags: v.flags, svcId: v.svc_id, slots: new Map() });
    else slots.push({ id, slot: k.slot, backend: v.backend_id });
  }
  for (const s of slots) masters.get(s.id)?.slots.set(s.slot, s.backend);
  const view = (id: number): BackendView => {
    const b = be.get(id);
    if (!b) return { id, address: '?', state: 'missing', local: false };
    return { id, address: `${b.addr}:${b.port}`, state: b.flags & BackendFlags.TERMINATING ? 'terminating' : 'active', local: !!(b.flags & BackendFlags.LOCAL) };
  };
  const byFrontend = new Map<string, FrontendView>();
  for (const [id, m] of [...masters].sort(([a], [b]) => a.localeCompare(b))) {
    const fe = id.split('|')[0] ?? id;
    let f = byFrontend.get(fe);
    if (!f) byFrontend.set(fe, (f = { service: nameOf.get(m.svcId) ?? '', frontend: fe, svcId: m.svcId, kind: kindOf(m.flags), scopes: [], standby: [] }));
    const ids = [...Array(m.count).keys()].map((n) => m.slots.get(n + 1) ?? 0);
    f.scopes.push({ scope: m.scope === 0 ? 'internal' : 'external', flags: flagNames(m.flags), backends: ids.map(view) });
  }
  // Backends by frontend id once (scanning every backend per frontend took
  // hours at 100 000 Services of 10 backends).
  const bySvc = new Map<number, number[]>();
  for (const [id, b] of be) {
    let l = bySvc.get(b.svc_id);
    if (!l) bySvc.set(b.svc_id, (l = []));
    l.push(id);
  }
  for (const f of byFrontend.values()) {
    const inSlots = new Set(f.scopes.flatMap((s) => s.backends.map((b) => b.id)));
    for (const id of bySvc.get(f.svcId) ?? []) if (!inSlots.has(id)) f.standby.push(view(id));
  }
  return [...byFrontend.values()].sort((a, b) => a.service.localeCompare(b.service) || a.frontend.localeCompare(b.frontend));
}
