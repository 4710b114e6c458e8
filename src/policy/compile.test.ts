import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrIdentityOf, type CompiledPolicy, compilePolicies } from './compile.ts';
import { cluster, policy, xyz } from './fixtures.ts';
import { CIDR_IDENTITY_BASE, type Entry, IDENTITY_HOST, type Provenance } from './model.ts';
import { normalizeNetworkPolicy } from './normalize.ts';

const get = (c: CompiledPolicy, key: string) => {
  const e = c.endpoints.find((x) => x.key === key);
  assert.ok(e, `no endpoint ${key}`);
  return e;
};
/** Entries without the implicit host allow, as [identity, proto, ports] triples. */
const keys = (entries: Entry[]) => entries.filter((e) => !e.because.some((p) => p.implicit))
  .map((e) => [e.identity, e.proto, e.ports === 'any' ? 'any' : `${e.ports.from}-${e.ports.to}`]);
const prov = (policy: string, direction: 'ingress' | 'egress', rule: number, peer: number | 'all', port: number | 'all'): Provenance =>
  ({ policy, direction, rule, peer, port });

describe('compilePolicies: selection and default deny', () => {
  const k = xyz();
  const tables = (policies: ReturnType<typeof policy>[]) => ({ identities: k.identities, endpoints: k.endpoints, policies });

  test('no policy: every pod open both ways, no entries', () => {
    const c = compilePolicies(tables([]));
    for (const e of c.endpoints) {
      assert.deepEqual([e.ingress, e.egress], [{ enforced: false, entries: [], selectedBy: [] }, { enforced: false, entries: [], selectedBy: [] }]);
    }
    assert.deepEqual(c.problems, []);
  });

  test('default deny ingress: the namespace\'s pods are enforced for ingress only, the node may still reach them', () => {
    const c = compilePolicies(tables([policy('x', 'deny', { podSelector: {}, policyTypes: ['Ingress'] })]));
    for (const key of ['x/a', 'x/b', 'x/c']) {
      const e = get(c, key);
      assert.equal(e.ingress.enforced, true);
      assert.deepEqual(e.ingress.selectedBy, ['x/deny']);
      assert.deepEqual(e.ingress.entries, [{ identity: IDENTITY_HOST, proto: 'any', ports: 'any', because: [{ policy: '', direction: 'ingress', rule: -1, peer: 'all', port: 'all', implicit: 'host' }] }]);
      assert.equal(e.egress.enforced, false);
    }
    assert.equal(get(c, 'y/a').ingress.enforced, false);
  });

  test('allowHostIngress: false leaves the host out', () => {
    const c = compilePolicies(tables([policy('x', 'deny', { podSelector: {} })]), { allowHostIngress: false });
    assert.deepEqual(get(c, 'x/a').ingress.entries, []);
  });

  test('policyTypes [Egress] only: egress enforced, ingress open', () => {
    const c = compilePolicies(tables([policy('x', 'deny-egress', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'] })]));
    assert.deepEqual([get(c, 'x/a').ingress.enforced, get(c, 'x/a').egress.enforced, get(c, 'x/b').egress.enforced], [false, true, false]);
    assert.deepEqual(get(c, 'x/a').egress.entries, [], 'no implicit allow on egress');
  });

  test('podSelector with matchExpressions selects the target', () => {
    const c = compilePolicies(tables([policy('x', 'p', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['a'] }] } })]));
    assert.deepEqual(['x/a', 'x/b', 'x/c'].map((key) => get(c, key).ingress.enforced), [false, true, true]);
  });

  test('a rule without peers and ports allows everything', () => {
    const c = compilePolicies(tables([policy('x', 'all', { podSelector: {}, ingress: [{}] })]));
    assert.deepEqual(keys(get(c, 'x/a').ingress.entries), [['any', 'any', 'any']]);
    assert.deepEqual(get(c, 'x/a').ingress.entries[0]!.because, [prov('x/all', 'ingress', 0, 'all', 'all')]);
  });
});

