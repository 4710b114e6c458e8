// kube-proxy's nftables mode as `nft -f` input: the transaction
// pkg/proxy/nftables/proxier.go (k8s.io/kubernetes v1.36.3) hands to nft through
// knftables v0.0.21, operation for operation, for the benchmark's side-by-side peer.
// Pure: services in, text out.
//
// Layout (v1.36): table `ip kube-proxy`; base chains filter-prerouting-pre-dnat,
// filter-output-pre-dnat, filter-input, filter-forward, filter-output, nat-prerouting,
// nat-output, nat-postrouting; `services` dispatches through the `service-ips` and
// `service-nodeports` verdict maps to per-service `service-<hash>-ns/name/proto/port`
// chains, which DNAT with `numgen random mod N map { i : ip . port }` (v1.36 writes
// `endpoint-…` chains only for ClientIP session affinity); masquerade marks
// are set in `services` (off-cluster sources) and `external-…` (NodePorts) and applied
// in `masquerading`, together with the `hairpin-connections` set; services without
// endpoints are rejected through `no-endpoint-services` / `no-endpoint-nodeports`.
//
// Configuration reproduced: kube-proxy defaults (--nodeport-addresses = the node's
// primary IP when `nodeIPs` is given, else every local address; --detect-local-mode=
// ClusterCIDR). Not in the input model: session affinity, traffic policies Local,
// ExternalIPs and LoadBalancers. Services are emitted in input order where kube-proxy
// walks a Go map; the kernel's maps make that order irrelevant to packets.
import { nftServiceBase } from './kube-proxy-names.ts';
import {
  type EndpointChange,
  type NormalOptions,
  type PeerOptions,
  type PeerService,
  type SvcPort,
  applyEndpointChange,
  normalizeOptions,
  normalizeServices,
  updatedServices,
} from './peer-service.ts';

const T = 'ip kube-proxy';

/** How knftables runs a transaction: `nft -f -` with the text on stdin. */
export const NFT_RUN_ARGS: readonly string[] = ['-f', '-'];

/**
 * kube-proxy lists its table (knftables ListAll) before building every transaction, full
 * or partial, to find stale chains: `nft` with these arguments. Part of the cost of a
 * sync, not of the transaction. (A full sync also lists the elements of its seven
 * sets/maps, one `nft --json list` each.)
 */
export const NFT_LIST_ARGS: readonly string[] = ['--json', '--terse', 'list', 'table', 'ip', 'kube-proxy'];

interface BaseChain {
  name: string;
  type: 'filter' | 'nat';
  hook: string;
  priority: number; // knftables writes the numeric form: dstnat-10 = -110 etc.
}

const BASE_CHAINS: BaseChain[] = [
  { name: 'filter-prerouting-pre-dnat', type: 'filter', hook: 'prerouting', priority: -110 },
  { name: 'filter-output-pre-dnat', type: 'filter', hook: 'output', priority: -110 },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: 0 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: 0 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: 0 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: 100 },
];

const JUMP_CHAINS: { dst: string; src: string; extra: string }[] = [
  { dst: 'nodeport-endpoints-check', src: 'filter-input', extra: 'ct state new' },
  { dst: 'service-endpoints-check', src: 'filter-input', extra: 'ct state new' },
  { dst: 'service-endpoints-check', src: 'filter-forward', extra: 'ct state new' },
  { dst: 'service-endpoints-check', src: 'filter-output', extra: 'ct state new' },
  { dst: 'firewall-check', src: 'filter-prerouting-pre-dnat', extra: 'ct state new' },
  { dst: 'firewall-check', src: 'filter-output-pre-dnat', extra: 'ct state new' },
  { dst: 'services', src: 'nat-output', extra: '' },
  { dst: 'services', src: 'nat-prerouting', extra: '' },
  { dst: 'masquerading', src: 'nat-postrouting', extra: '' },
  { dst: 'cluster-ips-check', src: 'filter-forward', extra: 'ct state new' },
  { dst: 'cluster-ips-check', src: 'filter-output', extra: 'ct state new' },
];

