// NetworkPolicy reachability matrix, in the spirit of upstream's
// test/e2e/network/netpol: namespaces x, y, z with pods a, b, c in each
// (nine pods over three nodes, made through the CNI plugin with Pod objects
// carrying their labels and named container ports), every pod serving 80 and
// 81 on TCP and UDP, and a ClusterIP Service per pod. Each scenario writes
// NetworkPolicy objects (or changes labels), computes the expected 9x9 table
// of every probed port/protocol with an independent model of the API's
// semantics (lib/netpol-model.ts, not src/policy), and probes all 81 pairs,
// to each pod's address and to its ClusterIP, until the observed tables equal
// the expected ones (policy reaches the datapath asynchronously) or a
// deadline passes; then prints both tables side by side with the differing
// cells marked, and the agents' recent log lines. Loopback cells (a pod to
// itself) are shown but not judged, as upstream (ignoreLoopback): a pod's own
// address never leaves its netns.
//
// Where a scenario carries upstream's hand-written expectation (`hand`), the
// model's table must equal it first: that keeps the model honest.
//
// SCTP: this kernel has no SCTP sockets, so SCTP rules are checked here only
// for what they must not open (TCP); SCTP packets themselves are covered by
// the BPF packet tests and the compiler's unit tests.
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient } from '../../src/k8s/client.ts';
import { eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import { installIdentityPolicy } from './lib/crds.ts';
import type { ServiceSpec } from './lib/manifests.ts';
import {
  type ContainerPort, type LabelSelector, type ModelPod, type NetworkPolicy, NetpolModel, type PolicyPeer, type PolicyPort,
  TruthTable, expectedTable, formatSideBySide,
} from './lib/netpol-model.ts';
import { type MatrixPod, type ProbeCase, ProbeFleet, type Via, caseName } from './lib/netpol-probe.ts';
import { type Node, toolArgv } from './lib/topology.ts';

const NAMESPACES = ['x', 'y', 'z'] as const;
const POD_NAMES = ['a', 'b', 'c'] as const;
/** Pods of one namespace on different nodes; every node holds one pod of each namespace. */
const PLACEMENT: Record<string, number> = { 'x/a': 0, 'x/b': 1, 'x/c': 2, 'y/a': 1, 'y/b': 2, 'y/c': 0, 'z/a': 2, 'z/b': 0, 'z/c': 1 };
const KEYS = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));
/** Upstream's container port names. */
const CONTAINER_PORTS: ContainerPort[] = [80, 81].flatMap((port) => (['TCP', 'UDP'] as const).map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, containerPort: port, protocol })));
/** Pod labels as created: upstream's `pod: <name>`; pods c are also canaries (for Exists / DoesNotExist). */
const initialPodLabels = (key: string): Record<string, string> => {
  const name = key.split('/')[1]!;
  return name === 'c' ? { pod: name, canary: 'true' } : { pod: name };
};
/** Namespace labels as created: `ns: <name>` and the API server's own; z also has env=dev. */
const initialNsLabels = (ns: string): Record<string, string> => ({ ns, 'kubernetes.io/metadata.name': ns, ...(ns === 'z' ? { env: 'dev' } : {}) });
const POD_POOL = '10.244.0.0/16';
const SERVICE_RANGE = '10.96.0.0/12';
const VIAS: Via[] = ['pod', 'service'];
/** Until the observed tables must equal the expected ones. */
const STEP_DEADLINE_MS = 20_000;

const T80: ProbeCase = { port: 80, proto: 'TCP' };
const T81: ProbeCase = { port: 81, proto: 'TCP' };
const U80: ProbeCase = { port: 80, proto: 'UDP' };
const U81: ProbeCase = { port: 81, proto: 'UDP' };
const ALL_CASES = [T80, T81, U80, U81];

// ---- policy shorthands -----------------------------------------------------

type IngressRule = { from?: PolicyPeer[]; ports?: PolicyPort[] };
type EgressRule = { to?: PolicyPeer[]; ports?: PolicyPort[] };
const ALL: LabelSelector = {};
const pods = (labels: Record<string, string>): LabelSelector => ({ matchLabels: labels });
const podIs = (p: string): LabelSelector => pods({ pod: p });
const nsIs = (ns: string): LabelSelector => ({ matchLabels: { ns } });
const nsNamed = (ns: string): LabelSelector => ({ matchLabels: { 'kubernetes.io/metadata.name': ns } });
const expr = (key: string, operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values?: string[]): LabelSelector => ({ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] });
const policy = (ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec });
const ingressPolicy = (ns: string, name: string, podSelector: LabelSelector, ingress: IngressRule[] = []): NetworkPolicy => policy(ns, name, { podSelector, policyTypes: ['Ingress'], ingress });
const egressPolicy = (ns: string, name: string, podSelector: LabelSelector, egress: EgressRule[] = []): NetworkPolicy => policy(ns, name, { podSelector, policyTypes: ['Egress'], egress });
const tcp = (port: number | string, endPort?: number): PolicyPort => ({ protocol: 'TCP', port, ...(endPort === undefined ? {} : { endPort }) });
const udp = (port: number | string, endPort?: number): PolicyPort => ({ protocol: 'UDP', port, ...(endPort === undefined ? {} : { endPort }) });

