// Which L7 checks apply to one TCP flow the datapath redirected to the
// proxy: one per direction enforced at a local pod (egress of the source,
// ingress of the destination). Per direction, the entries that allow the
// flow decide: 'all' when one of them carries no http (a plain L3/L4 allow:
// every request passes, as in Cilium), else the union of their http rules,
// [] when none allows the flow (no request passes). Pure.
import type { DirectionCheck, HttpRule } from '../l7/types.ts';
import { cidrIdentityOf, type CompiledPolicy } from './compile.ts';
import type { Direction, EndpointPolicy, Protocol } from './model.ts';
import { entryMatches } from './trace.ts';

export interface L7Party {
  ip: string;
  identity: number;
  /** 'ns/name' when known; otherwise the local endpoint is found by ip. */
  endpoint?: string;
}

export interface L7Flow {
  src: L7Party;
  dst: L7Party;
  proto: Protocol;
  port: number;
}

function localOf(compiled: CompiledPolicy, p: L7Party): EndpointPolicy | undefined {
  if (p.endpoint !== undefined) return compiled.endpoints.find((e) => e.key === p.endpoint);
  return compiled.endpoints.find((e) => e.endpoint.addresses?.includes(p.ip));
}

function check(compiled: CompiledPolicy, direction: Direction, at: EndpointPolicy | undefined, peer: L7Party, flow: L7Flow): DirectionCheck | undefined {
  if (!at) return undefined;
  const d = at[direction];
  if (!d.enforced) return undefined;
  const cidr = cidrIdentityOf(compiled.cidrs, peer.ip);
  const ids = [peer.identity, ...(cidr ? [cidr.identity] : [])];
  const matching = d.entries.filter((e) => entryMatches(e, ids, flow.proto, flow.port));
  if (matching.some((e) => e.http === undefined)) return { direction, endpoint: at.key, rules: 'all' };
  const rules: HttpRule[] = [];
  for (const e of matching) {
    for (const r of e.http ?? []) if (!rules.some((x) => x.policy === r.policy && x.rule === r.rule)) rules.push(r);
  }
  return { direction, endpoint: at.key, rules };
}

export function l7ChecksFor(compiled: CompiledPolicy, flow: L7Flow): DirectionCheck[] {
  const out: DirectionCheck[] = [];
  const egress = check(compiled, 'egress', localOf(compiled, flow.src), flow.dst, flow);
  if (egress) out.push(egress);
  const ingress = check(compiled, 'ingress', localOf(compiled, flow.dst), flow.src, flow);
  if (ingress) out.push(ingress);
  return out;
}
