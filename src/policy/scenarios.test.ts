// The upstream NetworkPolicy e2e scenarios (test/e2e/network/netpol), as
// truth tables over namespaces x, y, z with pods a, b, c: the expected
// reachability is written per scenario the way the upstream specs write it
// (everything allowed, then the policy's exceptions), and the observed one
// is what trace() says from the compiled entries. Then a randomised check
// against a direct reading of the Kubernetes semantics over pods and
// addresses (no identities, no entries), written separately here.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type CompiledPolicy, compilePolicies } from './compile.ts';
import { cluster, policy, type PodSpec, xyz } from './fixtures.ts';
import type { Identity, LabelSelector, NetworkPolicy, Protocol } from './model.ts';
import { trace } from './trace.ts';

type Pol = ReturnType<typeof policy>;

interface Filter {
  ns?: string;
  pod?: string;
}

class Reachability {
  readonly pods: string[];
  readonly #m = new Map<string, boolean>();
  constructor(pods: string[], dflt: boolean) {
    this.pods = pods;
    for (const f of pods) for (const t of pods) this.#m.set(`${f}>${t}`, dflt);
  }

  expect(from: string, to: string, v: boolean): this {
    this.#m.set(`${from}>${to}`, v);
    return this;
  }

  expectPeer(from: Filter, to: Filter, v: boolean): this {
    const ok = (pod: string, f: Filter) => {
      const [ns, name] = pod.split('/');
      return (f.ns === undefined || f.ns === ns) && (f.pod === undefined || f.pod === name);
    };
    for (const f of this.pods) for (const t of this.pods) if (ok(f, from) && ok(t, to)) this.#m.set(`${f}>${t}`, v);
    return this;
  }

  expectAllIngress(pod: string, v: boolean): this {
    const [ns, name] = pod.split('/');
    return this.expectPeer({}, { ns: ns!, pod: name! }, v);
  }

  expectAllEgress(pod: string, v: boolean): this {
    const [ns, name] = pod.split('/');
    return this.expectPeer({ ns: ns!, pod: name! }, {}, v);
  }

  get(from: string, to: string): boolean {
    return this.#m.get(`${from}>${to}`)!;
  }
}

const k = xyz();
const compile = (policies: Pol[], identities: Identity[] = k.identities): CompiledPolicy =>
  compilePolicies({ identities, endpoints: k.endpoints, policies });

/** Compares every pair but loopback (upstream ignores it too), printing both tables on a difference. */
function validate(c: CompiledPolicy, port: number, proto: Protocol, want: Reachability): void {
  const diffs: string[] = [];
  const table = (f: (a: string, b: string) => boolean) =>
    ['-\t' + k.pods.join('\t'), ...k.pods.map((a) => `${a}\t${k.pods.map((b) => (f(a, b) ? '.' : 'X')).join('\t')}`)].join('\n');
  const got = (a: string, b: string) => trace(c, { from: { endpoint: a }, to: { endpoint: b }, proto, port }).verdict === 'allowed';
  for (const a of k.pods) for (const b of k.pods) if (a !== b && got(a, b) !== want.get(a, b)) diffs.push(`${a} -> ${b}`);
  assert.deepEqual(diffs, [], `${port}/${proto}\nexpected:\n${table((a, b) => want.get(a, b))}\nobserved:\n${table(got)}`);
}

const all = () => new Reachability(k.pods, true);
const podSel = (pod: string) => ({ matchLabels: { pod } });
const nsName = (ns: string) => ({ matchLabels: { 'kubernetes.io/metadata.name': ns } });
const denyIngress = (ns = 'x') => policy(ns, 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] });
const ingressTo = (ns: string, name: string, target: Record<string, string>, rules: unknown[]) =>
  policy(ns, name, { podSelector: { matchLabels: target }, policyTypes: ['Ingress'], ingress: rules });
const egressFrom = (ns: string, name: string, target: Record<string, string>, rules: unknown[]) =>
  policy(ns, name, { podSelector: { matchLabels: target }, policyTypes: ['Egress'], egress: rules });

