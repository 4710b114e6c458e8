// The events `hypha monitor` streams, pure: a drop event from the datapath's
// ring buffer (struct hypha_drop_event, decoded with the generated layout)
// turned into a line a person can read, with names for the reason, the hook,
// the Service, both pods and both identities; and the L7 proxy's access log
// (one event per HTTP request it judged: src/l7/proxy.ts AccessEvent) named
// the same way. The agent decodes and enriches (src/agent/monitor.ts); the
// CLI filters nothing and formats (src/cli/monitor.ts).
import { type DropEvent, DropReason, DropReasonText, Hook, layouts } from '../abi/abi.gen.ts';
import { codec } from '../abi/codec.ts';
import { type Labels, formatLabels } from '../identity/labels.ts';
import type { AccessEvent } from '../l7/proxy.ts';
import type { FlowParty } from '../l7/types.ts';
import { CIDR_IDENTITY_BASE } from '../policy/model.ts';

export const dropEventCodec = codec<DropEvent>(layouts.hypha_drop_event);

/** What a monitor asks for: every drop, policy drops only, the L7 proxy's
 *  HTTP access log, or everything the agent emits. */
export const MONITOR_TYPES = ['drop', 'policy-drop', 'l7', 'all'] as const;
export type MonitorType = (typeof MONITOR_TYPES)[number];

export class MonitorInputError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'MonitorInputError';
    this.field = field;
  }
}

export function isMonitorInputError(err: unknown): err is MonitorInputError {
  return err instanceof MonitorInputError;
}

/** The `type` of a monitor request (absent: 'drop'). */
export function parseMonitorType(v: string | null | undefined): MonitorType {
  if (v === null || v === undefined || v === '') return 'drop';
  if ((MONITOR_TYPES as readonly string[]).includes(v)) return v as MonitorType;
  throw new MonitorInputError('type', `type ${JSON.stringify(v)} is not one of ${MONITOR_TYPES.join(', ')}`);
}

/** An identity as a monitor line names it. */
export interface IdentityRef {
  id: number;
  /** Reserved identities: 'host', 'world', ... */
  reserved?: string;
  /** Cluster identities known to the agent: the set's namespace and pod labels. */
  namespace?: string;
  labels?: Labels;
  /** A CIDR identity (ipBlock peer). */
  cidr?: boolean;
}

export interface MonitorPeer {
  ip: string;
  /** TCP, UDP and SCTP. */
  port?: number;
  /** 'namespace/name' of the pod with this address, when the agent knows one. */
  pod?: string;
  /** Policy drops: the identity the datapath judged by. */
  identity?: IdentityRef;
}

export interface DropMonitorEvent {
  type: 'drop';
  /** Wall-clock time of the drop (ISO 8601). */
  time: string;
  node: string;
  reason: string;
  code: number;
  description: string;
  /** NetworkPolicy denied it (POLICY_EGRESS, POLICY_INGRESS; PROXY_*: an HTTP rule covers it and the proxy could not take it). */
  policy: boolean;
  hook: string;
  ifindex: number;
  proto: string;
  src: MonitorPeer;
  dst: MonitorPeer;
  /** The Service ('namespace/name:port') the packet was sent to, when the drop concerns one. */
  service?: string;
  svcId?: number;
}

/** One HTTP request the L7 proxy judged (its access log). */
export interface L7MonitorEvent {
  type: 'l7';
  /** When the answer was done (ISO 8601). */
  time: string;
  node: string;
  src: MonitorPeer;
  /** The original destination (the backend, after Service translation). */
  dst: MonitorPeer;
  method: string;
  /** As sent, without the query. */
  path: string;
  /** The Host header without its port, lower case ('' when none). */
  host: string;
  /** allow: passed on (status is the upstream's); deny: 403 from the proxy;
   *  error: the proxy's own answer to a malformed request or a failed upstream. */
  verdict: AccessEvent['verdict'];
  status: number;
  /** allow: the policy and rule that allowed it (absent when plain L3/L4
   *  allows cover every check); deny: the first policy consulted. */
  policy?: string;
  rule?: string;
  latencyMs: number;
}

/** A line telling a client it missed events: its own connection was too slow
 *  ('client'), or the datapath's ring was full ('ring', any client's loss). */
export interface LostLine {
  lost: number;
  cause: 'client' | 'ring';
}