describe('compilePolicies: peers', () => {
  const k = xyz();
  const compile = (...policies: ReturnType<typeof policy>[]) => compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies });
  const ids = (...pods: string[]) => pods.map(k.id);
  const peerIds = (c: CompiledPolicy, key: string, dir: 'ingress' | 'egress' = 'ingress') =>
    keys(get(c, key)[dir].entries).map(([id]) => id);

  test('podSelector alone: pods of the policy\'s namespace', () => {
    const c = compile(policy('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }));
    assert.deepEqual(peerIds(c, 'x/a'), ids('x/b'));
    assert.deepEqual(get(c, 'x/a').ingress.entries.find((e) => e.identity === k.id('x/b'))!.because, [prov('x/p', 'ingress', 0, 0, 'all')]);
  });

  test('empty podSelector: every pod of the namespace; empty namespaceSelector: every pod of every namespace', () => {
    const same = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }));
    assert.deepEqual(peerIds(same, 'x/a'), ids('x/a', 'x/b', 'x/c'));
    const every = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] }));
    assert.deepEqual(peerIds(every, 'x/a'), k.pods.map(k.id));
  });

  test('namespaceSelector alone: all pods of the selected namespaces (metadata.name label included)', () => {
    const byLabel = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] }));
    assert.deepEqual(peerIds(byLabel, 'x/a'), ids('y/a', 'y/b', 'y/c'));
    const byName = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] } }] }] }));
    assert.deepEqual(peerIds(byName, 'x/a'), ids('y/a', 'y/b', 'y/c', 'z/a', 'z/b', 'z/c'));
  });

  test('podSelector AND namespaceSelector in one peer; OR in separate peers', () => {
    const ns = { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] };
    const pod = { matchLabels: { pod: 'b' } };
    const and = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns, podSelector: pod }] }] }));
    assert.deepEqual(peerIds(and, 'x/a'), ids('y/b', 'z/b'));
    const or = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns }, { podSelector: pod }] }] }));
    assert.deepEqual(peerIds(or, 'x/a'), ids('x/b', 'y/a', 'y/b', 'y/c', 'z/a', 'z/b', 'z/c'));
    const xb = get(or, 'x/a').ingress.entries.find((e) => e.identity === k.id('x/b'))!;
    assert.deepEqual(xb.because, [prov('x/p', 'ingress', 0, 1, 'all')]);
  });

  test('a peer selecting one identity twice keeps both provenances; the same one once', () => {
    const c = compile(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }, { podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] }] }));
    assert.deepEqual(get(c, 'x/a').ingress.entries.find((e) => e.identity === k.id('x/b'))!.because,
      [prov('x/p', 'ingress', 0, 0, 'all'), prov('x/p', 'ingress', 0, 1, 'all')]);
  });

  test('selectors follow label changes (a new identity for x/b)', () => {
    const p = policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { role: 'client' } } }] }] });
    assert.deepEqual(peerIds(compile(p), 'x/a'), []);
    const identities = k.identities.map((i) => (i.id === k.id('x/b') ? { ...i, id: 5000, podLabels: { pod: 'b', role: 'client' } } : i));
    const c = compilePolicies({ identities, endpoints: k.endpoints, policies: [p] });
    assert.deepEqual(peerIds(c, 'x/a'), [5000]);
  });
});