/** Go's %q for the ASCII comments used here. */
function quote(s: string): string {
  return JSON.stringify(s);
}

/** The element containers kube-proxy tracks (nftElementStorage), in its cleanup order. */
const CONTAINERS = [
  'cluster-ips',
  'service-ips',
  'firewall-ips',
  'no-endpoint-services',
  'no-endpoint-nodeports',
  'service-nodeports',
  'hairpin-connections',
] as const;
type Container = (typeof CONTAINERS)[number];

interface Element {
  container: Container;
  key: string; // joined with " . "
  value: string; // '' for set elements
  comment: string | undefined;
}

function elementOp(verb: 'add' | 'delete', e: Element): string {
  let s = `${verb} element ${T} ${e.container} { ${e.key}`;
  if (verb === 'add') {
    if (e.comment !== undefined) s += ` comment ${quote(e.comment)}`;
    if (e.value !== '') s += ` : ${e.value}`;
  }
  return s + ' }';
}

interface ServiceChains {
  svc: SvcPort;
  svcChain: string;
  extChain: string;
}

function chainsOf(s: SvcPort): ServiceChains {
  const base = nftServiceBase(s.namespace, s.name, s.protocol, s.portName);
  return { svc: s, svcChain: `service-${base}`, extChain: `external-${base}` };
}

/** Per-service elements in the order syncProxyRules calls ensureElem. */
function serviceElements(c: ServiceChains, o: NormalOptions): Element[] {
  const s = c.svc;
  const out: Element[] = [];
  const hasEndpoints = s.endpoints.length > 0;
  if (o.localEndpoints) {
    for (const e of s.endpoints) {
      out.push({ container: 'hairpin-connections', key: `${e.ip} . ${e.ip} . ${s.protocol} . ${e.port}`, value: '', comment: undefined });
    }
  }
  out.push({ container: 'cluster-ips', key: s.clusterIP, value: '', comment: undefined });
  const vip = `${s.clusterIP} . ${s.protocol} . ${s.port}`;
  if (hasEndpoints) {
    out.push({ container: 'service-ips', key: vip, value: `goto ${c.svcChain}`, comment: undefined });
  } else {
    out.push({ container: 'no-endpoint-services', key: vip, value: 'goto reject-chain', comment: s.nameString });
  }
  if (s.nodePort !== 0) {
    const np = `${s.protocol} . ${s.nodePort}`;
    if (hasEndpoints) {
      out.push({ container: 'service-nodeports', key: np, value: `goto ${c.extChain}`, comment: undefined });
    } else {
      out.push({ container: 'no-endpoint-nodeports', key: np, value: 'goto reject-chain', comment: s.nameString });
    }
  }
  return out;
}

/** The service-chain names (they contain "/": isServiceChainName) this state uses. */
function activeChains(svcs: readonly SvcPort[]): Set<string> {
  const out = new Set<string>();
  for (const s of svcs) {
    if (s.endpoints.length === 0) continue;
    const c = chainsOf(s);
    out.add(c.svcChain);
    if (s.nodePort !== 0) out.add(c.extChain);
  }
  return out;
}