/** The first line of a stream. */
export interface StartLine {
  monitor: { node: string; type: MonitorType };
}

export type MonitorEvent = DropMonitorEvent | L7MonitorEvent;
export type MonitorLine = MonitorEvent | LostLine | StartLine;

const REASON_NAME = new Map<number, string>(Object.entries(DropReason).map(([k, v]) => [v, k]));
const HOOK_NAME = new Map<number, string>(Object.entries(Hook).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, '-')]));
const PROTO_NAME: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 132: 'SCTP' };
const PORTED = new Set([6, 17, 132]);
const POLICY_REASONS = new Set<number>([
  DropReason.POLICY_EGRESS, DropReason.POLICY_INGRESS, DropReason.PROXY_UNAVAILABLE, DropReason.PROXY_NOT_REDIRECTED,
]);

export interface EnrichSources {
  node: string;
  /** 'namespace/name' of the pod with this address. */
  pod(ip: string): string | undefined;
  /** What the agent knows of a non-zero identity (reserved or cluster). */
  identity(id: number): Omit<IdentityRef, 'id'> | undefined;
  /** 'namespace/name:port' of a frontend id. */
  service(svcId: number): string | undefined;
}

/** bpf_ktime_get_ns() (CLOCK_MONOTONIC, as process.hrtime) to wall-clock milliseconds. */
export function monotonicToWallMs(tsNs: bigint, nowMonoNs: bigint, nowWallMs: number): number {
  return nowWallMs - Number(nowMonoNs - tsNs) / 1e6;
}

function identityRef(id: number, s: EnrichSources): IdentityRef | undefined {
  if (id === 0) return undefined;
  const known = s.identity(id);
  if (known) return { id, ...known };
  return id >= CIDR_IDENTITY_BASE ? { id, cidr: true } : { id };
}

function peer(ip: string, port: number, proto: number, identity: number, s: EnrichSources): MonitorPeer {
  const p: MonitorPeer = { ip };
  if (PORTED.has(proto)) p.port = port;
  const pod = ip === '0.0.0.0' ? undefined : s.pod(ip);
  if (pod) p.pod = pod;
  const ref = identityRef(identity, s);
  if (ref) p.identity = ref;
  return p;
}

/** A decoded drop event with its names. */
export function enrichDrop(e: DropEvent, s: EnrichSources, wallMs: number): DropMonitorEvent {
  const ev: DropMonitorEvent = {
    type: 'drop',
    time: new Date(wallMs).toISOString(),
    node: s.node,
    reason: REASON_NAME.get(e.reason) ?? `UNKNOWN_${e.reason}`,
    code: e.reason,
    description: DropReasonText[e.reason] ?? '',
    policy: POLICY_REASONS.has(e.reason),
    hook: HOOK_NAME.get(e.hook) ?? `hook-${e.hook}`,
    ifindex: e.ifindex,
    proto: PROTO_NAME[e.proto] ?? String(e.proto),
    src: peer(e.saddr, e.sport, e.proto, e.src_identity, s),
    dst: peer(e.daddr, e.dport, e.proto, e.dst_identity, s),
  };
  if (e.svc_id !== 0) {
    ev.svcId = e.svc_id;
    const name = s.service(e.svc_id);
    if (name) ev.service = name;
  }
  return ev;
}

/** An access event of the proxy with the names the agent knows (the
 *  proxy's own pod names first). */
export function enrichL7(e: AccessEvent, s: EnrichSources): L7MonitorEvent {
  const party = (p: FlowParty): MonitorPeer => {
    const out: MonitorPeer = { ip: p.ip, port: p.port };
    const pod = p.pod ?? (p.ip === '0.0.0.0' ? undefined : s.pod(p.ip));
    if (pod) out.pod = pod;
    const ref = identityRef(p.identity, s);
    if (ref) out.identity = ref;
    return out;
  };
  const ev: L7MonitorEvent = {
    type: 'l7', time: e.time, node: s.node, src: party(e.src), dst: party(e.dst),
    method: e.method, path: e.path, host: e.host, verdict: e.verdict, status: e.status, latencyMs: e.latencyMs,
  };
  if (e.policy !== undefined) ev.policy = e.policy;
  if (e.rule !== undefined) ev.rule = e.rule;
  return ev;
}

/** Whether a client that asked for `type` gets the event: drops go to drop
 *  and all (policy-drop: NetworkPolicy drops only), access events to l7 and all. */
