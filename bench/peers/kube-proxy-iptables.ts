// kube-proxy's iptables mode as iptables-restore input, laid out the way
// pkg/proxy/iptables/proxier.go (k8s.io/kubernetes v1.36.3) lays it out, for the
// benchmark's side-by-side peer. Pure: services in, text out. The text loads with
// `iptables-restore --noflush` and equally with iptables-nft-restore and
// iptables-legacy-restore.
//
// Configuration reproduced: kube-proxy defaults (--iptables-localhost-nodeports=true,
// --nodeport-addresses unset = every local address, --random-fully supported,
// --detect-local-mode=ClusterCIDR), nf_conntrack_tcp_be_liberal unset. Not reproduced:
// the nfacct counter rules (need nfacct objects created over netlink; they only touch
// INVALID and localhost NodePort packets), session affinity, traffic policies Local,
// ExternalIPs and LoadBalancers (not in the input model). Services are emitted in input
// order where kube-proxy walks a Go map (random order); that moves a service's rule
// within KUBE-SERVICES, not what it does.
import { iptExtChain, iptSepChain, iptSvcChain, probability } from './kube-proxy-names.ts';
import {
  type EndpointChange,
  PeerInputError,
  type NormalOptions,
  type PeerOptions,
  type PeerService,
  type SvcPort,
  applyEndpointChange,
  normalizeOptions,
  normalizeServices,
  updatedServices,
} from './peer-service.ts';

/**
 * The arguments kube-proxy gives iptables-restore (iptables >= 1.6.2): wait up to 5 s
 * for the xtables lock, keep other chains, restore counters. Use them to load this
 * module's output the way kube-proxy does.
 */
export const IPTABLES_RESTORE_ARGS: readonly string[] = ['-w', '5', '--noflush', '--counters'];

/**
 * kube-proxy runs `iptables-save` with these arguments before every sync that cleans up
 * stale chains (each sync below 1 000 endpoints), to learn which chains exist. Part of
 * the cost of a sync, not of the restore.
 */
export const IPTABLES_SAVE_NAT_ARGS: readonly string[] = ['-t', 'nat'];

/**
 * Environment for iptables commands in a private namespace: iptables 1.8 serialises
 * every iptables-restore on the host through one /run/xtables.lock, although the
 * tables it protects are per namespace; a loading 1 000-service ruleset would hold it
 * for seconds and fail or stall unrelated iptables users. A lock file per namespace
 * (in `dir`) keeps the serialisation that matters (within the namespace) and nothing
 * else.
 */
export function xtablesLockEnv(dir: string, netns: string): Record<string, string> {
  return { XTABLES_LOCKFILE: `${dir}/${netns}.xtables.lock` };
}

// largeClusterEndpointsThreshold: above this many endpoints kube-proxy drops the
// per-endpoint comments and skips stale-chain cleanup on most syncs.
const LARGE_CLUSTER_ENDPOINTS = 1000;

const FILTER_TOP_CHAINS = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL'];
const NAT_TOP_CHAINS = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];

interface Jump {
  table: 'filter' | 'nat';
  dst: string;
  src: string;
  comment: string;
  extra: string[];
}

const NEW = ['-m', 'conntrack', '--ctstate', 'NEW'];