describe('compilePolicies: ports and protocols', () => {
  const k = xyz();
  const compile = (...policies: ReturnType<typeof policy>[]) => compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies });

  test('TCP, UDP and SCTP are separate entries; protocol alone is every port of it', () => {
    const c = compile(policy('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 80 }, { port: 80, protocol: 'SCTP' }, { protocol: 'UDP' }] }] }));
    assert.deepEqual(keys(get(c, 'x/a').ingress.entries), [['any', 'TCP', '80-80'], ['any', 'UDP', 'any'], ['any', 'SCTP', '80-80']]);
  });

  test('endPort: one range entry', () => {
    const c = compile(policy('x', 'p', { podSelector: {}, egress: [{ ports: [{ port: 8000, endPort: 8080, protocol: 'UDP' }] }] }));
    assert.deepEqual(keys(get(c, 'x/a').egress.entries), [['any', 'UDP', '8000-8080']]);
  });

  test('ingress named ports resolve on each destination pod (numbers may differ; a pod without the name gets nothing)', () => {
    const c0 = cluster([
      { namespace: 'x', name: 'a', labels: { app: 'web' }, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] },
      { namespace: 'x', name: 'b', labels: { app: 'web' }, ports: [{ name: 'http', port: 9090, protocol: 'TCP' }] },
      { namespace: 'x', name: 'c', labels: { app: 'web' } },
    ]);
    const p = policy('x', 'p', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ ports: [{ port: 'http' }, { port: 'dns' }, { port: 'dns', protocol: 'UDP' }] }] });
    const c = compilePolicies({ identities: c0.identities, endpoints: c0.endpoints, policies: [p] });
    assert.deepEqual(keys(get(c, 'x/a').ingress.entries), [['any', 'TCP', '8080-8080'], ['any', 'UDP', '53-53']], 'dns/TCP does not match the UDP port named dns');
    assert.deepEqual(keys(get(c, 'x/b').ingress.entries), [['any', 'TCP', '9090-9090']]);
    assert.deepEqual([get(c, 'x/c').ingress.enforced, keys(get(c, 'x/c').ingress.entries)], [true, []]);
    assert.deepEqual(get(c, 'x/a').ingress.entries.find((e) => e.proto === 'UDP')!.because, [prov('x/p', 'ingress', 0, 'all', 2)]);
  });

  test('egress named ports resolve on the pods of each peer identity (cluster-wide table)', () => {
    const c0 = cluster([
      { namespace: 'x', name: 'client', labels: { app: 'client' } },
      { namespace: 'y', name: 'web', labels: { app: 'web' } },
      { namespace: 'y', name: 'db', labels: { app: 'db' } },
    ]);
    const p = policy('x', 'p', { podSelector: {}, egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'http' }] }, { ports: [{ port: 'sql' }] }] });
    const namedPorts = [
      { pod: 'y/web', identity: c0.id('y/web'), ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const }] },
      { pod: 'y/db', identity: c0.id('y/db'), ports: [{ name: 'sql', port: 5432, protocol: 'TCP' as const }] },
    ];
    const c = compilePolicies({ identities: c0.identities, endpoints: [c0.endpoints[0]!], policies: [p], namedPorts });
    assert.deepEqual(keys(get(c, 'x/client').egress.entries), [[c0.id('y/web'), 'TCP', '8080-8080'], [c0.id('y/db'), 'TCP', '5432-5432']]);
    assert.deepEqual(get(c, 'x/client').egress.entries[1]!.because, [prov('x/p', 'egress', 1, 'all', 0)], 'no peers: every identity that has the name');
    assert.deepEqual(c.problems, []);
  });

  test('egress named port: pods of one identity that disagree are reported and only shared numbers allowed', () => {
    const c0 = cluster([{ namespace: 'x', name: 'client', labels: { app: 'client' } }]);
    const identities = [...c0.identities, { id: 7000, namespace: 'y', podLabels: { app: 'web' }, namespaceLabels: {} }];
    const p = policy('x', 'p', { podSelector: {}, egress: [{ ports: [{ port: 'http' }] }] });
    const namedPorts = [
      { pod: 'y/web-1', identity: 7000, ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const }] },
      { pod: 'y/web-2', identity: 7000, ports: [{ name: 'http', port: 9090, protocol: 'TCP' as const }, { name: 'http', port: 8080, protocol: 'TCP' as const }] },
      { pod: 'y/web-3', identity: 7000, ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const }] },
    ];
    const c = compilePolicies({ identities, endpoints: c0.endpoints, policies: [p], namedPorts });
    assert.deepEqual(keys(get(c, 'x/client').egress.entries), [[7000, 'TCP', '8080-8080']]);
    assert.equal(c.problems.length, 1);
    assert.equal(c.problems[0]!.message,
      'NetworkPolicy x/p: spec.egress[0].ports[0].port: "http" resolves to different TCP ports on the pods of identity 7000 ' +
        '(y/web-1: 8080; y/web-2: 8080, 9090; y/web-3: 8080): only ports they all have are allowed (8080)');
    const lacking = compilePolicies({ identities, endpoints: c0.endpoints, policies: [p], namedPorts: [...namedPorts, { pod: 'y/web-4', identity: 7000, ports: [] }] });
    assert.deepEqual(keys(get(lacking, 'x/client').egress.entries), [], 'a pod without the name: nothing is exact, nothing is allowed');
  });
});