function setupOps(o: NormalOptions): string[] {
  const ops: string[] = [];
  ops.push(`add table ${T} { comment "rules for kube-proxy" ; }`);
  // First sync of a kube-proxy process: add+delete every base chain so that changed
  // base-chain properties cannot fail the transaction.
  for (const bc of BASE_CHAINS) {
    ops.push(`add chain ${T} ${bc.name}`, `delete chain ${T} ${bc.name}`);
  }
  for (const bc of BASE_CHAINS) {
    ops.push(`add chain ${T} ${bc.name} { type ${bc.type} hook ${bc.hook} priority ${bc.priority} ; }`, `flush chain ${T} ${bc.name}`);
  }
  const created = new Set<string>();
  const ensure = (chain: string) => {
    if (created.has(chain)) return;
    created.add(chain);
    ops.push(`add chain ${T} ${chain}`, `flush chain ${T} ${chain}`);
  };
  for (const j of JUMP_CHAINS) {
    ensure(j.dst);
    ops.push(`add rule ${T} ${j.src} ${j.extra === '' ? '' : j.extra + ' '}jump ${j.dst}`);
  }
  for (const c of ['services', 'cluster-ips-check', 'masquerading']) ensure(c);
  const mark = o.masqueradeMark;
  ops.push(`add set ${T} hairpin-connections { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; comment "service hairpin connections" ; }`);
  ops.push(`add rule ${T} masquerading mark and ${mark} != 0 mark set mark xor ${mark} masquerade fully-random`);
  ops.push(`add rule ${T} masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random`);
  ops.push(`add set ${T} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`);
  ops.push(`add rule ${T} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  if (o.serviceCIDR !== undefined) {
    ops.push(`add rule ${T} cluster-ips-check ip daddr { ${o.serviceCIDR} } drop comment "Drop traffic to unallocated ClusterIPs"`);
  }
  const matchAll = o.nodeIPs.length === 0;
  ops.push(`add set ${T} nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }`);
  if (matchAll) {
    ops.push(`delete set ${T} nodeport-ips`);
  } else {
    ops.push(`flush set ${T} nodeport-ips`);
    for (const ip of o.nodeIPs) {
      if (!ip.startsWith('127.')) ops.push(`add element ${T} nodeport-ips { ${ip} }`);
    }
  }
  ops.push(
    `add map ${T} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
  );
  ops.push(`add map ${T} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`);
  ops.push(`add chain ${T} reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`);
  ops.push(`flush chain ${T} reject-chain`);
  ops.push(`add rule ${T} reject-chain reject`);
  ops.push(`add rule ${T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  ops.push(
    matchAll
      ? `add rule ${T} nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports`
      : `add rule ${T} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports`,
  );
  ops.push(`add map ${T} firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`);
  ensure('firewall-check');
  ops.push(`add rule ${T} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips`);
  ops.push(`add map ${T} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`);
  ops.push(`add map ${T} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`);
  ops.push(
    `add rule ${T} services ip daddr @cluster-ips ip saddr != ${o.clusterCIDR} mark set mark or ${mark} comment "masquerade clusterIP traffic from outside cluster"`,
  );
  ops.push(`add rule ${T} services ip daddr . meta l4proto . th dport vmap @service-ips`);
  ops.push(
    matchAll
      ? `add rule ${T} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports`
      : `add rule ${T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports`,
  );
  // readOrReset of the element containers: nothing to flush in a table that did not exist.
  return ops;
}

/**
 * One syncProxyRules transaction from state `prev` (undefined: a fresh kube-proxy on a
 * node without a kube-proxy table, i.e. a full sync with table setup) to `next`.
 */
function transaction(prev: readonly SvcPort[] | undefined, next: readonly SvcPort[], o: NormalOptions): string {
  const ops: string[] = prev === undefined ? setupOps(o) : [];
  const rewrite = prev === undefined ? undefined : updatedServices(prev, next);

  // Element storage: what the containers hold before this transaction.
  const existing = new Map<string, string>();
  const elemId = (e: Element) => `${e.container}\u0000${e.key}`;
  if (prev !== undefined) {
    for (const s of prev) for (const e of serviceElements(chainsOf(s), o)) existing.set(elemId(e), e.value);
  }
  const leftover = new Set(existing.keys());
  const ensureElem = (e: Element) => {
    const id = elemId(e);
    const old = existing.get(id);
    if (old === undefined) {
      ops.push(elementOp('add', e));
    } else if (old !== e.value) {
      ops.push(elementOp('delete', e), elementOp('add', e));
    }
    existing.set(id, e.value);
    leftover.delete(id);
  };

  const created = new Set<string>();
  const ensureChain = (chain: string, skip: boolean) => {
    if (created.has(chain)) return;
    created.add(chain);
    if (!skip) ops.push(`add chain ${T} ${chain}`, `flush chain ${T} ${chain}`);
  };

  for (const s of next) {
    const c = chainsOf(s);
    const skip = rewrite !== undefined && !rewrite.has(s.nsName);
    const hasEndpoints = s.endpoints.length > 0;
    const elems = serviceElements(c, o);
    const hairpin = elems.filter((e) => e.container === 'hairpin-connections');
    const rest = elems.filter((e) => e.container !== 'hairpin-connections');
    for (const e of hairpin) ensureElem(e);
    if (hasEndpoints) ensureChain(c.svcChain, skip);
    if (hasEndpoints && s.nodePort !== 0) ensureChain(c.extChain, skip);
    for (const e of rest) ensureElem(e);
    if (skip || !hasEndpoints) continue;

    if (s.nodePort !== 0) {
      ops.push(`add rule ${T} ${c.extChain} mark set mark or ${o.masqueradeMark} comment "masquerade"`);
      ops.push(`add rule ${T} ${c.extChain} goto ${c.svcChain}`);
    }
    const elements = s.endpoints.map((e, i) => `${i} : ${e.ip} . ${e.port}`).join(' , ');
    ops.push(`add rule ${T} ${c.svcChain} meta l4proto ${s.protocol} dnat ip addr . port to numgen random mod ${s.endpoints.length} map { ${elements} }`);
  }

  // Service chains that exist but are no longer used are flushed now and deleted by a
  // later sync (kernels before 6.2 notice a dropped map reference late).
  if (prev !== undefined) {
    const active = activeChains(next);
    for (const chain of [...activeChains(prev)].filter((ch) => !active.has(ch)).sort()) {
      ops.push(`flush chain ${T} ${chain}`);
    }
  }
  for (const container of CONTAINERS) {
    const gone = [...leftover].filter((id) => id.startsWith(container + '\u0000')).sort();
    for (const id of gone) {
      ops.push(elementOp('delete', { container, key: id.slice(container.length + 1), value: '', comment: undefined }));
    }
  }
  return ops.length === 0 ? '' : ops.join('\n') + '\n';
}

/**
 * kube-proxy's first sync on a node without a `kube-proxy` table, as `nft -f` input
 * (what knftables pipes to `nft -f -`). Load it into a namespace that has no
 * `ip kube-proxy` table yet.
 */
export function nftInput(services: readonly PeerService[], opts: PeerOptions): string {
  return transaction(undefined, normalizeServices(services), normalizeOptions(opts));
}

/**
 * The transaction of kube-proxy's partial sync from `before` to `after` (applied on
 * top of the state `before` produced): only Services whose ports or endpoints changed
 * get their chains rewritten, map/set elements are added or deleted one by one.
 */
export function nftPartialSync(before: readonly PeerService[], after: readonly PeerService[], opts: PeerOptions): string {
  return transaction(normalizeServices(before), normalizeServices(after), normalizeOptions(opts));
}

/**
 * The deferred deletion kube-proxy runs at the start of a sync at least a second after
 * `nftPartialSync` flushed the chains that fell out of use ('' if there are none).
 */
export function nftStaleChainDeletion(before: readonly PeerService[], after: readonly PeerService[]): string {
  const active = activeChains(normalizeServices(after));
  const stale = [...activeChains(normalizeServices(before))].filter((ch) => !active.has(ch)).sort();
  return stale.map((ch) => `delete chain ${T} ${ch}\n`).join('');
}

/** kube-proxy's partial sync when one endpoint of one service is replaced. */
export function nftOneChange(services: readonly PeerService[], opts: PeerOptions, change: EndpointChange): string {
  return nftPartialSync(services, applyEndpointChange(services, change), opts);
}