// iptablesJumpChains followed by iptablesKubeletJumpChains, in kube-proxy's order.
const JUMPS: Jump[] = [
  { table: 'filter', dst: 'KUBE-EXTERNAL-SERVICES', src: 'INPUT', comment: 'kubernetes externally-visible service portals', extra: NEW },
  { table: 'filter', dst: 'KUBE-EXTERNAL-SERVICES', src: 'FORWARD', comment: 'kubernetes externally-visible service portals', extra: NEW },
  { table: 'filter', dst: 'KUBE-NODEPORTS', src: 'INPUT', comment: 'kubernetes health check service ports', extra: [] },
  { table: 'filter', dst: 'KUBE-SERVICES', src: 'FORWARD', comment: 'kubernetes service portals', extra: NEW },
  { table: 'filter', dst: 'KUBE-SERVICES', src: 'OUTPUT', comment: 'kubernetes service portals', extra: NEW },
  { table: 'filter', dst: 'KUBE-FORWARD', src: 'FORWARD', comment: 'kubernetes forwarding rules', extra: [] },
  { table: 'filter', dst: 'KUBE-PROXY-FIREWALL', src: 'INPUT', comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'filter', dst: 'KUBE-PROXY-FIREWALL', src: 'OUTPUT', comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'filter', dst: 'KUBE-PROXY-FIREWALL', src: 'FORWARD', comment: 'kubernetes load balancer firewall', extra: NEW },
  { table: 'nat', dst: 'KUBE-SERVICES', src: 'OUTPUT', comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', dst: 'KUBE-SERVICES', src: 'PREROUTING', comment: 'kubernetes service portals', extra: [] },
  { table: 'nat', dst: 'KUBE-POSTROUTING', src: 'POSTROUTING', comment: 'kubernetes postrouting rules', extra: [] },
  { table: 'filter', dst: 'KUBE-FIREWALL', src: 'INPUT', comment: '', extra: [] },
  { table: 'filter', dst: 'KUBE-FIREWALL', src: 'OUTPUT', comment: '', extra: [] },
];

/** iptables-save quoting as kube-proxy writes it: quotes only around text with spaces. */
function q(text: string): string {
  return text.includes(' ') ? `"${text}"` : text;
}

interface Payload {
  filterChains: string[];
  filterRules: string[];
  natChains: string[];
  natRules: string[];
}

interface SyncPlan {
  /** Services (namespace/name) whose SVC/EXT/SEP chains are written; undefined: all (full sync). */
  rewrite: ReadonlySet<string> | undefined;
  /** NAT chains of ours that exist but are no longer used: flushed and deleted. */
  stale: readonly string[];
}

function chainLine(chain: string): string {
  return `:${chain} - [0:0]`;
}

/** syncProxyRules, minus the jump rules: the four buffers kube-proxy restores. */
function buildPayload(svcs: readonly SvcPort[], o: NormalOptions, plan: SyncPlan): Payload {
  const p: Payload = {
    filterChains: FILTER_TOP_CHAINS.map(chainLine),
    filterRules: [],
    natChains: NAT_TOP_CHAINS.map(chainLine),
    natRules: [],
  };
  const mark = o.masqueradeMark;
  p.natRules.push(`-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`);
  p.natRules.push(`-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`);
  p.natRules.push(`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`);
  p.natRules.push(`-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`);
  // localhostNodePorts (the default) on IPv4: kubelet's anti-martian rule, duplicated.
  p.filterChains.push(chainLine('KUBE-FIREWALL'));
  p.filterRules.push(
    `-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
  );

  const totalEndpoints = svcs.reduce((n, s) => n + s.endpoints.length, 0);
  const large = totalEndpoints > LARGE_CLUSTER_ENDPOINTS;
  const svcComment = (text: string): string => (large ? '' : ` -m comment --comment ${q(text)}`);

  for (const s of svcs) {
    const proto = s.protocol;
    const svcChain = iptSvcChain(s.nameString, proto);
    const extChain = iptExtChain(s.nameString, proto);
    const hasEndpoints = s.endpoints.length > 0;
    const match = `-m ${proto} -p ${proto}`;
    const clusterIPMatch = `-m comment --comment "${s.nameString} cluster IP" ${match} -d ${s.clusterIP} --dport ${s.port}`;

    if (hasEndpoints) {
      p.natRules.push(`-A KUBE-SERVICES ${clusterIPMatch} -j ${svcChain}`);
    } else {
      p.filterRules.push(`-A KUBE-SERVICES -m comment --comment "${s.nameString} has no endpoints" ${match} -d ${s.clusterIP} --dport ${s.port} -j REJECT`);
    }
    if (s.nodePort !== 0) {
      if (hasEndpoints) {
        p.natRules.push(`-A KUBE-NODEPORTS -m comment --comment ${q(s.nameString)} ${match} --dport ${s.nodePort} -j ${extChain}`);
      } else {
        p.filterRules.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment "${s.nameString} has no endpoints" -m addrtype --dst-type LOCAL ${match} --dport ${s.nodePort} -j REJECT`,
        );
      }
    }

    // Partial sync: chains of unchanged services are computed but not written.
    if (plan.rewrite !== undefined && !plan.rewrite.has(s.nsName)) continue;
    if (!hasEndpoints) continue;

    p.natRules.push(`-A ${svcChain} ${clusterIPMatch} ! -s ${o.clusterCIDR} -j KUBE-MARK-MASQ`);
    if (s.nodePort !== 0) {
      p.natChains.push(chainLine(extChain));
      p.natRules.push(`-A ${extChain} -m comment --comment "masquerade traffic for ${s.nameString} external destinations" -j KUBE-MARK-MASQ`);
      p.natRules.push(`-A ${extChain} -j ${svcChain}`);
    }
    p.natChains.push(chainLine(svcChain));
    const seps = s.endpoints.map((e) => iptSepChain(s.nameString, proto, e.str));
    const n = s.endpoints.length;
    s.endpoints.forEach((e, i) => {
      const stat = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      p.natRules.push(`-A ${svcChain}${svcComment(`${s.nameString} -> ${e.str}`)}${stat} -j ${seps[i]}`);
    });
    s.endpoints.forEach((e, i) => {
      const sep = seps[i];
      p.natChains.push(chainLine(sep!));
      p.natRules.push(`-A ${sep}${svcComment(s.nameString)} -s ${e.ip} -j KUBE-MARK-MASQ`);
      p.natRules.push(`-A ${sep}${svcComment(s.nameString)} ${match} -j DNAT --to-destination ${e.str}`);
    });
  }

  for (const chain of plan.stale) {
    p.natChains.push(chainLine(chain));
    p.natRules.push(`-X ${chain}`);
  }
  // nodePortAddresses match all; localhost NodePorts allowed (route_localnet=1).
  p.natRules.push(
    `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
  );
  p.filterRules.push(`-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP`);
  p.filterRules.push(`-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`);
  p.filterRules.push(
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  );
  return p;
}

function render(p: Payload): string {
  return ['*filter', ...p.filterChains, ...p.filterRules, 'COMMIT', '*nat', ...p.natChains, ...p.natRules, 'COMMIT', ''].join('\n');
}

/** The NAT chains kube-proxy owns for these services (isServiceChainName prefixes). */
function serviceChains(svcs: readonly SvcPort[]): Set<string> {
  const out = new Set<string>();
  for (const s of svcs) {
    if (s.endpoints.length === 0) continue;
    out.add(iptSvcChain(s.nameString, s.protocol));
    if (s.nodePort !== 0) out.add(iptExtChain(s.nameString, s.protocol));
    for (const e of s.endpoints) out.add(iptSepChain(s.nameString, s.protocol, e.str));
  }
  return out;
}

/**
 * Exactly what kube-proxy hands to `iptables-restore --noflush --counters` on a full
 * sync (filter then nat). It assumes the jump rules from the built-in chains exist;
 * `iptablesRestoreInput` adds them.
 */
export function iptablesSyncInput(services: readonly PeerService[], opts: PeerOptions): string {
  return render(buildPayload(normalizeServices(services), normalizeOptions(opts), { rewrite: undefined, stale: [] }));
}

/**
 * A complete kube-proxy iptables ruleset for an empty network namespace, for
 * `iptables-restore --noflush`: the full-sync payload plus what kube-proxy sets up
 * with separate iptables calls before it (the KUBE-PROXY-CANARY chains its monitor
 * creates, and the EnsureRule(Prepend) jumps from INPUT/FORWARD/OUTPUT/PREROUTING/
 * POSTROUTING, written here as `-I` in the same order so they end up in the same
 * positions). Load it once per namespace: the `-I` lines are not idempotent.
 */
export function iptablesRestoreInput(services: readonly PeerService[], opts: PeerOptions): string {
  const p = buildPayload(normalizeServices(services), normalizeOptions(opts), { rewrite: undefined, stale: [] });
  const jumps = (table: 'filter' | 'nat') =>
    JUMPS.filter((j) => j.table === table).map((j) =>
      [`-I ${j.src}`, ...j.extra, ...(j.comment === '' ? [] : ['-m', 'comment', '--comment', q(j.comment)]), `-j ${j.dst}`].join(' '),
    );
  const canary = chainLine('KUBE-PROXY-CANARY');
  return [
    '# kube-proxy iptables mode (k8s v1.36.3 layout), generated by hypha bench/peers',
    '*mangle',
    canary,
    'COMMIT',
    '*filter',
    canary,
    ...p.filterChains,
    ...jumps('filter'),
    ...p.filterRules,
    'COMMIT',
    '*nat',
    canary,
    ...p.natChains,
    ...jumps('nat'),
    ...p.natRules,
    'COMMIT',
    '',
  ].join('\n');
}

export interface PartialSyncOptions {
  /**
   * Whether this sync deletes chains that fell out of use. kube-proxy does on every
   * sync below 1 000 endpoints; above, at most once per --iptables-sync-period (it
   * needs an iptables-save first). Default: true below the threshold, false above.
   */
  staleChainCleanup?: boolean;
}

/**
 * The `iptables-restore --noflush` input of kube-proxy's partial sync from `before`
 * to `after`: the whole filter table and the top-level NAT chains are rewritten, the
 * SVC/EXT/SEP chains only for Services whose ports or endpoints changed, and chains
 * that fell out of use are flushed and deleted (see `staleChainCleanup`).
 */
export function iptablesPartialSync(
  before: readonly PeerService[],
  after: readonly PeerService[],
  opts: PeerOptions,
  partial: PartialSyncOptions = {},
): string {
  const o = normalizeOptions(opts);
  const prev = normalizeServices(before);
  const next = normalizeServices(after);
  const large = next.reduce((n, s) => n + s.endpoints.length, 0) > LARGE_CLUSTER_ENDPOINTS;
  const cleanup = partial.staleChainCleanup ?? !large;
  const active = serviceChains(next);
  const stale = cleanup ? [...serviceChains(prev)].filter((c) => !active.has(c)).sort() : [];
  return render(buildPayload(next, o, { rewrite: updatedServices(prev, next), stale }));
}

/** kube-proxy's partial sync when one endpoint of one service is replaced. */
export function iptablesOneChange(
  services: readonly PeerService[],
  opts: PeerOptions,
  change: EndpointChange,
  partial: PartialSyncOptions = {},
): string {
  return iptablesPartialSync(services, applyEndpointChange(services, change), opts, partial);
}

/**
 * Split a full `iptablesRestoreInput` into inputs that, restored one after the
 * other with --noflush, leave exactly the same ruleset. iptables 1.8.9's
 * restore is quadratic in the size of one input (about 1 s for 500 Services,
 * 23 s for 2 000, and beyond 10 minutes for 10 000), but not in what the table
 * already holds, so loading Service by Service groups gets kube-proxy's
 * 10 000-Service ruleset into the kernel in seconds. What the kernel holds, and
 * so what a packet meets, is the same (see iptables-chunks.test.ts).
 *
 * The first input holds the base chains and rules; each later one declares and
 * fills the chains of `servicesPerChunk` Services (their KUBE-SVC/SEP/EXT/FW
 * chains, grouped as the components of their jump graph) and appends their
 * jumps to the base chains in the original order; base rules that followed the
 * Service jumps (KUBE-SERVICES's last rule, the NodePorts jump) come last.
 */
export function iptablesRestoreChunks(full: string, servicesPerChunk: number): string[] {
  if (!Number.isInteger(servicesPerChunk) || servicesPerChunk < 1) {
    throw new PeerInputError('servicesPerChunk', servicesPerChunk, 'is not a positive integer');
  }
  const perService = /^KUBE-(SVC|SEP|EXT|SVL|FW)-/;
  interface Table { name: string; decls: string[]; base: string[]; tail: string[]; groups: Map<string, { decls: string[]; rules: string[] }> }
  const tables: Table[] = [];
  let t: Table | undefined;
  const lines = full.split('\n');
  // Per-Service chains that jump to each other (EXT -> SVC -> SEP, FW -> EXT)
  // belong to one Service port: group them as the jump graph's components.
  const parent = new Map<string, string>();
  const find = (c: string): string => {
    let r = c;
    while (parent.get(r) !== r) r = parent.get(r) ?? r;
    parent.set(c, r);
    return r;
  };
  const node = (c: string): void => {
    if (!parent.has(c)) parent.set(c, c);
  };
  for (const line of lines) {
    const chain = /^(?::|-A )(\S+)/.exec(line)?.[1] ?? '';
    if (!perService.test(chain)) continue;
    node(chain);
    const target = /-j (\S+)/.exec(line)?.[1] ?? '';
    if (perService.test(target)) {
      node(target);
      parent.set(find(target), find(chain));
    }
  }
  const ownerOf = (c: string): string | undefined => (parent.has(c) ? find(c) : undefined);
  const groupOf = (rule: string): string | undefined => {
    const chain = /^-A (\S+)/.exec(rule)?.[1] ?? '';
    if (perService.test(chain)) return ownerOf(chain);
    const target = /-j (\S+)/.exec(rule)?.[1] ?? '';
    return perService.test(target) ? ownerOf(target) : undefined;
  };
  let seenService = false;
  for (const line of lines) {
    if (line.startsWith('*')) {
      t = { name: line, decls: [], base: [], tail: [], groups: new Map() };
      tables.push(t);
      seenService = false;
      continue;
    }
    if (!t || line === 'COMMIT' || line === '' || line.startsWith('#')) continue;
    const group = (key: string): { decls: string[]; rules: string[] } => {
      let g = t!.groups.get(key);
      if (!g) t!.groups.set(key, (g = { decls: [], rules: [] }));
      return g;
    };
    if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0] ?? '';
      const owner = perService.test(chain) ? ownerOf(chain) : undefined;
      if (owner !== undefined) group(owner).decls.push(line);
      else t.decls.push(line);
      continue;
    }
    const owner = line.startsWith('-A ') ? groupOf(line) : undefined;
    if (owner !== undefined) {
      group(owner).rules.push(line);
      seenService = true;
    } else if (seenService && line.startsWith('-A ')) {
      t.tail.push(line);
    } else {
      t.base.push(line);
    }
  }
  const order: string[] = [];
  for (const tb of tables) for (const k of tb.groups.keys()) if (!order.includes(k)) order.push(k);
  const chunks: string[] = [];
  const emit = (pick: (tb: Table) => string[]): void => {
    const parts = tables.map((tb) => ({ tb, body: pick(tb) })).filter((x) => x.body.length > 0);
    if (parts.length > 0) chunks.push(`${parts.map((x) => `${x.tb.name}\n${x.body.join('\n')}\nCOMMIT`).join('\n')}\n`);
  };
  emit((tb) => [...tb.decls, ...tb.base]);
  for (let i = 0; i < order.length; i += servicesPerChunk) {
    const keys = order.slice(i, i + servicesPerChunk);
    emit((tb) => {
      const gs = keys.map((k) => tb.groups.get(k)).filter((g) => g !== undefined);
      return [...gs.flatMap((g) => g.decls), ...gs.flatMap((g) => g.rules)];
    });
  }
  emit((tb) => tb.tail);
  return chunks;
}
