// The verdict for one flow, from the compiled output the datapath is
// programmed with (`hypha policy trace`): egress judged at the source when
// it is a compiled endpoint, ingress at the destination when it is one, each
// by the same rule the datapath applies: a direction that is not enforced is
// open; an enforced one allows the flow when an entry matches the peer's
// identity or its address's CIDR identity, the protocol and the port, and
// denies it otherwise (default deny). Flows to a Service address are judged
// against the backend chosen for them: resolve the ClusterIP first.
import { isIPv4 } from 'node:net';
import { cidrIdentityOf, type CompiledPolicy } from './compile.ts';
import { identityName, type NameContext, portsText, provenanceText } from './describe.ts';
import { type CidrIdentity, type Direction, type EndpointPolicy, type Entry, IDENTITY_WORLD, type Protocol } from './model.ts';

export type TraceParty = { endpoint: string } | { identity: number } | { ip: string };
export type TraceProto = Protocol | 'ICMP';

export interface TraceQuery {
  from: TraceParty;
  to: TraceParty;
  proto: TraceProto;
  /** Destination port; required for TCP, UDP and SCTP. */
  port?: number;
}

export interface TraceEnv {
  /** Identity of an address the compiled endpoints do not hold (other nodes'
   *  pods, nodes): the ipcache's answer. Undefined: world. */
  ipcache?: (ip: string) => number | undefined;
}

export interface ResolvedParty {
  /** 'ns/name' when the party is a compiled endpoint. */
  endpoint?: string;
  identity: number;
  address?: string;
  /** The address's CIDR identity: its most specific ipBlock prefix. */
  cidr?: CidrIdentity;
}

export type DirectionVerdict =
  | 'allowed'
  /** Enforced and no entry matches: the default deny. */
  | 'denied'
  /** No policy selects the endpoint for this direction. */
  | 'open'
  /** That side is not a compiled endpoint: judged elsewhere, or not at all (world). */
  | 'elsewhere';

export interface DirectionTrace {
  direction: Direction;
  /** The endpoint whose policy judges it ('ns/name'). */
  at?: string;
  verdict: DirectionVerdict;
  /** Identities of the peer the entries were matched against. */
  peerIdentities: number[];
  /** The entries that allow the flow (every one of them, with provenance). */
  allowedBy: Entry[];
  /** Policies that put the direction in default deny. */
  selectedBy: string[];
  /** The direction's entries overflowed the map (denies all). */
  overflow?: number;
}

export interface TraceResult {
  verdict: 'allowed' | 'denied';
  from: ResolvedParty;
  to: ResolvedParty;
  proto: TraceProto;
  port?: number;
  egress: DirectionTrace;
  ingress: DirectionTrace;
}

export class TraceInputError extends Error {
  readonly code = 'EINVALID';
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, why: string) {
    super(`${field}: ${JSON.stringify(value)} ${why}`);
    this.name = 'TraceInputError';
    this.field = field;
    this.value = value;
  }
}

export function isTraceInputError(err: unknown): err is TraceInputError {
  return err instanceof TraceInputError;
}

function resolve(compiled: CompiledPolicy, party: TraceParty, field: string, env: TraceEnv, byKey: Map<string, EndpointPolicy>): ResolvedParty {
  const withCidr = (p: ResolvedParty): ResolvedParty => {
    const cidr = p.address ? cidrIdentityOf(compiled.cidrs, p.address) : undefined;
    return cidr ? { ...p, cidr } : p;
  };
  if ('endpoint' in party) {
    const ep = byKey.get(party.endpoint);
    if (!ep) throw new TraceInputError(`${field}.endpoint`, party.endpoint, 'is not a compiled endpoint (give its identity or address instead)');
    const address = ep.endpoint.addresses?.[0];
    return withCidr({ endpoint: ep.key, identity: ep.endpoint.identity, ...(address ? { address } : {}) });
  }
  if ('identity' in party) {
    if (!Number.isInteger(party.identity) || party.identity < 1) {
      throw new TraceInputError(`${field}.identity`, party.identity, 'is not a valid identity (a positive integer)');
    }
    return { identity: party.identity };
  }
  const ip = party.ip;
  if (!isIPv4(ip)) throw new TraceInputError(`${field}.ip`, ip, 'is not an IPv4 address');
  const local = compiled.endpoints.find((e) => e.endpoint.addresses?.includes(ip));
  if (local) return withCidr({ endpoint: local.key, identity: local.endpoint.identity, address: ip });
  return withCidr({ identity: env.ipcache?.(ip) ?? IDENTITY_WORLD, address: ip });
}

