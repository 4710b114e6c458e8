// NetworkPolicy as an iptables ruleset laid out the way Calico's Felix lays it
// out in its iptables dataplane (felix/rules: the workload dispatch, endpoint
// and policy chains), for bench-policy's side-by-side peer. Pure: pods and
// normalised NetworkPolicies (src/policy/model.ts) in, `ipset restore` and
// `iptables-restore --noflush` text out (loads with iptables-nft-restore and
// iptables-legacy-restore alike).
//
// Why Calico's layout: it is the most deployed iptables-based policy engine,
// and it is the layout iptables engines share (kube-router's differs in names
// and in dispatching by pod address rather than interface, not in shape):
//
//   FORWARD -> cali-FORWARD: clear the accept mark; -i <prefix>+ to the
//     from-workload dispatch, -o <prefix>+ to the to-workload dispatch; a
//     packet some policy accepted (mark 0x10000) is accepted.
//   cali-to-wl-dispatch: one rule per local pod, `-o <its interface> -g
//     cali-tw-<interface>` (Felix builds a tree of prefixes above ~16 pods;
//     a bench node has a dozen).
//   cali-tw-<interface> (ingress of the pod), in this order: conntrack
//     RELATED,ESTABLISHED accept; INVALID drop; clear the marks; then for
//     every policy selecting the pod, in name order (Kubernetes policies
//     have no order; Felix sorts them by name): jump to its chain while no
//     policy has decided, return once one accepted; drop if none did. A pod
//     no policy selects takes its namespace profile: allow.
//   cali-pi-_<hash> (a policy's ingress rules): per rule, per peer and per
//     protocol, one rule that sets the accept mark, followed by a return
//     when the mark is set. cali-fw-<interface> and cali-po-_<hash> are the
//     same for egress.
//
// Peers: a pod/namespace selector becomes an ipset of the selected pods'
// addresses, as Felix does (`cali40s:<hash of the selector>`, hash:net; one
// set per distinct selector, shared by every rule using it), matched with
// `-m set --match-set ... src|dst`; per-IP rules would grow every policy
// chain with the number of pods selected. An ipBlock is `-s|-d <cidr>` with
// its excepts in a hash:net set matched negated. Ports: `-p <proto> -m
// multiport --dports` (at most 15 port slots per rule, a range takes two).
// Not reproduced: named ports (Felix needs ipsets of address,port pairs),
// host endpoints, tiers, Felix's rule comments and its chain-name hashes
// (sha224 of the tier/policy name; any distinct name does the same work).
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { type Direction, type LabelSelector, NAMESPACE_NAME_LABEL, type NetworkPolicy, type Peer, type PolicyPort, type Rule, policyKey } from '../../src/policy/model.ts';
import { isEmptySelector, matches } from '../../src/policy/selectors.ts';
import { PeerInputError } from './peer-service.ts';

export interface PolicyPeerPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ip: string;
  /** The pod's host-side interface when it is on this node (gets endpoint chains). */
  iface?: string;
}

export interface PolicyPeerInput {
  pods: readonly PolicyPeerPod[];
  /** Namespace labels (kubernetes.io/metadata.name is implied). */
  namespaceLabels?: Readonly<Record<string, Record<string, string>>>;
  policies: readonly NetworkPolicy[];
  /** The interface prefix of local pods (Felix's InterfacePrefix; Hypha's veths are lxc...). */
  ifacePrefix?: string;
}

export interface PolicyRuleset {
  /** `ipset restore` input: every selector's set, then every except set. */
  ipsets: string;
  /** `iptables-restore --noflush` input (filter table). */
  iptables: string;
  /** Counts, for reports: policy chains, rules in them, sets, set members. */
  stats: { policyChains: number; policyRules: number; ipsets: number; members: number };
}

export const ACCEPT_MARK = '0x10000/0x10000';

const b64hash = (s: string, n: number): string => createHash('sha224').update(s).digest('base64url').slice(0, n);

/** A policy's chain: cali-pi-_<hash> (ingress) / cali-po-_<hash> (egress); 28 characters, iptables' limit. */
export function policyChain(policy: string, dir: Direction): string {
  return `cali-p${dir === 'ingress' ? 'i' : 'o'}-_${b64hash(policy, 19)}`;
}

/** An ipset's name: cali40s:<hash> (31 characters at most, ipset's limit). */
export function setName(kind: 's' | 'n', key: string): string {
  return `cali40${kind}:${b64hash(key, 22)}`;
}

const PROTO_FLAG = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' } as const;

interface Sets {
  members: Map<string, string[]>;
  name(kind: 's' | 'n', key: string, members: () => string[]): string;
}