describe('upstream NetworkPolicy scenarios (truth tables over x, y, z / a, b, c)', () => {
  test("default-deny-ingress", () => {
    validate(compile([denyIngress()]), 80, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
  });

  test("default-deny-all", () => {
    const c = compile([policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })]);
    validate(c, 80, 'TCP', all().expectPeer({}, { ns: 'x' }, false).expectPeer({ ns: 'x' }, {}, false));
  });

  test('allow traffic from pods within the server namespace by podSelector', () => {
    const c = compile([ingressTo('x', 'x-a-allows-x-b', { pod: 'a' }, [{ from: [{ podSelector: podSel('b') }] }])]);
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false).expect('x/b', 'x/a', true));
  });

  test('allow ingress for a target (deny-all plus allow-all-to-a)', () => {
    const c = compile([denyIngress(), ingressTo('x', 'allow-all-to-a', { pod: 'a' }, [{ from: [{ podSelector: {}, namespaceSelector: {} }] }])]);
    validate(c, 80, 'TCP', all().expectAllIngress('x/b', false).expectAllIngress('x/c', false));
  });

  test('allow ingress from pods in all namespaces (namespaceSelector {})', () => {
    validate(compile([ingressTo('x', 'allow-from-another-ns', { pod: 'a' }, [{ from: [{ namespaceSelector: {} }] }])]), 80, 'TCP', all());
  });

  test('allow traffic only from a different namespace (namespaceSelector, default namespace label)', () => {
    const c = compile([ingressTo('x', 'allow-client-a-via-ns-selector', { pod: 'a' }, [{ from: [{ namespaceSelector: nsName('y') }] }])]);
    validate(c, 80, 'TCP', all().expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'z' }, { ns: 'x', pod: 'a' }, false));
  });

  test('podSelector with matchExpressions', () => {
    const c = compile([ingressTo('x', 'x-a-allows-x-b', { pod: 'a' }, [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] }])]);
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false).expect('x/b', 'x/a', true));
  });

  test('namespaceSelector with matchExpressions', () => {
    const sel = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['y'] }] };
    const c = compile([ingressTo('x', 'allow-ns-y', { pod: 'a' }, [{ from: [{ namespaceSelector: sel }] }])]);
    validate(c, 80, 'TCP', all().expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'z' }, { ns: 'x', pod: 'a' }, false));
  });

  test('podSelector OR namespaceSelector', () => {
    const notX = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] };
    const c = compile([ingressTo('x', 'or', { pod: 'a' }, [{ from: [{ namespaceSelector: notX }, { podSelector: podSel('b') }] }])]);
    validate(c, 80, 'TCP', all().expect('x/a', 'x/a', false).expect('x/c', 'x/a', false));
  });

  test('podSelector AND namespaceSelector', () => {
    const notX = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] };
    const c = compile([ingressTo('x', 'and', { pod: 'a' }, [{ from: [{ namespaceSelector: notX, podSelector: podSel('b') }] }])]);
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false).expect('y/b', 'x/a', true).expect('z/b', 'x/a', true));
  });

  test('multiple podSelectors and namespaceSelectors', () => {
    const notX = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] };
    const bc = { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] };
    const c = compile([ingressTo('x', 'multi', { pod: 'a' }, [{ from: [{ namespaceSelector: notX, podSelector: bc }] }])]);
    const want = all().expectAllIngress('x/a', false);
    for (const p of ['y/b', 'y/c', 'z/b', 'z/c']) want.expect(p, 'x/a', true);
    validate(c, 80, 'TCP', want);
  });

  test('allow ingress on one named port (and not the other)', () => {
    const c = compile([ingressTo('x', 'allow-81', {}, [{ ports: [{ port: 'serve-81-tcp' }] }])]);
    validate(c, 81, 'TCP', all());
    validate(c, 80, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
  });

  test('allow ingress from a namespace on one named port', () => {
    const c = compile([ingressTo('x', 'allow-y-80', {}, [{ from: [{ namespaceSelector: nsName('y') }], ports: [{ port: 'serve-80-tcp' }] }])]);
    validate(c, 80, 'TCP', all().expectPeer({ ns: 'x' }, { ns: 'x' }, false).expectPeer({ ns: 'z' }, { ns: 'x' }, false));
    validate(c, 81, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
  });

  test('allow egress on one named port (resolved on the destination pods)', () => {
    const c = compile([egressFrom('x', 'allow-egress-80', {}, [{ ports: [{ port: 'serve-80-tcp' }] }])]);
    validate(c, 80, 'TCP', all());
    validate(c, 81, 'TCP', all().expectPeer({ ns: 'x' }, {}, false));
  });

  test('updated policy is enforced (named port 81 then numeric 80)', () => {
    const before = compile([ingressTo('x', 'p', {}, [{ ports: [{ port: 'serve-81-tcp' }] }])]);
    validate(before, 81, 'TCP', all());
    const after = compile([ingressTo('x', 'p', {}, [{ ports: [{ port: 80 }] }])]);
    validate(after, 81, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
    validate(after, 80, 'TCP', all());
  });

  test('ports: only 81 from namespace y; then 80 and 81 (multiple ports)', () => {
    const one = compile([ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: nsName('y') }], ports: [{ port: 81 }] }])]);
    const fromYOnly = () => all().expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'z' }, { ns: 'x', pod: 'a' }, false);
    validate(one, 81, 'TCP', fromYOnly());
    validate(one, 80, 'TCP', all().expectAllIngress('x/a', false));
    const two = compile([ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: nsName('y') }], ports: [{ port: 80 }, { port: 81 }] }])]);
    validate(two, 80, 'TCP', fromYOnly());
    validate(two, 81, 'TCP', fromYOnly());
  });

  test('endPort: a port range covers both ends, and no more', () => {
    const c = compile([ingressTo('x', 'range', {}, [{ ports: [{ port: 80, endPort: 81 }] }])]);
    validate(c, 80, 'TCP', all());
    validate(c, 81, 'TCP', all());
    const narrow = compile([egressFrom('x', 'range', {}, [{ ports: [{ port: 79, endPort: 80, protocol: 'UDP' }] }])]);
    validate(narrow, 80, 'UDP', all());
    validate(narrow, 81, 'UDP', all().expectPeer({ ns: 'x' }, {}, false));
    validate(narrow, 80, 'TCP', all().expectPeer({ ns: 'x' }, {}, false));
  });

  test('deny ingress from pods of other namespaces (podSelector {} peer)', () => {
    const c = compile([policy('x', 'deny-empty', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })]);
    validate(c, 80, 'TCP', all().expectPeer({ ns: 'y' }, { ns: 'x' }, false).expectPeer({ ns: 'z' }, { ns: 'x' }, false));
  });

  test('deny ingress to an updated pod (it gains the selected label)', () => {
    const p = policy('x', 'deny-isolated', { podSelector: { matchLabels: { target: 'isolated' } }, policyTypes: ['Ingress'] });
    validate(compile([p]), 80, 'TCP', all());
    const relabelled = k.identities.map((i) => (i.id === k.id('x/a') ? { ...i, podLabels: { pod: 'a', target: 'isolated' } } : i));
    validate(compile([p], relabelled), 80, 'TCP', all().expectAllIngress('x/a', false));
  });

  test('allow ingress from an updated pod and from an updated namespace', () => {
    const fromPod = ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'b', role: 'client' } } }] }]);
    validate(compile([fromPod]), 80, 'TCP', all().expectAllIngress('x/a', false));
    const podRelabelled = k.identities.map((i) => (i.id === k.id('x/b') ? { ...i, podLabels: { pod: 'b', role: 'client' } } : i));
    validate(compile([fromPod], podRelabelled), 80, 'TCP', all().expectAllIngress('x/a', false).expect('x/b', 'x/a', true));
    const fromNs = ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }]);
    validate(compile([fromNs]), 80, 'TCP', all().expectAllIngress('x/a', false));
    const nsRelabelled = k.identities.map((i) => (i.namespace === 'y' ? { ...i, namespaceLabels: { ns: 'y', team: 'blue' } } : i));
    validate(compile([fromNs], nsRelabelled), 80, 'TCP', all().expectAllIngress('x/a', false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true));
  });

  test('deny egress from a pod; from all pods of a namespace', () => {
    validate(compile([egressFrom('x', 'deny-egress-a', { pod: 'a' }, [])]), 80, 'TCP', all().expectAllEgress('x/a', false));
    validate(compile([egressFrom('x', 'deny-egress-x', {}, [])]), 80, 'TCP', all().expectPeer({ ns: 'x' }, {}, false));
  });

  test('Ingress and Egress specified together', () => {
    const p = policy('x', 'p', {
      podSelector: podSel('a'), policyTypes: ['Egress', 'Ingress'],
      ingress: [{ from: [{ podSelector: podSel('b') }] }], egress: [{ ports: [{ port: 80 }] }],
    });
    const c = compile([p]);
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false).expect('x/b', 'x/a', true));
    validate(c, 81, 'TCP', all().expectAllIngress('x/a', false).expectAllEgress('x/a', false).expect('x/b', 'x/a', true));
  });

  test('egress denied at the client even when the server allows it', () => {
    const toYa = egressFrom('x', 'allow-to-ns-y-pod-a', { pod: 'a' }, [{ to: [{ namespaceSelector: nsName('y'), podSelector: podSel('a') }] }]);
    const fromXa = [{ from: [{ namespaceSelector: nsName('x'), podSelector: podSel('a') }] }];
    const c = compile([toYa, ingressTo('y', 'allow-xa-on-ya', { pod: 'a' }, fromXa), ingressTo('y', 'allow-xa-on-yb', { pod: 'b' }, fromXa)]);
    validate(c, 80, 'TCP', all()
      .expectPeer({ ns: 'x', pod: 'a' }, {}, false)
      .expectPeer({}, { ns: 'y', pod: 'a' }, false)
      .expectPeer({ ns: 'x', pod: 'a' }, { ns: 'y', pod: 'a' }, true)
      .expectPeer({}, { ns: 'y', pod: 'b' }, false));
  });

  test('egress to a server in another namespace by podSelector AND namespaceSelector', () => {
    const c = compile([egressFrom('x', 'p', { pod: 'a' }, [{ to: [{ namespaceSelector: nsName('y'), podSelector: podSel('a') }] }])]);
    validate(c, 80, 'TCP', all().expectAllEgress('x/a', false).expect('x/a', 'y/a', true));
  });

  test('ingress on any port of one protocol (TCP yes, UDP no)', () => {
    const c = compile([ingressTo('x', 'by-proto', { pod: 'a' }, [{ ports: [{ protocol: 'TCP' }] }])]);
    validate(c, 80, 'TCP', all());
    validate(c, 80, 'UDP', all().expectAllIngress('x/a', false));
  });

  test('multiple ingress policies: allow-all takes precedence', () => {
    const only80 = ingressTo('x', 'allow-80', {}, [{ ports: [{ port: 80 }] }]);
    validate(compile([only80]), 81, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
    validate(compile([only80, ingressTo('x', 'allow-all', {}, [{}])]), 81, 'TCP', all());
  });

  test('multiple egress policies: allow-all takes precedence', () => {
    const only80 = egressFrom('x', 'allow-80', {}, [{ ports: [{ port: 80 }] }]);
    validate(compile([only80]), 81, 'TCP', all().expectPeer({ ns: 'x' }, {}, false));
    validate(compile([only80, egressFrom('x', 'allow-all', {}, [{}])]), 81, 'TCP', all());
  });

  test('enforcement stops when the policies are deleted', () => {
    const denyAll = policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    validate(compile([denyAll]), 80, 'TCP', all().expectPeer({ ns: 'x' }, {}, false).expectPeer({}, { ns: 'x' }, false));
    validate(compile([]), 80, 'TCP', all());
  });

  test('egress to a server in a CIDR block (the pod address /32)', () => {
    const c = compile([egressFrom('x', 'cidr', { pod: 'a' }, [{ to: [{ ipBlock: { cidr: `${k.ipOf('y/b')}/32` } }] }])]);
    validate(c, 80, 'TCP', all().expectAllEgress('x/a', false).expect('x/a', 'y/b', true));
  });

  test('except clause in an egress CIDR block (x/a\'s address /4, except x/b)', () => {
    const c = compile([egressFrom('x', 'cidr', { pod: 'a' }, [{ to: [{ ipBlock: { cidr: `${k.ipOf('x/a')}/4`, except: [`${k.ipOf('x/b')}/32`] } }] }])]);
    validate(c, 80, 'TCP', all().expect('x/a', 'x/b', false));
  });

  test('an IP in one block\'s except and in another block (policy updated) is allowed', () => {
    const excepting = egressFrom('x', 'cidr', { pod: 'a' }, [{ to: [{ ipBlock: { cidr: `${k.ipOf('x/a')}/4`, except: [`${k.ipOf('x/b')}/32`] } }] }]);
    validate(compile([excepting]), 80, 'TCP', all().expect('x/a', 'x/b', false));
    const updated = egressFrom('x', 'cidr', { pod: 'a' }, [{ to: [{ ipBlock: { cidr: `${k.ipOf('x/b')}/32` } }] }]);
    validate(compile([updated]), 80, 'TCP', all().expectAllEgress('x/a', false).expect('x/a', 'x/b', true));
    const both = egressFrom('x', 'cidr2', { pod: 'a' }, [{ to: [{ ipBlock: { cidr: `${k.ipOf('x/b')}/32` } }] }]);
    validate(compile([excepting, both]), 80, 'TCP', all());
  });

  test('ingress and egress controlled independently', () => {
    const egress = egressFrom('x', 'allow-egress', { pod: 'a' }, [{}]);
    validate(compile([egress]), 80, 'TCP', all());
    validate(compile([egress, ingressTo('x', 'deny-ingress', { pod: 'a' }, [])]), 80, 'TCP', all().expectAllIngress('x/a', false));
  });

  test("'protocol: SCTP' is never TCP (default deny plus SCTP 81)", () => {
    const c = compile([denyIngress(), ingressTo('x', 'sctp-81', { pod: 'a' }, [{ ports: [{ port: 81, protocol: 'SCTP' }] }])]);
    validate(c, 81, 'TCP', all().expectPeer({}, { ns: 'x' }, false));
    validate(c, 81, 'SCTP', all().expectPeer({}, { ns: 'x' }, false).expectPeer({}, { ns: 'x', pod: 'a' }, true));
    validate(c, 80, 'SCTP', all().expectPeer({}, { ns: 'x' }, false));
  });

  test('a policy allowing only SCTP isolates the pod for TCP', () => {
    const c = compile([ingressTo('x', 'sctp-80', { pod: 'a' }, [{ ports: [{ port: 80, protocol: 'SCTP' }] }])]);
    validate(c, 81, 'TCP', all().expectAllIngress('x/a', false));
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false));
    validate(c, 80, 'SCTP', all());
  });

  test('a policy allowing only UDP does not allow TCP', () => {
    const c = compile([ingressTo('x', 'udp-81', { pod: 'a' }, [{ ports: [{ port: 81, protocol: 'UDP' }] }])]);
    validate(c, 81, 'TCP', all().expectAllIngress('x/a', false));
    validate(c, 81, 'UDP', all());
  });

  test('default namespace label: matchLabels (ingress) and matchExpressions NotIn (egress)', () => {
    const c1 = compile([ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: nsName('y') }] }])]);
    validate(c1, 80, 'TCP', all().expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'z' }, { ns: 'x', pod: 'a' }, false));
    const notY = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['y'] }] };
    const c2 = compile([egressFrom('x', 'p', { pod: 'a' }, [{ to: [{ namespaceSelector: notY }] }])]);
    validate(c2, 80, 'TCP', all().expectPeer({ ns: 'x', pod: 'a' }, { ns: 'y' }, false));
  });

  test('UDP: default deny ingress; ingress from a namespace on a named UDP port', () => {
    validate(compile([denyIngress()]), 80, 'UDP', all().expectPeer({}, { ns: 'x' }, false));
    const c = compile([ingressTo('x', 'p', {}, [{ from: [{ namespaceSelector: nsName('y') }], ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }])]);
    validate(c, 81, 'UDP', all().expectPeer({ ns: 'x' }, { ns: 'x' }, false).expectPeer({ ns: 'z' }, { ns: 'x' }, false));
    validate(c, 80, 'UDP', all().expectPeer({}, { ns: 'x' }, false));
    validate(c, 81, 'TCP', all().expectPeer({}, { ns: 'x' }, false), );
  });

  test('SCTP: default deny; allow SCTP 80 from namespace y by named port', () => {
    validate(compile([denyIngress()]), 80, 'SCTP', all().expectPeer({}, { ns: 'x' }, false));
    const c = compile([ingressTo('x', 'p', { pod: 'a' }, [{ from: [{ namespaceSelector: nsName('y') }], ports: [{ port: 'serve-80-sctp', protocol: 'SCTP' }] }])]);
    validate(c, 80, 'SCTP', all().expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'z' }, { ns: 'x', pod: 'a' }, false));
    validate(c, 80, 'TCP', all().expectAllIngress('x/a', false));
  });

  test('egress allowed to a namespace and ingress limited there: both must allow', () => {
    const c = compile([
      egressFrom('x', 'to-y', {}, [{ to: [{ namespaceSelector: nsName('y') }], ports: [{ port: 80 }] }]),
      ingressTo('y', 'from-x-a', {}, [{ from: [{ namespaceSelector: nsName('x'), podSelector: podSel('a') }] }, { from: [{ podSelector: {} }] }]),
    ]);
    validate(c, 80, 'TCP', all()
      .expectPeer({ ns: 'x' }, {}, false).expectPeer({ ns: 'x' }, { ns: 'y' }, false)
      .expectPeer({ ns: 'x', pod: 'a' }, { ns: 'y' }, true).expectPeer({ ns: 'z' }, { ns: 'y' }, false));
  });
});