// ---- scenarios ---------------------------------------------------------------

/** Pod addresses, for ipBlocks. */
type Ip = (key: string) => string;

interface Step {
  what: string;
  /** Create or replace these policies. */
  apply?: NetworkPolicy[] | ((ip: Ip) => NetworkPolicy[]);
  /** Delete these policies (`ns/name`). */
  remove?: string[];
  /** Merge-patch pod labels (`ns/pod` -> labels, null removes). */
  podLabels?: Record<string, Record<string, string | null>>;
  /** Merge-patch namespace labels. */
  nsLabels?: Record<string, Record<string, string | null>>;
  probe: ProbeCase[];
  /**
   * Upstream's hand-written expectation per case (`80/TCP`): starting from
   * all connected, `-from>to` blocks and `+from>to` connects the cells it
   * matches, in order; `*` matches any namespace or pod (`x/*`, `*>x/a`).
   */
  hand?: Record<string, string[]>;
}

interface Scenario {
  name: string;
  steps: Step[];
}

/** One step scenario. */
const one = (name: string, apply: Step['apply'], probe: ProbeCase[], hand?: Step['hand']): Scenario => ({ name, steps: [{ what: 'policy applied', apply, probe, ...(hand ? { hand } : {}) }] });
/** The same hand expectation for every probed case. */
const each = (probe: ProbeCase[], ops: string[]): Record<string, string[]> => Object.fromEntries(probe.map((c) => [caseName(c), ops]));