function portGroups(ports: Rule['ports'], where: string): string[][] {
  if (ports === 'all') return [[]];
  const byProto = new Map<string, { all: boolean; specs: string[] }>();
  for (const p of ports as PolicyPort[]) {
    if (p.kind === 'named') {
      throw new PeerInputError(`${where}.ports[${p.index}].port`, p.name, 'is a named port, which this peer does not lay out (Felix uses address,port ipsets for them)');
    }
    const g = byProto.get(p.protocol) ?? { all: false, specs: [] };
    byProto.set(p.protocol, g);
    if (p.kind === 'all') g.all = true;
    else g.specs.push(p.from === p.to ? String(p.from) : `${p.from}:${p.to}`);
  }
  const out: string[][] = [];
  for (const [proto, g] of byProto) {
    const flag = ['-p', PROTO_FLAG[proto as keyof typeof PROTO_FLAG]];
    if (g.all) {
      out.push(flag);
      continue;
    }
    // multiport takes 15 slots; a range uses two.
    let chunk: string[] = [];
    let slots = 0;
    for (const s of g.specs) {
      const w = s.includes(':') ? 2 : 1;
      if (slots + w > 15) {
        out.push([...flag, '-m', 'multiport', '--dports', chunk.join(',')]);
        chunk = [];
        slots = 0;
      }
      chunk.push(s);
      slots += w;
    }
    if (chunk.length) out.push([...flag, '-m', 'multiport', '--dports', chunk.join(',')]);
  }
  return out;
}

function peerMatches(peers: Rule['peers'], dir: Direction, policy: NetworkPolicy, input: PolicyPeerInput, sets: Sets, nsLabels: (ns: string) => Record<string, string>): string[][] {
  if (peers === 'all') return [[]];
  const side = dir === 'ingress' ? 'src' : 'dst';
  const out: string[][] = [];
  for (const peer of peers as Peer[]) {
    if (peer.kind === 'ipBlock') {
      if (peer.family !== 4) continue; // an IPv6 block matches no IPv4 packet
      const m = [dir === 'ingress' ? '-s' : '-d', peer.cidr];
      if (peer.except.length) {
        const name = sets.name('n', `except ${peer.except.join(',')}`, () => [...peer.except]);
        m.push('-m', 'set', '!', '--match-set', name, side);
      }
      out.push(m);
      continue;
    }
    const podSel: LabelSelector | undefined = peer.podSelector && !isEmptySelector(peer.podSelector) ? peer.podSelector : undefined;
    const key = JSON.stringify({ ns: peer.namespaceSelector ? null : policy.namespace, nsSel: peer.namespaceSelector ?? null, podSel: podSel ?? null });
    const name = sets.name('s', key, () => input.pods.filter((p) =>
      (peer.namespaceSelector ? matches(peer.namespaceSelector, nsLabels(p.namespace)) : p.namespace === policy.namespace) &&
      (!podSel || matches(podSel, p.labels))).map((p) => p.ip));
    out.push(['-m', 'set', '--match-set', name, side]);
  }
  return out;
}