describe('compilePolicies: ipBlock and CIDR identities', () => {
  const k = xyz();
  const compile = (...policies: ReturnType<typeof policy>[]) => compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies });
  const egressTo = (name: string, ...blocks: { cidr: string; except?: string[] }[]) =>
    policy('x', name, { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: blocks.map((b) => ({ ipBlock: b })) }] });
  /** Which of the given addresses x/a may reach, by the compiled entries (CIDR identity of each address). */
  const reach = (c: CompiledPolicy, ips: string[]) => {
    const allowed = new Set(get(c, 'x/a').egress.entries.map((e) => e.identity));
    return ips.filter((ip) => {
      const ci = cidrIdentityOf(c.cidrs, ip);
      return allowed.has('any') || (ci !== undefined && allowed.has(ci.identity));
    });
  };

  test('cidr and excepts become CIDR identities, sorted, from 1<<24; the block allows the cidr but not the excepts', () => {
    const c = compile(egressTo('p', { cidr: '10.0.0.0/8', except: ['10.0.2.0/24', '10.0.1.0/24'] }));
    assert.deepEqual(c.cidrs, [
      { cidr: '10.0.0.0/8', identity: CIDR_IDENTITY_BASE },
      { cidr: '10.0.1.0/24', identity: CIDR_IDENTITY_BASE + 1 },
      { cidr: '10.0.2.0/24', identity: CIDR_IDENTITY_BASE + 2 },
    ]);
    assert.deepEqual(keys(get(c, 'x/a').egress.entries), [[CIDR_IDENTITY_BASE, 'any', 'any']]);
    assert.deepEqual(reach(c, ['10.0.0.7', '10.0.1.1', '10.0.2.200', '10.9.9.9', '11.0.0.1']), ['10.0.0.7', '10.9.9.9']);
  });

  test('two policies: one block excepts what the other allows (upstream: an IP in one block\'s except and another\'s cidr is allowed)', () => {
    const c = compile(egressTo('p1', { cidr: '0.0.0.0/4', except: ['10.0.1.2/32'] }), egressTo('p2', { cidr: '10.0.1.2/32' }));
    assert.deepEqual(reach(c, ['10.0.1.1', '10.0.1.2', '10.0.2.3', '200.0.0.1']), ['10.0.1.1', '10.0.1.2', '10.0.2.3']);
    const xb = get(c, 'x/a').egress.entries.find((e) => e.identity === cidrIdentityOf(c.cidrs, '10.0.1.2')!.identity)!;
    assert.deepEqual(xb.because, [prov('x/p2', 'egress', 0, 0, 'all')]);
  });

  test('nested blocks combine: a wide block covers the narrower prefixes other policies introduce', () => {
    // p1: 10/8 on any port; p2: 10.1/16 on port 80 only; p3: 10.1.2/24 except 10.1.2.128/25.
    const p1 = egressTo('p1', { cidr: '10.0.0.0/8' });
    const p2 = policy('x', 'p2', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.1.0.0/16' } }], ports: [{ port: 80 }] }] });
    const p3 = egressTo('p3', { cidr: '10.1.2.0/24', except: ['10.1.2.128/25'] });
    const c = compile(p1, p2, p3);
    const entriesFor = (ip: string) => get(c, 'x/a').egress.entries.filter((e) => e.identity === cidrIdentityOf(c.cidrs, ip)!.identity)
      .map((e) => [e.proto, e.because.map((b) => b.policy)]);
    assert.deepEqual(entriesFor('10.1.2.200'), [['any', ['x/p1']], ['TCP', ['x/p2']]], 'in p3\'s except: p1 and p2 still allow it');
    assert.deepEqual(entriesFor('10.1.2.5'), [['any', ['x/p1', 'x/p3']], ['TCP', ['x/p2']]]);
    assert.deepEqual(entriesFor('10.1.9.9'), [['any', ['x/p1']], ['TCP', ['x/p2']]]);
    assert.deepEqual(entriesFor('10.200.0.1'), [['any', ['x/p1']]]);
    // Without p1, an address in p3's except keeps only p2's port 80.
    const c2 = compile(p2, p3);
    const e2 = get(c2, 'x/a').egress.entries.filter((e) => e.identity === cidrIdentityOf(c2.cidrs, '10.1.2.200')!.identity);
    assert.deepEqual(keys(e2), [[cidrIdentityOf(c2.cidrs, '10.1.2.200')!.identity, 'TCP', '80-80']]);
  });

  test('an except inside another block\'s except, and an except that is another block\'s cidr', () => {
    // 10/8 except 10.1/16; 10.1/16 is also allowed by p2 except 10.1.1/24.
    const c = compile(egressTo('p1', { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }), egressTo('p2', { cidr: '10.1.0.0/16', except: ['10.1.1.0/24'] }));
    assert.deepEqual(reach(c, ['10.0.0.1', '10.1.0.1', '10.1.1.1', '10.1.2.1', '10.2.0.1']), ['10.0.0.1', '10.1.0.1', '10.1.2.1', '10.2.0.1']);
  });

  test('CIDR identities keep their numbers across compiles (previousCidrs); new prefixes take the lowest free', () => {
    const c1 = compile(egressTo('p', { cidr: '10.0.0.0/8' }), egressTo('q', { cidr: '192.168.0.0/16' }));
    assert.deepEqual(c1.cidrs.map((x) => x.identity), [CIDR_IDENTITY_BASE, CIDR_IDENTITY_BASE + 1]);
    const again = compile(egressTo('q', { cidr: '192.168.0.0/16' }), egressTo('p', { cidr: '10.0.0.0/8' }));
    assert.deepEqual(again.cidrs, c1.cidrs, 'input order does not matter');
    const c2 = compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies: [egressTo('q', { cidr: '192.168.0.0/16' }), egressTo('r', { cidr: '1.0.0.0/8' })] }, { previousCidrs: c1.cidrs });
    assert.deepEqual(c2.cidrs, [{ cidr: '1.0.0.0/8', identity: CIDR_IDENTITY_BASE }, { cidr: '192.168.0.0/16', identity: CIDR_IDENTITY_BASE + 1 }]);
  });

  test('ipBlocks match pod addresses too (the CIDR identity of a pod address)', () => {
    const c = compile(egressTo('p', { cidr: `${k.ipOf('y/b')}/32` }));
    assert.equal(cidrIdentityOf(c.cidrs, k.ipOf('y/b'))?.identity, CIDR_IDENTITY_BASE);
    assert.equal(cidrIdentityOf(c.cidrs, k.ipOf('y/a')), undefined);
  });

  test('IPv6 blocks and named ports towards a block are reported and allow nothing', () => {
    const c = compile(policy('x', 'v6', {
      podSelector: {}, policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: '::/0' } }, { ipBlock: { cidr: '10.0.0.0/8' } }], ports: [{ port: 'serve-80-tcp' }, { port: 53, protocol: 'UDP' }] }],
    }));
    assert.deepEqual(keys(get(c, 'x/a').egress.entries), [[CIDR_IDENTITY_BASE, 'UDP', '53-53']]);
    assert.deepEqual(c.problems.map((p) => p.message), [
      'NetworkPolicy x/v6: spec.egress[0].to[0].ipBlock.cidr: "::/0" is an IPv6 block and the datapath enforces IPv4 only: this peer allows nothing',
      'NetworkPolicy x/v6: spec.egress[0].ports[0].port: "serve-80-tcp" is a named port towards an ipBlock (spec.egress[0].to[1]): a named port resolves on the destination pod, which an address block does not name, so Hypha cannot enforce it; this pair allows nothing',
    ]);
  });

  test('ingress from an ipBlock with a named port resolves on the destination (exact)', () => {
    const c = compile(policy('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16' } }], ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }] }));
    assert.deepEqual(keys(get(c, 'x/a').ingress.entries), [[CIDR_IDENTITY_BASE, 'UDP', '81-81']]);
    assert.deepEqual(c.problems, []);
  });
});