const SCENARIOS: Scenario[] = [
  // default deny, allow all
  one('default deny ingress: a policy selecting every pod of x with no rules', [ingressPolicy('x', 'deny-ingress', ALL)], [T80, U80], each([T80, U80], ['-*>x/*'])),
  one('default deny egress', [egressPolicy('x', 'deny-egress', ALL)], [T80, U81], each([T80, U81], ['-x/*>*'])),
  one('default deny ingress and egress in one policy', [policy('x', 'deny-all', { podSelector: ALL, policyTypes: ['Ingress', 'Egress'] })], [T80], each([T80], ['-x/*>*', '-*>x/*'])),
  one('allow all ingress: a rule without peers or ports', [ingressPolicy('x', 'allow-all', ALL, [{}])], [T80, T81], each([T80, T81], [])),
  one('allow all egress: a rule without peers or ports', [egressPolicy('x', 'allow-all-egress', ALL, [{}])], [T81, U80], each([T81, U80], [])),
  one('ingress to one target allowed from everywhere under a namespace default deny', [
    ingressPolicy('x', 'deny-all', ALL),
    ingressPolicy('x', 'allow-all-to-a', podIs('a'), [{ from: [{ podSelector: ALL, namespaceSelector: ALL }] }]),
  ], [T80], each([T80], ['-*>x/*', '+*>x/a'])),
  one('ingress only from the same namespace (peer podSelector {})', [ingressPolicy('x', 'deny-other-ns', ALL, [{ from: [{ podSelector: ALL }] }])], [T80], each([T80], ['-y/*>x/*', '-z/*>x/*'])),

  // podSelector
  one('podSelector: x/a allows x/b only', [ingressPolicy('x', 'x-a-allows-x-b', podIs('a'), [{ from: [{ podSelector: podIs('b') }] }])], [T80, U81], each([T80, U81], ['-*>x/a', '+x/b>x/a'])),
  one('podSelectors as two peers (OR): x/a allows x/b and x/c', [ingressPolicy('x', 'allow-b-c', podIs('a'), [{ from: [{ podSelector: podIs('b') }, { podSelector: podIs('c') }] }])], [T80], each([T80], ['-*>x/a', '+x/b>x/a', '+x/c>x/a'])),

  // namespaceSelector
  one('namespaceSelector {}: x/a allows every namespace', [ingressPolicy('x', 'allow-all-ns', podIs('a'), [{ from: [{ namespaceSelector: ALL }] }])], [T80], each([T80], [])),
  one('namespaceSelector: x/a allows namespace y only (label ns=y)', [ingressPolicy('x', 'allow-ns-y', podIs('a'), [{ from: [{ namespaceSelector: nsIs('y') }] }])], [T80, U80], each([T80, U80], ['-x/*>x/a', '-z/*>x/a'])),
  one('namespaceSelector on kubernetes.io/metadata.name', [ingressPolicy('x', 'allow-ns-y-by-name', podIs('a'), [{ from: [{ namespaceSelector: nsNamed('y') }] }])], [T80], each([T80], ['-x/*>x/a', '-z/*>x/a'])),

  // AND / OR
  one('podSelector AND namespaceSelector in one peer: pods b of namespaces other than x', [
    ingressPolicy('x', 'allow-b-elsewhere', podIs('a'), [{ from: [{ namespaceSelector: expr('kubernetes.io/metadata.name', 'NotIn', ['x']), podSelector: podIs('b') }] }]),
  ], [T80], each([T80], ['-*>x/a', '+y/b>x/a', '+z/b>x/a'])),
  one('podSelector OR namespaceSelector as two peers', [
    ingressPolicy('x', 'allow-b-or-elsewhere', podIs('a'), [{ from: [{ namespaceSelector: expr('kubernetes.io/metadata.name', 'NotIn', ['x']) }, { podSelector: podIs('b') }] }]),
  ], [T80], each([T80], ['-x/a>x/a', '-x/c>x/a'])),
  one('AND with matchExpressions on both: pods b or c of namespaces other than x', [
    ingressPolicy('x', 'allow-b-c-elsewhere', podIs('a'), [{ from: [{ namespaceSelector: expr('kubernetes.io/metadata.name', 'NotIn', ['x']), podSelector: expr('pod', 'In', ['b', 'c']) }] }]),
  ], [T80], each([T80], ['-*>x/a', '+y/b>x/a', '+y/c>x/a', '+z/b>x/a', '+z/c>x/a'])),
  one('only y/a: namespace y AND pod a', [ingressPolicy('x', 'allow-y-a', podIs('a'), [{ from: [{ namespaceSelector: nsIs('y'), podSelector: podIs('a') }] }])], [T80, U80], each([T80, U80], ['-*>x/a', '+y/a>x/a'])),

  // matchExpressions
  one('matchExpressions In on a peer podSelector', [ingressPolicy('x', 'allow-b-in', podIs('a'), [{ from: [{ podSelector: expr('pod', 'In', ['b']) }] }])], [T80], each([T80], ['-*>x/a', '+x/b>x/a'])),
  one('matchExpressions In on a namespaceSelector', [ingressPolicy('x', 'allow-ns-y-in', podIs('a'), [{ from: [{ namespaceSelector: expr('kubernetes.io/metadata.name', 'In', ['y']) }] }])], [T80], each([T80], ['-x/*>x/a', '-z/*>x/a'])),
  one('matchExpressions NotIn on a peer podSelector: x/a allows the pods of x other than b', [ingressPolicy('x', 'allow-not-b', podIs('a'), [{ from: [{ podSelector: expr('pod', 'NotIn', ['b']) }] }])], [T80], each([T80], ['-*>x/a', '+x/a>x/a', '+x/c>x/a'])),
  one('matchExpressions NotIn on the policy\'s podSelector: the pods of x other than a deny ingress', [ingressPolicy('x', 'deny-not-a', expr('pod', 'NotIn', ['a']))], [T80], each([T80], ['-*>x/b', '-*>x/c'])),
  one('matchExpressions Exists: x/a allows the canary pods of every namespace', [
    ingressPolicy('x', 'allow-canaries', podIs('a'), [{ from: [{ namespaceSelector: ALL, podSelector: expr('canary', 'Exists') }] }]),
  ], [T80], each([T80], ['-*>x/a', '+x/c>x/a', '+y/c>x/a', '+z/c>x/a'])),
  one('matchExpressions DoesNotExist on the policy\'s podSelector: the non-canary pods of x deny ingress', [ingressPolicy('x', 'deny-non-canary', expr('canary', 'DoesNotExist'))], [T80], each([T80], ['-*>x/a', '-*>x/b'])),
  one('matchExpressions DoesNotExist on a namespaceSelector: x/a allows namespaces without env', [ingressPolicy('x', 'allow-no-env', podIs('a'), [{ from: [{ namespaceSelector: expr('env', 'DoesNotExist') }] }])], [T80], each([T80], ['-z/*>x/a'])),

  // egress
  one('egress denied from x/a (podSelector, no rules)', [egressPolicy('x', 'deny-egress-a', podIs('a'))], [T80, U80], each([T80, U80], ['-x/a>*'])),
  one('egress from x/a to y/a only (namespace AND pod)', [egressPolicy('x', 'to-y-a', podIs('a'), [{ to: [{ namespaceSelector: nsIs('y'), podSelector: podIs('a') }] }])], [T80], each([T80], ['-x/a>*', '+x/a>y/a'])),
  one('egress denied at the client though the server allows it', [
    egressPolicy('x', 'to-y-a', podIs('a'), [{ to: [{ namespaceSelector: nsNamed('y'), podSelector: podIs('a') }] }]),
    ingressPolicy('y', 'a-from-x-a', podIs('a'), [{ from: [{ namespaceSelector: nsNamed('x'), podSelector: podIs('a') }] }]),
    ingressPolicy('y', 'b-from-x-a', podIs('b'), [{ from: [{ namespaceSelector: nsNamed('x'), podSelector: podIs('a') }] }]),
  ], [T80], each([T80], ['-x/a>*', '-*>y/a', '+x/a>y/a', '-*>y/b'])),
  {
    name: 'ingress and egress of one pod controlled independently',
    steps: [
      { what: 'x/a may send anywhere', apply: [egressPolicy('x', 'egress-a', podIs('a'), [{}])], probe: [T80], hand: each([T80], []) },
      { what: 'and x/a denies all ingress', apply: [ingressPolicy('x', 'deny-ingress-a', podIs('a'))], probe: [T80], hand: each([T80], ['-*>x/a']) },
    ],
  },
  one('egress by matchExpressions NotIn on kubernetes.io/metadata.name: x/a not to y', [egressPolicy('x', 'not-to-y', podIs('a'), [{ to: [{ namespaceSelector: expr('kubernetes.io/metadata.name', 'NotIn', ['y']) }] }])], [T80], each([T80], ['-x/a>y/*'])),
  one('Ingress and Egress in one policy: x/a from x/b, to port 80 only', [
    policy('x', 'a-in-and-out', { podSelector: podIs('a'), policyTypes: ['Egress', 'Ingress'], ingress: [{ from: [{ podSelector: podIs('b') }] }], egress: [{ ports: [{ port: 80 }] }] }),
  ], [T80, T81], { '80/TCP': ['-*>x/a', '+x/b>x/a'], '81/TCP': ['-*>x/a', '-x/a>*', '+x/b>x/a'] }),

  // ports and ranges
  one('port: x/a allows namespace y on TCP 81 only', [ingressPolicy('x', 'y-on-81', podIs('a'), [{ from: [{ namespaceSelector: nsIs('y') }], ports: [tcp(81)] }])], [T81, T80, U81], {
    '81/TCP': ['-x/*>x/a', '-z/*>x/a'], '80/TCP': ['-*>x/a'], '81/UDP': ['-*>x/a'],
  }),
  one('port: x/a allows namespace y on UDP 81 only', [ingressPolicy('x', 'y-on-udp-81', podIs('a'), [{ from: [{ namespaceSelector: nsIs('y') }], ports: [udp(81)] }])], [U81, T81], {
    '81/UDP': ['-x/*>x/a', '-z/*>x/a'], '81/TCP': ['-*>x/a'],
  }),
  {
    name: 'stacked policies with overlapping podSelectors: TCP 81 from y, then TCP 80 from y',
    steps: [
      { what: 'TCP 81 from y', apply: [ingressPolicy('x', 'y-on-81', podIs('a'), [{ from: [{ namespaceSelector: nsNamed('y') }], ports: [tcp(81)] }])], probe: [T81, T80], hand: { '81/TCP': ['-x/*>x/a', '-z/*>x/a'], '80/TCP': ['-*>x/a'] } },
      { what: 'a second policy adds TCP 80 from y', apply: [ingressPolicy('x', 'y-on-80', podIs('a'), [{ from: [{ namespaceSelector: nsNamed('y') }], ports: [tcp(80)] }])], probe: [T80, T81], hand: each([T80, T81], ['-x/*>x/a', '-z/*>x/a']) },
    ],
  },
  one('endPort: the pods of x allow TCP 81-90', [ingressPolicy('x', 'range-81-90', ALL, [{ ports: [tcp(81, 90)] }])], [T80, T81, U81], { '80/TCP': ['-*>x/*'], '81/TCP': [], '81/UDP': ['-*>x/*'] }),
  one('endPort on egress: x/a may send to TCP 75-80', [egressPolicy('x', 'to-75-80', podIs('a'), [{ ports: [tcp(75, 80)] }])], [T80, T81, U80], { '80/TCP': [], '81/TCP': ['-x/a>*'], '80/UDP': ['-x/a>*'] }),
  one('a protocol without a port: x/a allows TCP on every port, not UDP', [ingressPolicy('x', 'any-tcp', podIs('a'), [{ ports: [{ protocol: 'TCP' }] }])], [T80, T81, U80], { '80/TCP': [], '81/TCP': [], '80/UDP': ['-*>x/a'] }),

  // named ports
  one('named port: the pods of x allow serve-81-tcp', [ingressPolicy('x', 'named-81', ALL, [{ ports: [{ port: 'serve-81-tcp' }] }])], [T81, T80], { '81/TCP': [], '80/TCP': ['-*>x/*'] }),
  one('named port from a namespace: x/a allows y on serve-80-tcp', [ingressPolicy('x', 'y-on-named-80', podIs('a'), [{ from: [{ namespaceSelector: nsNamed('y') }], ports: [tcp('serve-80-tcp')] }])], [T80, T81], {
    '80/TCP': ['-x/*>x/a', '-z/*>x/a'], '81/TCP': ['-*>x/a'],
  }),
  one('named port on egress: the pods of x may send to serve-80-tcp', [egressPolicy('x', 'to-named-80', ALL, [{ ports: [{ port: 'serve-80-tcp' }] }])], [T80, T81], { '80/TCP': [], '81/TCP': ['-x/*>*'] }),
  one('named UDP port: x/a allows serve-81-udp', [ingressPolicy('x', 'named-udp-81', podIs('a'), [{ ports: [udp('serve-81-udp')] }])], [U81, T81, U80], { '81/UDP': [], '81/TCP': ['-*>x/a'], '80/UDP': ['-*>x/a'] }),
  one('a named port asked for with another protocol opens nothing: serve-80-tcp as UDP', [ingressPolicy('x', 'named-wrong-proto', podIs('a'), [{ ports: [udp('serve-80-tcp')] }])], [U80, T80], each([U80, T80], ['-*>x/a'])),

  // ipBlock
  one('ipBlock on egress: x/a may send to y/b\'s /32 only', (ip) => [egressPolicy('x', 'to-y-b-cidr', podIs('a'), [{ to: [{ ipBlock: { cidr: `${ip('y/b')}/32` } }] }])], [T80], each([T80], ['-x/a>*', '+x/a>y/b'])),
  one('ipBlock with except on egress: x/a to the pod pool except x/b', (ip) => [egressPolicy('x', 'pool-but-x-b', podIs('a'), [{ to: [{ ipBlock: { cidr: POD_POOL, except: [`${ip('x/b')}/32`] } }] }])], [T80, U81], each([T80, U81], ['-x/a>x/b'])),
  {
    name: 'an address in one block\'s except and in another block is allowed (union)',
    steps: [
      { what: 'the pool except x/b', apply: (ip) => [egressPolicy('x', 'pool-but-x-b', podIs('a'), [{ to: [{ ipBlock: { cidr: POD_POOL, except: [`${ip('x/b')}/32`] } }] }])], probe: [T80], hand: each([T80], ['-x/a>x/b']) },
      { what: 'and a second policy allows x/b\'s /32', apply: (ip) => [egressPolicy('x', 'x-b-cidr', podIs('a'), [{ to: [{ ipBlock: { cidr: `${ip('x/b')}/32` } }] }])], probe: [T80, U80], hand: each([T80, U80], []) },
    ],
  },
  one('ipBlock with except on ingress: x/a from the pod pool except y/c', (ip) => [ingressPolicy('x', 'from-pool-but-y-c', podIs('a'), [{ from: [{ ipBlock: { cidr: POD_POOL, except: [`${ip('y/c')}/32`] } }] }])], [T80, U81], each([T80, U81], ['-y/c>x/a'])),

  // Services
  one('egress to a Service: x/a may reach the pods b of y on TCP 80 (their ClusterIPs too)', [
    egressPolicy('x', 'to-y-b-80', podIs('a'), [{ to: [{ namespaceSelector: nsIs('y'), podSelector: podIs('b') }], ports: [tcp(80)] }]),
  ], [T80, T81], { '80/TCP': ['-x/a>*', '+x/a>y/b'], '81/TCP': ['-x/a>*'] }),
  one('egress to the ClusterIP range as an ipBlock opens no backend (judged after translation)', [egressPolicy('x', 'to-service-range', podIs('a'), [{ to: [{ ipBlock: { cidr: SERVICE_RANGE } }] }])], [T80], each([T80], ['-x/a>*'])),

  // changes
  {
    name: 'policy update: allow all ingress, then the same policy without rules',
    steps: [
      { what: 'allow all', apply: [ingressPolicy('x', 'allow-all-mutate-to-deny-all', ALL, [{}])], probe: [T81], hand: each([T81], []) },
      { what: 'updated to no rules', apply: [ingressPolicy('x', 'allow-all-mutate-to-deny-all', ALL, [])], probe: [T81], hand: each([T81], ['-*>x/*']) },
    ],
  },
  {
    name: 'policy update: the allowed peer of x/a changes from x/b to x/c',
    steps: [
      { what: 'from x/b', apply: [ingressPolicy('x', 'a-from', podIs('a'), [{ from: [{ podSelector: podIs('b') }] }])], probe: [T80], hand: each([T80], ['-*>x/a', '+x/b>x/a']) },
      { what: 'updated: from x/c', apply: [ingressPolicy('x', 'a-from', podIs('a'), [{ from: [{ podSelector: podIs('c') }] }])], probe: [T80], hand: each([T80], ['-*>x/a', '+x/c>x/a']) },
    ],
  },
  {
    name: 'pod label change: x/b gains pod2=updated and is allowed, loses it and is denied again',
    steps: [
      { what: 'policy allows pod=b,pod2=updated', apply: [ingressPolicy('x', 'a-from-updated-b', podIs('a'), [{ from: [{ podSelector: pods({ pod: 'b', pod2: 'updated' }) }] }])], probe: [T80], hand: each([T80], ['-*>x/a']) },
      { what: 'x/b labelled pod2=updated', podLabels: { 'x/b': { pod2: 'updated' } }, probe: [T80], hand: each([T80], ['-*>x/a', '+x/b>x/a']) },
      { what: 'the label removed again', podLabels: { 'x/b': { pod2: null } }, probe: [T80], hand: each([T80], ['-*>x/a']) },
    ],
  },
  {
    name: 'pod label change isolates a pod: x/a gains target=isolated',
    steps: [
      { what: 'policy selects target=isolated', apply: [ingressPolicy('x', 'deny-isolated', pods({ target: 'isolated' }))], probe: [T80], hand: each([T80], []) },
      { what: 'x/a labelled target=isolated', podLabels: { 'x/a': { target: 'isolated' } }, probe: [T80], hand: each([T80], ['-*>x/a']) },
    ],
  },
  {
    name: 'namespace label change: y gains ns2=updated and reaches x/a',
    steps: [
      { what: 'policy allows namespaces ns2=updated', apply: [ingressPolicy('x', 'a-from-updated-ns', podIs('a'), [{ from: [{ namespaceSelector: { matchLabels: { ns2: 'updated' } } }] }])], probe: [T80], hand: each([T80], ['-*>x/a']) },
      { what: 'namespace y labelled ns2=updated', nsLabels: { y: { ns2: 'updated' } }, probe: [T80], hand: each([T80], ['-*>x/a', '+y/*>x/a']) },
    ],
  },
  {
    name: 'deleting a policy stops its enforcement',
    steps: [
      { what: 'deny all in and out of x', apply: [policy('x', 'deny-all', { podSelector: ALL, policyTypes: ['Ingress', 'Egress'] })], probe: [T80], hand: each([T80], ['-x/*>*', '-*>x/*']) },
      { what: 'policy deleted', remove: ['x/deny-all'], probe: [T80, U81], hand: each([T80, U81], []) },
    ],
  },
  {
    name: 'multiple ingress policies: allow all takes precedence over a port-80-only policy',
    steps: [
      { what: 'port 80 only', apply: [ingressPolicy('x', 'ingress-80', ALL, [{ ports: [{ port: 80 }] }])], probe: [T81], hand: each([T81], ['-*>x/*']) },
      { what: 'and allow all', apply: [ingressPolicy('x', 'allow-ingress', ALL, [{}])], probe: [T81], hand: each([T81], []) },
    ],
  },
  {
    name: 'multiple egress policies: allow all takes precedence over a port-80-only policy',
    steps: [
      { what: 'port 80 only', apply: [egressPolicy('x', 'egress-80', ALL, [{ ports: [{ port: 80 }] }])], probe: [T81], hand: each([T81], ['-x/*>*']) },
      { what: 'and allow all', apply: [egressPolicy('x', 'allow-egress', ALL, [{}])], probe: [T81], hand: each([T81], []) },
    ],
  },

  // protocols
  one('SCTP is not TCP: default deny ingress plus SCTP 81 allowed to x/a leaves TCP 81 blocked', [
    ingressPolicy('x', 'deny-ingress', ALL),
    ingressPolicy('x', 'sctp-81', podIs('a'), [{ ports: [{ protocol: 'SCTP', port: 81 }] }]),
  ], [T81], each([T81], ['-*>x/*'])),
  one('a pod selected by a policy allowing only SCTP 80 is isolated for TCP 80 and 81', [ingressPolicy('x', 'sctp-80', podIs('a'), [{ ports: [{ protocol: 'SCTP', port: 80 }] }])], [T80, T81], each([T80, T81], ['-*>x/a'])),
  one('a UDP-only rule does not open TCP: x/a allows UDP 81', [ingressPolicy('x', 'udp-81', podIs('a'), [{ ports: [udp(81)] }])], [T81, U81], { '81/TCP': ['-*>x/a'], '81/UDP': [] }),
  one('a TCP-only rule does not open UDP: x/a allows TCP 80', [ingressPolicy('x', 'tcp-80', podIs('a'), [{ ports: [tcp(80)] }])], [T80, U80], { '80/TCP': [], '80/UDP': ['-*>x/a'] }),
];