export function entryMatches(e: Entry, peerIdentities: readonly number[], proto: TraceProto, port: number | undefined): boolean {
  if (e.identity !== 'any' && !peerIdentities.includes(e.identity)) return false;
  if (e.proto === 'any') return true;
  if (e.proto !== proto || port === undefined) return false;
  return e.ports === 'any' || (e.ports.from <= port && port <= e.ports.to);
}

function judge(direction: Direction, at: EndpointPolicy | undefined, peer: ResolvedParty, proto: TraceProto, port: number | undefined): DirectionTrace {
  const peerIdentities = [peer.identity, ...(peer.cidr ? [peer.cidr.identity] : [])];
  if (!at) return { direction, verdict: 'elsewhere', peerIdentities, allowedBy: [], selectedBy: [] };
  const d = at[direction];
  const base = { direction, at: at.key, peerIdentities, selectedBy: d.selectedBy, ...(d.overflow !== undefined ? { overflow: d.overflow } : {}) };
  if (!d.enforced) return { ...base, verdict: 'open', allowedBy: [] };
  const allowedBy = d.entries.filter((e) => entryMatches(e, peerIdentities, proto, port));
  return { ...base, verdict: allowedBy.length > 0 ? 'allowed' : 'denied', allowedBy };
}

export function trace(compiled: CompiledPolicy, q: TraceQuery, env: TraceEnv = {}): TraceResult {
  if (!['TCP', 'UDP', 'SCTP', 'ICMP'].includes(q.proto)) throw new TraceInputError('proto', q.proto, 'is not one of TCP, UDP, SCTP, ICMP');
  if (q.proto !== 'ICMP' && (q.port === undefined || !Number.isInteger(q.port) || q.port < 1 || q.port > 65535)) {
    throw new TraceInputError('port', q.port, `is not a valid port number (1-65535), which ${q.proto} needs`);
  }
  const port = q.proto === 'ICMP' ? undefined : q.port;
  const byKey = new Map(compiled.endpoints.map((e) => [e.key, e]));
  const from = resolve(compiled, q.from, 'from', env, byKey);
  const to = resolve(compiled, q.to, 'to', env, byKey);
  const egress = judge('egress', from.endpoint ? byKey.get(from.endpoint) : undefined, to, q.proto, port);
  const ingress = judge('ingress', to.endpoint ? byKey.get(to.endpoint) : undefined, from, q.proto, port);
  const verdict = egress.verdict === 'denied' || ingress.verdict === 'denied' ? 'denied' : 'allowed';
  return { verdict, from, to, proto: q.proto, ...(port !== undefined ? { port } : {}), egress, ingress };
}

function partyText(p: ResolvedParty, ctx: NameContext): string {
  const who = [p.endpoint, p.address].filter(Boolean).join(' ');
  const parts = [identityName(p.identity, ctx)];
  if (p.cidr) parts.push(`in cidr:${p.cidr.cidr} (${p.cidr.identity})`);
  return who ? `${who} [${parts.join(', ')}]` : parts[0]!;
}

/** The trace as lines of text, as `hypha policy trace` prints it. */
export function formatTrace(r: TraceResult, ctx: NameContext = {}): string[] {
  const flow = r.proto === 'ICMP' ? 'ICMP' : `${r.port}/${r.proto}`;
  const lines = [`${partyText(r.from, ctx)} -> ${partyText(r.to, ctx)} ${flow}: ${r.verdict.toUpperCase()}`];
  for (const d of [r.egress, r.ingress]) {
    const where = d.direction === 'egress' ? 'egress at the source' : 'ingress at the destination';
    switch (d.verdict) {
      case 'elsewhere':
        lines.push(`  ${where}: not a local endpoint, not judged here`);
        break;
      case 'open':
        lines.push(`  ${where} (${d.at}): open, no policy selects it for ${d.direction}`);
        break;
      case 'denied':
        lines.push(`  ${where} (${d.at}): DENIED by default deny (selected by ${d.selectedBy.join(', ')}); no entry allows it`);
        if (d.overflow !== undefined) lines.push(`    the direction's ${d.overflow} entries did not fit in the policy map: it denies all`);
        break;
      case 'allowed':
        lines.push(`  ${where} (${d.at}): allowed`);
        for (const e of d.allowedBy) {
          lines.push(`    by the entry for ${identityName(e.identity, ctx)} on ${portsText(e)}`);
          for (const p of e.because) lines.push(`      because ${provenanceText(p)}`);
        }
        break;
    }
  }
  return lines;
}