export function matchesType(ev: MonitorEvent, type: MonitorType): boolean {
  if (type === 'all') return true;
  if (ev.type === 'l7') return type === 'l7';
  return type === 'drop' || (type === 'policy-drop' && ev.policy);
}

/** A type whose clients need the datapath's drop events switched on. */
export function wantsDatapath(type: MonitorType): boolean {
  return type !== 'l7';
}

/** A type whose clients get the L7 proxy's access events. */
export function wantsL7(type: MonitorType): boolean {
  return type === 'l7' || type === 'all';
}

function clock(iso: string): string {
  const d = new Date(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function formatIdentity(r: IdentityRef): string {
  if (r.reserved) return `identity ${r.id} reserved:${r.reserved}`;
  if (r.cidr) return `identity ${r.id} cidr`;
  if (r.namespace !== undefined) return `identity ${r.id} ${r.namespace}: ${formatLabels(r.labels ?? {}) || 'no labels'}`;
  return `identity ${r.id}`;
}

function peerText(p: MonitorPeer, proto?: string): string {
  const addr = `${p.ip}${p.port === undefined ? '' : `:${p.port}`}${proto ? `/${proto}` : ''}`;
  return [p.pod, addr, p.identity ? `[${formatIdentity(p.identity)}]` : undefined].filter(Boolean).join(' ');
}

/** One line for a person (local time of day, no date):
 *  `12:00:01.123 POLICY_INGRESS to-pod x/b 10.244.1.5:40000 [identity 1001 x: pod=b] -> y/a 10.244.2.7:80/TCP [identity 1003 y: pod=a]  NetworkPolicy: ...` */
export function formatLine(line: MonitorLine): string {
  if ('lost' in line) {
    return line.cause === 'ring'
      ? `... ${line.lost} drop event${line.lost === 1 ? '' : 's'} lost: the datapath's ring buffer was full`
      : `... ${line.lost} event${line.lost === 1 ? '' : 's'} not sent: this monitor read too slowly`;
  }
  if ('monitor' in line) return `listening for ${line.monitor.type === 'all' ? 'all events' : line.monitor.type === 'l7' ? 'l7 (HTTP access) events' : `${line.monitor.type} events`} on node ${line.monitor.node} (Ctrl-C to stop)`;
  if (line.type === 'l7') return formatL7(line);
  const via = line.service ? ` via ${line.service}` : line.svcId ? ` via service ${line.svcId}` : '';
  return `${clock(line.time)} ${line.reason} ${line.hook} ${peerText(line.src)} -> ${peerText(line.dst, line.proto)}${via}${line.description ? `  ${line.description}` : ''}`;
}

function l7Decision(e: L7MonitorEvent): string {
  const rule = e.policy !== undefined ? `${e.policy}${e.rule !== undefined ? ` ${e.rule}` : ''}` : undefined;
  switch (e.verdict) {
    case 'allow': return rule ? `allowed by ${rule}` : 'allowed: plain L3/L4 allows (every request)';
    case 'deny': return rule ? `denied: no rule of ${rule} allows it` : 'denied: no L7 policy covers this flow';
    case 'error': return `answered by the proxy: ${ERROR_TEXT[e.status] ?? 'error'}`;
  }
}

const ERROR_TEXT: Readonly<Record<number, string>> = {
  400: 'bad request', 408: 'request timeout', 431: 'headers too large', 502: 'bad upstream answer', 503: 'upstream unreachable', 504: 'upstream did not answer',
};

/** `12:00:01.123 L7 DENY 403 x/b 10.244.1.5:40000 [identity 1001 x: pod=b] -> y/a 10.244.2.7:80 [identity 1003 y: pod=a]  GET web.y/admin  denied: no rule of hnp:y/web allows it  0.4 ms` */
function formatL7(e: L7MonitorEvent): string {
  const what = e.method === '' ? '(no request line)' : `${e.method} ${e.host}${e.path}`;
  const ms = e.latencyMs < 10 ? e.latencyMs.toFixed(1) : String(Math.round(e.latencyMs));
  return `${clock(e.time)} L7 ${e.verdict.toUpperCase()} ${e.status} ${peerText(e.src)} -> ${peerText(e.dst)}  ${what}  ${l7Decision(e)}  ${ms} ms`;
}