// ---- the hand expectations ---------------------------------------------------

function matchesPattern(pattern: string, key: string): boolean {
  if (pattern === '*') return true;
  const [pns, ppod] = pattern.split('/');
  const [ns, pod] = key.split('/');
  return (pns === '*' || pns === ns) && (ppod === '*' || ppod === pod);
}

function handTable(ops: string[]): TruthTable {
  const t = new TruthTable(KEYS, true);
  for (const op of ops) {
    const sign = op[0];
    const [from, to] = op.slice(1).split('>');
    if ((sign !== '+' && sign !== '-') || from === undefined || to === undefined) throw new Error(`hand expectation "${op}" is not +from>to or -from>to`);
    for (const f of KEYS) for (const d of KEYS) if (matchesPattern(from, f) && matchesPattern(to, d)) t.set(f, d, sign === '+');
  }
  return t;
}

// ---- what the cluster should be: labels and policies, and the model of it --

const withPatch = (labels: Record<string, string>, patch: Record<string, string | null>): Record<string, string> => {
  const next = { ...labels };
  for (const [k, v] of Object.entries(patch)) if (v === null) delete next[k]; else next[k] = v;
  return next;
};

/** A merge patch from `cur` to `want`. */
const patchTo = (cur: Record<string, string>, want: Record<string, string>): Record<string, string | null> =>
  ({ ...Object.fromEntries(Object.keys(cur).filter((k) => !(k in want)).map((k) => [k, null])), ...want });