// ---- randomised: compiled entries + trace against a direct reading ----

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Selector matching written again, apart from selectors.ts. */
function sat(s: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!s) return true;
  const ok = Object.entries(s.matchLabels).every(([key, v]) => Object.hasOwn(labels, key) && labels[key] === v);
  return ok && s.matchExpressions.every((r) => {
    const v = Object.hasOwn(labels, r.key) ? labels[r.key] : undefined;
    if (r.operator === 'In') return v !== undefined && r.values.includes(v);
    if (r.operator === 'NotIn') return v === undefined || !r.values.includes(v);
    if (r.operator === 'Exists') return v !== undefined;
    return v === undefined;
  });
}

function inCidr(ip: string, cidr: string): boolean {
  const num = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const [net, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(num(ip) / size) === Math.floor(num(net!) / size);
}

interface OraclePod extends PodSpec {
  nsLabels: Record<string, string>;
}

/** Kubernetes' semantics over pods: is traffic `src` -> `dst` on port/proto allowed? */
function oracle(policies: NetworkPolicy[], src: OraclePod, dst: OraclePod, proto: Protocol, port: number): boolean {
  const side = (dir: 'ingress' | 'egress'): boolean => {
    const self = dir === 'ingress' ? dst : src;
    const peer = dir === 'ingress' ? src : dst;
    const selecting = policies.filter((p) => p.namespace === self.namespace && p.policyTypes.includes(dir) && p.podSelector !== 'unreadable' && sat(p.podSelector, self.labels));
    if (selecting.length === 0) return true;
    return selecting.some((p) => p[dir].some((rule) => {
      const peerOk = (pr: NetworkPolicy['ingress'][number]['peers'] extends (infer T)[] | 'all' ? T : never) =>
        pr.kind === 'ipBlock'
          ? inCidr(peer.ip!, pr.cidr) && !pr.except.some((e) => inCidr(peer.ip!, e))
          : (pr.namespaceSelector ? sat(pr.namespaceSelector, { 'kubernetes.io/metadata.name': peer.namespace, ...peer.nsLabels }) : peer.namespace === p.namespace) &&
            sat(pr.podSelector, peer.labels);
      const matchedPeers = rule.peers === 'all' ? ['all' as const] : rule.peers.filter(peerOk);
      if (matchedPeers.length === 0) return false;
      if (rule.ports === 'all') return true;
      return rule.ports.some((pp) => {
        if (pp.protocol !== proto) return false;
        if (pp.kind === 'all') return true;
        if (pp.kind === 'range') return pp.from <= port && port <= pp.to;
        // Named: on the destination pod. Towards an ipBlock peer on egress Hypha
        // cannot tell the pod behind an address, and allows nothing (documented).
        if (dir === 'egress' && rule.peers !== 'all' && matchedPeers.every((m) => m !== 'all' && m.kind === 'ipBlock')) return false;
        return (dst.ports ?? []).some((np) => np.name === pp.name && np.protocol === proto && np.port === port);
      });
    }));
  };
  return side('egress') && side('ingress');
}

describe('randomised: compiled entries agree with a direct reading of the semantics', () => {
  // Pods with differing named ports: web is 80 on b, 81 on c, absent on a;
  // dns is 80/UDP and 81/TCP on a and c, 81/UDP and 80/TCP on b.
  const pods: OraclePod[] = [];
  ['x', 'y', 'z'].forEach((ns, i) => ['a', 'b', 'c'].forEach((name, j) => pods.push({
    namespace: ns, name, labels: { pod: name, ...(j === 0 ? { role: 'db' } : {}) }, nsLabels: { team: i === 2 ? 'red' : 'blue' }, ip: `10.0.${i + 1}.${j + 1}`,
    ports: [
      ...(name === 'b' ? [{ name: 'web', port: 80, protocol: 'TCP' as const }] : name === 'c' ? [{ name: 'web', port: 81, protocol: 'TCP' as const }] : []),
      // One name on two protocols with different numbers: dns/UDP and dns/TCP.
      { name: 'dns', port: 80 + (j % 2), protocol: 'UDP' as const }, { name: 'dns', port: 81 - (j % 2), protocol: 'TCP' as const },
      { name: 'sig', port: 81, protocol: 'SCTP' as const },
    ],
  })));
  const c0 = cluster(pods, { x: { team: 'blue' }, y: { team: 'blue' }, z: { team: 'red' } });
  const keyOf = (p: PodSpec) => `${p.namespace}/${p.name}`;
  const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const selectors = [{}, { matchLabels: { pod: 'a' } }, { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] },
    { matchExpressions: [{ key: 'role', operator: 'Exists' }] }, { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] },
    { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['b'] }] }];
  const nsSelectors = [{}, { matchLabels: { team: 'red' } }, { matchLabels: { 'kubernetes.io/metadata.name': 'y' } },
    { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['red'] }] }];
  const blocks = [{ cidr: '10.0.0.0/16' }, { cidr: '10.0.0.0/16', except: ['10.0.2.0/24'] }, { cidr: '10.0.1.2/32' },
    { cidr: '10.0.2.0/24', except: ['10.0.2.2/31'] }, { cidr: '0.0.0.0/0', except: ['10.0.1.0/24', '10.0.3.1/32'] }, { cidr: '10.0.3.0/30' }];
  const ports = [{ port: 80 }, { port: 81, protocol: 'UDP' }, { protocol: 'SCTP' }, { port: 'web' }, { port: 'dns', protocol: 'UDP' },
    { port: 'sig', protocol: 'SCTP' }, { port: 79, endPort: 80 }, { protocol: 'UDP' }, { port: 'dns' }];
  const peer = (r: () => number): unknown => {
    const kind = r();
    if (kind < 0.3) return { podSelector: pick(r, selectors) };
    if (kind < 0.5) return { namespaceSelector: pick(r, nsSelectors) };
    if (kind < 0.75) return { podSelector: pick(r, selectors), namespaceSelector: pick(r, nsSelectors) };
    return { ipBlock: pick(r, blocks) };
  };
  const rules = (r: () => number, peerKey: 'from' | 'to'): unknown[] => Array.from({ length: Math.floor(r() * 3) }, () => ({
    ...(r() < 0.75 ? { [peerKey]: Array.from({ length: 1 + Math.floor(r() * 2) }, () => peer(r)) } : {}),
    ...(r() < 0.7 ? { ports: Array.from({ length: 1 + Math.floor(r() * 2) }, () => pick(r, ports)) } : {}),
  }));
  const randomPolicies = (seed: number): NetworkPolicy[] => {
    const r = rng(seed);
    return Array.from({ length: 1 + Math.floor(r() * 4) }, (_, i) => {
      const types = pick(r, [undefined, ['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
      return policy(pick(r, ['x', 'y', 'z']), `p${i}`, {
        podSelector: pick(r, selectors), ...(types ? { policyTypes: types } : {}),
        ingress: rules(r, 'from'), egress: r() < 0.6 ? rules(r, 'to') : [],
      });
    });
  };

  test('300 random policy sets, every pair, ports 80/81 on TCP, UDP, SCTP', () => {
    let checked = 0;
    let allowed = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const policies = randomPolicies(seed);
      const c = compilePolicies({ identities: c0.identities, endpoints: c0.endpoints, policies });
      for (const src of pods) {
        for (const dst of pods) {
          for (const proto of ['TCP', 'UDP', 'SCTP'] as const) {
            for (const port of [80, 81]) {
              const want = oracle(policies, src, dst, proto, port);
              const got = trace(c, { from: { endpoint: keyOf(src) }, to: { endpoint: keyOf(dst) }, proto, port }).verdict === 'allowed';
              if (got !== want) {
                assert.fail(`seed ${seed}: ${keyOf(src)} -> ${keyOf(dst)} ${port}/${proto}: compiled says ${got}, semantics say ${want}\n${JSON.stringify(policies, null, 1)}`);
              }
              checked++;
              if (want) allowed++;
            }
          }
        }
      }
    }
    // Both verdicts are well represented (not a vacuous agreement).
    assert.ok(allowed > checked * 0.2 && allowed < checked * 0.9, `${allowed} of ${checked} allowed`);
  });
});
