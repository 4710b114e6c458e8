// The events `hypha monitor` streams, pure: a drop event from the datapath's
// ring buffer (struct hypha_drop_event, decoded with the generated layout)
// turned into a line a person can read, with names for the reason, the hook,
// the Service, both pods and both identities. The agent decodes and enriches
// (src/agent/monitor.ts); the CLI filters nothing and formats (src/cli/monitor.ts).
import { type DropEvent, DropReason, DropReasonText, Hook, layouts } from '../abi/abi.gen.ts';
import { codec } from '../abi/codec.ts';
import { type Labels, formatLabels } from '../identity/labels.ts';
import { CIDR_IDENTITY_BASE } from '../policy/model.ts';

export const dropEventCodec = codec<DropEvent>(layouts.hypha_drop_event);

/** What a monitor asks for: every drop, policy drops only, or everything the agent emits. */
export const MONITOR_TYPES = ['drop', 'policy-drop', 'all'] as const;
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

export type MonitorLine = DropMonitorEvent | LostLine | StartLine;

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

export function matchesType(ev: DropMonitorEvent, type: MonitorType): boolean {
  return type !== 'policy-drop' || ev.policy;
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
  if ('monitor' in line) return `listening for ${line.monitor.type === 'all' ? 'all events' : `${line.monitor.type} events`} on node ${line.monitor.node} (Ctrl-C to stop)`;
  const via = line.service ? ` via ${line.service}` : line.svcId ? ` via service ${line.svcId}` : '';
  return `${clock(line.time)} ${line.reason} ${line.hook} ${peerText(line.src)} -> ${peerText(line.dst, line.proto)}${via}${line.description ? `  ${line.description}` : ''}`;
}