class MatrixState {
  readonly podLabels = new Map<string, Record<string, string>>(KEYS.map((k) => [k, initialPodLabels(k)]));
  readonly nsLabels = new Map<string, Record<string, string>>(NAMESPACES.map((n) => [n, initialNsLabels(n)]));
  readonly policies = new Map<string, NetworkPolicy>();

  /** The model of this state, pods at these addresses. */
  model(ip: Ip): NetpolModel {
    return new NetpolModel({
      namespaces: NAMESPACES.map((n) => ({ name: n, labels: this.nsLabels.get(n)! })),
      pods: KEYS.map((key): ModelPod => ({ namespace: key.split('/')[0]!, name: key.split('/')[1]!, labels: this.podLabels.get(key)!, ip: ip(key), ports: CONTAINER_PORTS })),
      policies: [...this.policies.values()],
    });
  }

  /** The model's tables of `cases`; each must equal upstream's hand-written one where the step has it. */
  expected(ip: Ip, what: string, cases: ProbeCase[], hand: Record<string, string[]> = {}): Map<string, TruthTable> {
    const m = this.model(ip);
    const expected = new Map(cases.map((pc) => [caseName(pc), expectedTable(m, pc.port, pc.proto)]));
    for (const [name, ops] of Object.entries(hand)) {
      const h = handTable(ops);
      const e = expected.get(name);
      if (!e) throw new Error(`${what}: hand expectation for ${name}, which is not probed`);
      if (e.diff(h, true).length > 0) {
        throw new Error(`${what}: the model's table for ${name} differs from upstream's expectation (fix the model or the scenario)\n${formatSideBySide(h, e, { ignoreLoopback: true, left: 'upstream (hand)', right: 'model' })}`);
      }
    }
    return expected;
  }
}

