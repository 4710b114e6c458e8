// An endpoint's compiled policy in words (`hypha policy get ns/pod`), and the
// pieces trace.ts prints with: identities, entries and provenance.
import type { CidrIdentity, DirectionPolicy, EndpointPolicy, Entry, Identity, Provenance } from './model.ts';
import { CIDR_IDENTITY_BASE, RESERVED_IDENTITIES } from './model.ts';

/** What the printers may know about identities; all optional. */
export interface NameContext {
  identities?: ReadonlyMap<number, Identity> | readonly Identity[];
  cidrs?: readonly CidrIdentity[];
}

function lookupIdentity(ctx: NameContext, id: number): Identity | undefined {
  const ids = ctx.identities;
  if (!ids) return undefined;
  if (ids instanceof Map) return ids.get(id);
  return (ids as readonly Identity[]).find((i) => i.id === id);
}

export function identityName(id: number | 'any', ctx: NameContext = {}): string {
  if (id === 'any') return 'any peer';
  const reserved = RESERVED_IDENTITIES[id];
  if (reserved) return `reserved:${reserved} (${id})`;
  if (id >= CIDR_IDENTITY_BASE) {
    const c = ctx.cidrs?.find((x) => x.identity === id);
    return c ? `cidr:${c.cidr} (${id})` : `cidr identity ${id}`;
  }
  const ident = lookupIdentity(ctx, id);
  if (!ident) return `identity ${id}`;
  const labels = Object.keys(ident.podLabels).sort().map((k) => `${k}=${ident.podLabels[k]}`).join(',');
  return `identity ${id} (${ident.namespace}: ${labels || 'no labels'})`;
}

export function portsText(e: Pick<Entry, 'proto' | 'ports'>): string {
  if (e.proto === 'any') return 'any protocol, any port';
  if (e.ports === 'any') return `${e.proto}, any port`;
  return e.ports.from === e.ports.to ? `${e.proto} port ${e.ports.from}` : `${e.proto} ports ${e.ports.from}-${e.ports.to}`;
}

export function provenanceText(p: Provenance): string {
  if (p.implicit === 'host') return "implicit: the node's own traffic to its pods is never restricted by NetworkPolicy";
  const peerKey = p.direction === 'ingress' ? 'from' : 'to';
  const peer = p.peer === 'all' ? `any peer (no ${peerKey})` : `${peerKey}[${p.peer}]`;
  const port = p.port === 'all' ? 'any port (no ports)' : `ports[${p.port}]`;
  return `${p.policy} spec.${p.direction}[${p.rule}]: ${peer}, ${port}`;
}

export function entryText(e: Entry, dirOrPeerWord: 'from' | 'to', ctx: NameContext = {}): string {
  return `allow ${dirOrPeerWord} ${identityName(e.identity, ctx)} on ${portsText(e)}`;
}

function directionLines(label: 'ingress' | 'egress', d: DirectionPolicy, ctx: NameContext): string[] {
  if (!d.enforced) return [`  ${label}: open (no policy selects this pod for ${label})`];
  const lines = [`  ${label}: enforced, default deny (selected by ${d.selectedBy.join(', ')}); ${d.entries.length} allow ${d.entries.length === 1 ? 'entry' : 'entries'}`];
  if (d.overflow !== undefined) lines.push(`    ${d.overflow} entries did not fit: none of the policies' allows are programmed`);
  const word = label === 'ingress' ? 'from' : 'to';
  for (const e of d.entries) {
    lines.push(`    ${entryText(e, word, ctx)}`);
    for (const p of e.because) lines.push(`      because ${provenanceText(p)}`);
  }
  return lines;
}

/** An endpoint's policy as lines of text. */
export function describe(ep: EndpointPolicy, ctx: NameContext = {}): string[] {
  return [
    `${ep.key} (${identityName(ep.endpoint.identity, ctx)})`,
    ...directionLines('ingress', ep.ingress, ctx),
    ...directionLines('egress', ep.egress, ctx),
  ];
}