/** The ruleset for the pods of `input` that carry an interface. Throws PeerInputError naming the field. */
export function calicoPolicyRuleset(input: PolicyPeerInput): PolicyRuleset {
  const prefix = input.ifacePrefix ?? 'lxc';
  if (!/^[a-z]{1,8}$/.test(prefix)) throw new PeerInputError('ifacePrefix', prefix, 'must be 1-8 lowercase letters');
  for (const [i, p] of input.pods.entries()) {
    if (!isIPv4(p.ip)) throw new PeerInputError(`pods[${i}].ip`, p.ip, 'is not an IPv4 address');
    if (p.iface !== undefined && (!p.iface.startsWith(prefix) || p.iface.length > 15)) {
      throw new PeerInputError(`pods[${i}].iface`, p.iface, `must start with "${prefix}" and have at most 15 characters`);
    }
  }
  const nsLabels = (ns: string): Record<string, string> => ({ [NAMESPACE_NAME_LABEL]: ns, ...input.namespaceLabels?.[ns] });
  const members = new Map<string, string[]>();
  const sets: Sets = {
    members,
    name(kind, key, list) {
      const n = setName(kind, key);
      if (!members.has(n)) {
        members.set(n, [...new Set(list())]);
      }
      return n;
    },
  };
  const policies = [...input.policies].sort((a, b) => (policyKey(a) < policyKey(b) ? -1 : policyKey(a) > policyKey(b) ? 1 : 0));
  const chains: string[] = [];
  const rules: string[] = [];
  let policyRules = 0;
  // Policy chains, for each direction a policy has.
  for (const pol of policies) {
    for (const dir of ['ingress', 'egress'] as const) {
      if (!pol.policyTypes.includes(dir)) continue;
      const chain = policyChain(policyKey(pol), dir);
      chains.push(chain);
      for (const rule of pol[dir]) {
        const where = `NetworkPolicy ${policyKey(pol)}: spec.${dir}[${rule.index}]`;
        for (const peer of peerMatches(rule.peers, dir, pol, input, sets, nsLabels)) {
          for (const ports of portGroups(rule.ports, where)) {
            rules.push(['-A', chain, ...ports, ...peer, '-j', 'MARK', '--set-xmark', ACCEPT_MARK].join(' '));
            rules.push(`-A ${chain} -m mark --mark ${ACCEPT_MARK} -j RETURN`);
            policyRules += 2;
          }
        }
      }
    }
  }
  // Endpoint chains and the dispatch to them.
  const local = input.pods.filter((p) => p.iface);
  const dispatch: string[] = [];
  for (const pod of local) {
    const iface = pod.iface!;
    for (const dir of ['ingress', 'egress'] as const) {
      const chain = `cali-${dir === 'ingress' ? 'tw' : 'fw'}-${iface}`;
      const opt = dir === 'ingress' ? '-o' : '-i';
      chains.push(chain);
      dispatch.push(`-A cali-${dir === 'ingress' ? 'to' : 'from'}-wl-dispatch ${opt} ${iface} -g ${chain}`);
      rules.push(
        `-A ${chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
        `-A ${chain} -m conntrack --ctstate INVALID -j DROP`,
        `-A ${chain} -j MARK --set-xmark 0x0/0x10000`,
      );
      const selecting = policies.filter((pol) => pol.policyTypes.includes(dir) && pol.namespace === pod.namespace &&
        (pol.podSelector === 'unreadable' || matches(pol.podSelector, pod.labels)));
      if (selecting.length) {
        rules.push(`-A ${chain} -m comment --comment "Start of policies" -j MARK --set-xmark 0x0/0x20000`);
        for (const pol of selecting) {
          rules.push(`-A ${chain} -m mark --mark 0x0/0x20000 -j ${policyChain(policyKey(pol), dir)}`,
            `-A ${chain} -m mark --mark ${ACCEPT_MARK} -m comment --comment "Return if policy accepted" -j RETURN`);
        }
        rules.push(`-A ${chain} -m mark --mark 0x0/0x20000 -m comment --comment "Drop if no policies passed packet" -j DROP`);
      } else {
        // The namespace's profile (kns.<namespace>): allow.
        rules.push(`-A ${chain} -j MARK --set-xmark ${ACCEPT_MARK}`, `-A ${chain} -m mark --mark ${ACCEPT_MARK} -j RETURN`);
      }
      rules.push(`-A ${chain} -m comment --comment "Drop if no profiles matched" -j DROP`);
    }
  }
  const top = ['cali-FORWARD', 'cali-from-wl-dispatch', 'cali-to-wl-dispatch'];
  const iptables = [
    '*filter',
    ...[...top, ...chains].map((c) => `:${c} - [0:0]`),
    '-A FORWARD -j cali-FORWARD',
    '-A FORWARD -m mark --mark 0x10000/0x10000 -m comment --comment "Policy explicitly accepted packet" -j ACCEPT',
    '-A cali-FORWARD -j MARK --set-xmark 0x0/0x30000',
    `-A cali-FORWARD -i ${prefix}+ -j cali-from-wl-dispatch`,
    `-A cali-FORWARD -o ${prefix}+ -j cali-to-wl-dispatch`,
    ...dispatch.filter((d) => d.startsWith('-A cali-from')),
    '-A cali-from-wl-dispatch -m comment --comment "Unknown interface" -j DROP',
    ...dispatch.filter((d) => d.startsWith('-A cali-to')),
    '-A cali-to-wl-dispatch -m comment --comment "Unknown interface" -j DROP',
    ...rules,
    'COMMIT',
    '',
  ].join('\n');
  const ipsetLines: string[] = [];
  let count = 0;
  for (const [name, list] of members) {
    ipsetLines.push(`create ${name} hash:net family inet hashsize 1024 maxelem 1048576`);
    for (const m of list) ipsetLines.push(`add ${name} ${m}`);
    count += list.length;
  }
  return { ipsets: ipsetLines.join('\n') + '\n', iptables, stats: { policyChains: chains.length - local.length * 2, policyRules, ipsets: members.size, members: count } };
}