describe('compilePolicies: several policies, failing closed', () => {
  const k = xyz();
  const compile = (policies: ReturnType<typeof policy>[], endpoints = k.endpoints, identities = k.identities) =>
    compilePolicies({ identities, endpoints, policies });

  test('the union of every policy selecting a pod; identical keys merge and keep every provenance', () => {
    const c = compile([
      policy('x', 'allow-80', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }),
      policy('x', 'allow-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
      policy('x', 'also-80', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'c' } } }] }, { ports: [{ port: 79, endPort: 80 }, { port: 80 }] }] }),
    ]);
    const a = get(c, 'x/a').ingress;
    assert.deepEqual(a.selectedBy, ['x/allow-80', 'x/allow-b', 'x/also-80']);
    assert.deepEqual(keys(a.entries), [['any', 'TCP', '79-80'], ['any', 'TCP', '80-80'], [k.id('x/b'), 'any', 'any'], [k.id('x/c'), 'any', 'any']]);
    assert.deepEqual(a.entries.find((e) => e.ports !== 'any' && e.ports.from === 80)!.because,
      [prov('x/allow-80', 'ingress', 0, 'all', 0), prov('x/also-80', 'ingress', 1, 'all', 1)]);
    assert.deepEqual(keys(get(c, 'x/b').ingress.entries), [['any', 'TCP', '80-80']]);
  });

  test('an endpoint whose identity is unknown: denied by every policy of its namespace; allows only from policies selecting all its pods', () => {
    const endpoints = [...k.endpoints, { name: 'new', namespace: 'x', identity: 99999, ports: [] }];
    const c = compile([
      policy('x', 'web-open', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{}] }),
      policy('x', 'ns-80', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }),
      policy('y', 'other-ns', { podSelector: {}, policyTypes: ['Egress'] }),
    ], endpoints);
    const e = get(c, 'x/new');
    assert.deepEqual([e.ingress.enforced, e.ingress.selectedBy, keys(e.ingress.entries)], [true, ['x/ns-80', 'x/web-open'], [['any', 'TCP', '80-80']]]);
    assert.equal(e.egress.enforced, false);
    assert.match(c.problems.map((p) => p.message).join('\n'), /Endpoint x\/new: identity: 99999 is not a known identity/);
  });

  test('an unreadable podSelector selects every pod of the namespace and allows nothing', () => {
    const { value } = normalizeNetworkPolicy({ metadata: { namespace: 'x', name: 'bad' }, spec: { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Equals', values: ['a'] }] }, ingress: [{}] } });
    const c = compile([value!]);
    for (const key of ['x/a', 'x/b', 'x/c']) assert.deepEqual([get(c, key).ingress.enforced, keys(get(c, key).ingress.entries)], [true, []]);
    assert.equal(get(c, 'y/a').ingress.enforced, false);
  });

  test('more entries than a direction holds: none programmed, the direction denies, reported', () => {
    const c = compilePolicies({
      identities: k.identities, endpoints: k.endpoints,
      policies: [policy('x', 'wide', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 80 }, { port: 81 }] }] })],
    }, { maxEntriesPerDirection: 10 });
    const a = get(c, 'x/a').ingress;
    assert.deepEqual([a.enforced, a.overflow, keys(a.entries)], [true, 18, []]);
    assert.equal(a.entries.length, 1, 'the implicit host allow stays');
    assert.equal(c.problems[0]!.message, 'Endpoint x/a: ingress entries: 18 exceed the 10 entries one direction can hold: none are programmed and ingress traffic is denied (policies: x/wide)');
  });

  test('identities outside the cluster range, or one id with two label sets, match no selector (reported)', () => {
    const identities = [
      ...k.identities.filter((i) => i.id !== k.id('x/b')),
      { id: k.id('x/b'), namespace: 'x', podLabels: { pod: 'b' }, namespaceLabels: { ns: 'x' } },
      { id: k.id('x/b'), namespace: 'x', podLabels: { pod: 'b', role: 'admin' }, namespaceLabels: { ns: 'x' } },
      { id: 1, namespace: 'x', podLabels: { pod: 'b' }, namespaceLabels: {} },
      { id: CIDR_IDENTITY_BASE + 5, namespace: 'x', podLabels: { pod: 'b' }, namespaceLabels: {} },
    ];
    const c = compile([policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })], k.endpoints, identities);
    assert.deepEqual(keys(get(c, 'x/a').ingress.entries), []);
    assert.deepEqual(c.problems.map((p) => p.message).filter((m) => m.startsWith('Identity')), [
      `Identity ${k.id('x/b')}: id: ${k.id('x/b')} names two different label sets: no selector matches it, and its endpoints are treated as unknown`,
      'Identity 1: id: 1 is outside the cluster identity range 256-16777215 (reserved below, CIDR identities above): no selector matches it',
      `Identity ${CIDR_IDENTITY_BASE + 5}: id: ${CIDR_IDENTITY_BASE + 5} is outside the cluster identity range 256-16777215 (reserved below, CIDR identities above): no selector matches it`,
    ]);
    assert.deepEqual([get(c, 'x/b').ingress.enforced, keys(get(c, 'x/b').ingress.entries)], [true, []], 'x/b itself: unknown labels, denied');
  });

  test('an endpoint listed twice is compiled once (reported)', () => {
    const c = compile([], [...k.endpoints, k.endpoints[0]!]);
    assert.equal(c.endpoints.length, 9);
    assert.deepEqual(c.problems.map((p) => p.message), ['Endpoint x/a: name: "a" is listed twice: only the first is compiled']);
  });

  test('output is sorted and independent of input order', () => {
    const ps = [
      policy('x', 'b', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 81 }, { port: 80, protocol: 'UDP' }] }] }),
      policy('x', 'a', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.1.0/24'] } }] }] }),
    ];
    const c1 = compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies: ps });
    const c2 = compilePolicies({ identities: [...k.identities].reverse(), endpoints: [...k.endpoints].reverse(), policies: [...ps].reverse() });
    assert.deepEqual(c2, c1);
    assert.deepEqual(c1.endpoints.map((e) => e.key), k.pods);
  });
});