/** Addresses for the cluster-free check of the model: each node's pods in its /24 of the pool. */
const fakeIp: Ip = (key) => `10.244.${PLACEMENT[key]}.${KEYS.indexOf(key) + 10}`;

describe('the matrix model agrees with upstream\'s hand-written expectations (no cluster)', () => {
  for (const s of SCENARIOS) {
    test(s.name, () => {
      const st = new MatrixState();
      for (const [i, step] of s.steps.entries()) {
        for (const p of typeof step.apply === 'function' ? step.apply(fakeIp) : step.apply ?? []) st.policies.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
        for (const key of step.remove ?? []) st.policies.delete(key);
        for (const [key, patch] of Object.entries(step.podLabels ?? {})) st.podLabels.set(key, withPatch(st.podLabels.get(key)!, patch));
        for (const [ns, patch] of Object.entries(step.nsLabels ?? {})) st.nsLabels.set(ns, withPatch(st.nsLabels.get(ns)!, patch));
        st.expected(fakeIp, `step ${i + 1} (${step.what})`, step.probe, step.hand);
      }
    });
  }
});

// ---- the suite ---------------------------------------------------------------

describe('NetworkPolicy reachability matrix: namespaces x, y, z, pods a, b, c on three nodes, to pod addresses and ClusterIPs', () => {
  let c: Cluster;
  let client: KubeClient;
  let fleet: ProbeFleet;
  const matrix: MatrixPod[] = [];
  const st = new MatrixState();
  const t0 = Date.now();
  let rounds = 0;

  const ip: Ip = (key) => {
    const p = matrix.find((m) => m.key === key);
    if (!p) throw new Error(`no pod ${key}`);
    return p.pod.ip;
  };
  const k8sName = (key: string) => key.replace('/', '-');
  const podPath = (key: string) => `/api/v1/namespaces/${key.split('/')[0]}/pods/${k8sName(key)}`;
  const policyPath = (ns: string, name?: string) => `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies${name ? `/${name}` : ''}`;

  const agentLogs = (): string => c.agents.map((a) => {
    const lines = a.logs().filter((l) => (Number(l.level) >= 40 && !/watch silent/.test(String(l.msg))) || /polic/i.test(`${String(l.component ?? '')} ${String(l.msg ?? '')}`)).slice(-25);
    return `agent on ${a.node.name} (last ${lines.length} warnings and policy lines):\n${lines.map((l) => `  ${JSON.stringify({ ...l, time: undefined, pid: undefined, hostname: undefined })}`).join('\n')}`;
  }).join('\n');

  /**
   * Probe `cases` through pods and Services until every table equals the
   * model's, or fail with the last round's tables side by side.
   */
  const probeUntil = async (what: string, cases: ProbeCase[], hand?: Record<string, string[]>): Promise<void> => {
    const expected = st.expected(ip, what, cases, hand);
    const deadline = Date.now() + STEP_DEADLINE_MS;
    for (let attempt = 1; ; attempt++) {
      const observed = await fleet.round(cases, VIAS);
      rounds++;
      const failing: string[] = [];
      for (const pc of cases) for (const v of VIAS) {
        const e = expected.get(caseName(pc))!;
        const o = observed.get(`${caseName(pc)} ${v}`)!;
        if (e.diff(o.table, true).length > 0) {
          failing.push(`${caseName(pc)} to ${v === 'pod' ? 'pod addresses' : 'ClusterIPs'}:\n${formatSideBySide(e, o.table, { ignoreLoopback: true, notes: o.notes })}`);
        }
      }
      if (failing.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`${what}: observed reachability differs from the expected after ${attempt} rounds (. connected, X blocked, - loopback not judged, [ ] differs)\n\n${failing.join('\n\n')}\n\npolicies:\n${[...st.policies.values()].map((p) => `  ${JSON.stringify(p)}`).join('\n') || '  (none)'}\n\n${agentLogs()}`);
      }
      await sleep(200);
    }
  };

  const applyPolicy = async (p: NetworkPolicy): Promise<void> => {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    if (st.policies.has(key)) {
      const cur = await client.get<{ metadata: { resourceVersion: string } }>(policyPath(p.metadata.namespace, p.metadata.name));
      await client.replace(policyPath(p.metadata.namespace, p.metadata.name), { ...p, metadata: { ...p.metadata, resourceVersion: cur.metadata.resourceVersion } });
    } else {
      await client.create(policyPath(p.metadata.namespace), p);
    }
    st.policies.set(key, p);
  };

  const removePolicy = async (key: string): Promise<void> => {
    const [ns, name] = key.split('/') as [string, string];
    await client.delete(policyPath(ns, name));
    st.policies.delete(key);
  };

  const patchPodLabels = async (key: string, patch: Record<string, string | null>): Promise<void> => {
    await client.mergePatch(podPath(key), { metadata: { labels: patch } });
    st.podLabels.set(key, withPatch(st.podLabels.get(key)!, patch));
  };

  const patchNsLabels = async (ns: string, patch: Record<string, string | null>): Promise<void> => {
    await client.mergePatch(`/api/v1/namespaces/${ns}`, { metadata: { labels: patch } });
    st.nsLabels.set(ns, withPatch(st.nsLabels.get(ns)!, patch));
  };

  /** Back to the start: no policies (every one in x, y, z deleted), the labels as created, every cell connected. */
  const reset = async (): Promise<void> => {
    for (const ns of NAMESPACES) {
      const list = await client.get<{ items: { metadata: { name: string } }[] }>(policyPath(ns));
      for (const item of list.items) await client.delete(policyPath(ns, item.metadata.name));
    }
    st.policies.clear();
    for (const key of KEYS) {
      const cur = st.podLabels.get(key)!;
      const want = initialPodLabels(key);
      if (JSON.stringify(cur) !== JSON.stringify(want)) await patchPodLabels(key, patchTo(cur, want));
    }
    for (const ns of NAMESPACES) {
      const cur = st.nsLabels.get(ns)!;
      const want = initialNsLabels(ns);
      if (JSON.stringify(cur) !== JSON.stringify(want)) await patchNsLabels(ns, patchTo(cur, want));
    }
    await probeUntil('back to no policies', ALL_CASES);
  };

  before(async () => {
    c = await Cluster.create({ name: 'npm', nodes: 3, ipam: 'cluster-pool' });
    await installIdentityPolicy(c.cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(c.cp.hostKubeconfigPath, { userAgent: 'hypha-e2e-netpol' });
    for (const ns of NAMESPACES) await client.create('/api/v1/namespaces', { metadata: { name: ns, labels: initialNsLabels(ns) } });
    // Pod objects as the scheduler leaves them (labels, named container
    // ports), the pods through CNI, then their addresses in the status as the
    // kubelet writes them; a server on 80 and 81 (TCP and UDP) answering with
    // the pod's `ns/name`; a ClusterIP Service per pod with its slice.
    const ports = CONTAINER_PORTS.map((p) => ({ name: p.name, port: p.containerPort, protocol: p.protocol as 'TCP' | 'UDP' }));
    await Promise.all(KEYS.map(async (key, i) => {
      const [ns, name] = key.split('/') as [string, string];
      const node = c.nodes[PLACEMENT[key]!] as Node;
      await client.create(`/api/v1/namespaces/${ns}/pods`, {
        metadata: { name: k8sName(key), labels: initialPodLabels(key) },
        spec: { nodeName: node.name, containers: [{ name: 'server', image: 'registry.k8s.io/pause:3.10.2', ports: CONTAINER_PORTS }] },
      });
      const pod = await c.topo.addPod(node, k8sName(key), { namespace: ns });
      await client.mergePatchStatus(podPath(key), { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } });
      await c.topo.spawnReady(pod, toolArgv('echo-server', ['--name', key, '--port', '80,81', '--both']), { timeoutMs: 20_000 });
      const service: ServiceSpec = { name: `s-${name}`, namespace: ns, clusterIP: `10.96.100.${i + 1}`, selector: { pod: name }, ports };
      await c.applyService(service);
      await c.applySlice(service, [{ ip: pod.ip, node: node.name }], ports);
      matrix[i] = { key, pod, clusterIP: service.clusterIP };
    }));
    const frontends = matrix.flatMap((m) => ALL_CASES.map((pc) => `${m.clusterIP}:${pc.port}/${pc.proto}`));
    await Promise.all(c.agents.map((a) => a.waitForFrontends(frontends, 1, 30_000)));
    await eventually('every pod address in every ipcache with an identity', () => c.agents.every((a) => {
      const m = a.ipcache();
      return matrix.every((p) => (m.get(`${p.pod.ip}/32`)?.identity ?? 0) >= 256);
    }), 30_000);
    fleet = await ProbeFleet.start(c.topo, matrix, c.work, 1000);
  });

  after(async () => {
    await fleet?.close().catch(() => undefined);
    client?.close();
    await c?.destroy();
    process.stdout.write(`# netpol matrix: ${SCENARIOS.length} scenarios, ${rounds} probe rounds, ${fleet?.probes ?? 0} probes, ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  });

  test('without policies every pod reaches every pod on 80 and 81, TCP and UDP, by address and by ClusterIP', async () => {
    await probeUntil('no policies', ALL_CASES);
  });

  for (const s of SCENARIOS) {
    test(s.name, async () => {
      await reset();
      for (const [i, step] of s.steps.entries()) {
        for (const p of typeof step.apply === 'function' ? step.apply(ip) : step.apply ?? []) await applyPolicy(p);
        for (const key of step.remove ?? []) await removePolicy(key);
        for (const [key, patch] of Object.entries(step.podLabels ?? {})) await patchPodLabels(key, patch);
        for (const [ns, patch] of Object.entries(step.nsLabels ?? {})) await patchNsLabels(ns, patch);
        await probeUntil(`step ${i + 1} (${step.what})`, step.probe, step.hand);
      }
    });
  }
});
