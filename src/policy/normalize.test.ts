import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeNetworkPolicy } from './normalize.ts';

const np = (spec: unknown, name = 'p', namespace = 'x'): unknown => ({
  apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace }, spec,
});

const ok = (spec: unknown) => {
  const r = normalizeNetworkPolicy(np(spec));
  assert.deepEqual(r.problems.map((p) => p.message), []);
  return r.value!;
};

const all = { matchLabels: {}, matchExpressions: [] };

describe('normalizeNetworkPolicy: defaults as the API server applies them', () => {
  test('empty spec: every pod of the namespace, ingress denied', () => {
    const v = ok({});
    assert.deepEqual(v, { namespace: 'x', name: 'p', podSelector: all, policyTypes: ['ingress'], ingress: [], egress: [] });
    assert.equal(normalizeNetworkPolicy({ metadata: { name: 'p' } }).value?.namespace, 'default');
  });

  test('policyTypes default: Ingress, plus Egress when egress rules are present', () => {
    assert.deepEqual(ok({ podSelector: {}, egress: [{}] }).policyTypes, ['ingress', 'egress']);
    assert.deepEqual(ok({ podSelector: {}, egress: [] }).policyTypes, ['ingress'], 'an empty egress list adds nothing');
    assert.deepEqual(ok({ podSelector: {}, policyTypes: [] }).policyTypes, ['ingress']);
    assert.deepEqual(ok({ podSelector: {}, policyTypes: ['Egress'] }).policyTypes, ['egress']);
    assert.deepEqual(ok({ podSelector: {}, policyTypes: ['Egress', 'Ingress'] }).policyTypes, ['ingress', 'egress']);
  });

  test('rules of a direction not in policyTypes are ignored', () => {
    const v = ok({ podSelector: {}, policyTypes: ['Ingress'], ingress: [{}], egress: [{ ports: [{ port: 53 }] }] });
    assert.deepEqual(v.egress, []);
    assert.equal(v.ingress.length, 1);
  });

  test('absent or empty from/to: all peers; absent or empty ports: all ports', () => {
    const v = ok({ podSelector: {}, ingress: [{}, { from: [], ports: [] }, { from: null, ports: null }] });
    assert.deepEqual(v.ingress, [
      { index: 0, peers: 'all', ports: 'all' },
      { index: 1, peers: 'all', ports: 'all' },
      { index: 2, peers: 'all', ports: 'all' },
    ]);
  });

  test('ports: TCP default, protocol alone, ranges, named', () => {
    const v = ok({
      podSelector: {},
      ingress: [{ ports: [{ port: 80 }, { protocol: 'UDP' }, { protocol: 'SCTP', port: 9000, endPort: 9100 }, { port: 'http' }, { port: 81, endPort: 81 }] }],
    });
    assert.deepEqual(v.ingress[0]!.ports, [
      { index: 0, protocol: 'TCP', kind: 'range', from: 80, to: 80 },
      { index: 1, protocol: 'UDP', kind: 'all' },
      { index: 2, protocol: 'SCTP', kind: 'range', from: 9000, to: 9100 },
      { index: 3, protocol: 'TCP', kind: 'named', name: 'http' },
      { index: 4, protocol: 'TCP', kind: 'range', from: 81, to: 81 },
    ]);
  });

  test('peers: podSelector alone, namespaceSelector alone, both (one peer), ipBlock', () => {
    const v = ok({
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [{
        from: [
          { podSelector: { matchLabels: { pod: 'b' } } },
          { namespaceSelector: {} },
          { podSelector: { matchLabels: { pod: 'b' } }, namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y'] }] } },
          { ipBlock: { cidr: '10.1.2.3/16', except: ['10.1.2.0/24', '10.1.2.0/24'] } },
        ],
      }],
    });
    assert.deepEqual(v.podSelector, { matchLabels: { pod: 'a' }, matchExpressions: [] });
    assert.deepEqual(v.ingress[0]!.peers, [
      { index: 0, kind: 'pods', podSelector: { matchLabels: { pod: 'b' }, matchExpressions: [] } },
      { index: 1, kind: 'pods', namespaceSelector: all },
      { index: 2, kind: 'pods', podSelector: { matchLabels: { pod: 'b' }, matchExpressions: [] }, namespaceSelector: { matchLabels: {}, matchExpressions: [{ key: 'ns', operator: 'In', values: ['y'] }] } },
      { index: 3, kind: 'ipBlock', cidr: '10.1.0.0/16', except: ['10.1.2.0/24'], family: 4 },
    ]);
  });
});

describe('normalizeNetworkPolicy: bad input is reported (field and value) and fails closed', () => {
  const cases: [string, unknown, string][] = [
    ['endPort < port', { ingress: [{ ports: [{ port: 90, endPort: 80 }] }] }, 'NetworkPolicy x/p: spec.ingress[0].ports[0].endPort: 80 must be greater than or equal to port (90)'],
    ['endPort with a named port', { ingress: [{ ports: [{ port: 'http', endPort: 90 }] }] }, 'spec.ingress[0].ports[0].endPort: 90 may not be specified when port is a named port ("http")'],
    ['endPort without port', { ingress: [{ ports: [{ endPort: 90 }] }] }, 'spec.ingress[0].ports[0].endPort: 90 may not be specified when port is not specified'],
    ['endPort out of range', { ingress: [{ ports: [{ port: 80, endPort: 70000 }] }] }, 'spec.ingress[0].ports[0].endPort: 70000 is not a valid port number (1-65535)'],
    ['port 0', { egress: [{ ports: [{ port: 0 }] }] }, 'spec.egress[0].ports[0].port: 0 is not a valid port number (1-65535) or port name'],
    ['numeric string port', { ingress: [{ ports: [{ port: '80' }] }] }, 'spec.ingress[0].ports[0].port: "80" is not a valid port name (must contain a letter'],
    ['bad port name', { ingress: [{ ports: [{ port: 'Http' }] }] }, 'spec.ingress[0].ports[0].port: "Http" is not a valid port name'],
    ['bad protocol', { ingress: [{ ports: [{ port: 80, protocol: 'ICMP' }] }] }, 'spec.ingress[0].ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP'],
    ['lowercase protocol', { ingress: [{ ports: [{ port: 80, protocol: 'tcp' }] }] }, 'spec.ingress[0].ports[0].protocol: "tcp" is not one of TCP, UDP, SCTP'],
    ['invalid CIDR', { ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] }, 'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a valid CIDR'],
    ['CIDR without length', { ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.1' } }] }] }, 'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.1" is not a valid CIDR'],
    ['except outside cidr', { egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }] }, 'spec.egress[0].to[0].ipBlock.except[0]: "11.0.0.0/16" must be a strict subset of cidr "10.0.0.0/8"'],
    ['except equal to cidr', { egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/8'] } }] }] }, 'spec.egress[0].to[0].ipBlock.except[0]: "10.0.0.0/8" must be a strict subset'],
    ['invalid except', { egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/40'] } }] }] }, 'spec.egress[0].to[0].ipBlock.except[0]: "10.0.0.0/40" is not a valid CIDR'],
    ['ipBlock with a selector', { ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }, 'spec.ingress[0].from[0]: {"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}} may not specify ipBlock together with podSelector or namespaceSelector'],
    ['empty peer', { ingress: [{ from: [{}] }] }, 'spec.ingress[0].from[0]: {} must specify a peer'],
    ['unknown operator in a peer', { ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] } }] }] }, 'spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: "Equals" is not a valid selector operator'],
    ['unknown policyType', { policyTypes: ['Ingress', 'Sideways'] }, 'spec.policyTypes[1]: "Sideways" is not one of Ingress, Egress; both directions are enforced'],
    ['from not a list', { ingress: [{ from: { podSelector: {} } }] }, 'spec.ingress[0].from: {"podSelector":{}} is not a list of peers; the rule allows nothing'],
    ['rule not an object', { ingress: ['all'] }, 'spec.ingress[0]: "all" is not a rule object; it allows nothing'],
    ['bad kind', null, 'kind: "Policy" is not NetworkPolicy'],
  ];
  for (const [name, spec, message] of cases) {
    test(name, () => {
      const raw = spec === null ? { kind: 'Policy', metadata: { name: 'p', namespace: 'x' }, spec: {} } : np({ podSelector: {}, ...(spec as object) });
      const { value, problems } = normalizeNetworkPolicy(raw);
      assert.ok(value, 'the policy is still used (failing closed)');
      assert.ok(problems.some((p) => p.message.includes(message)), `got: ${problems.map((p) => p.message).join(' | ')}`);
    });
  }

  test('a bad port or peer is left out; a rule left with none allows nothing (not everything)', () => {
    const { value } = normalizeNetworkPolicy(np({ podSelector: {}, ingress: [{ ports: [{ port: 80, endPort: 10 }] }, { from: [{}], ports: [{ port: 80 }, { port: 0 }] }] }));
    assert.deepEqual(value!.ingress, [
      { index: 0, peers: 'all', ports: [] },
      { index: 1, peers: [], ports: [{ index: 0, protocol: 'TCP', kind: 'range', from: 80, to: 80 }] },
    ]);
  });

  test('an ipBlock with an unreadable except is left out whole (never allows what it excepts)', () => {
    const { value } = normalizeNetworkPolicy(np({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16', 'nope'] } }] }] }));
    assert.deepEqual(value!.egress[0]!.peers, []);
  });

  test('an unreadable podSelector selects every pod of the namespace, allowing nothing', () => {
    const { value, problems } = normalizeNetworkPolicy(np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'Like' }] }, ingress: [{}] }));
    assert.equal(value!.podSelector, 'unreadable');
    assert.ok(problems.some((p) => p.message.includes('spec.podSelector.matchExpressions[0].operator: "Like" is not a valid selector operator')));
    assert.ok(problems.some((p) => p.message.includes('is applied to every pod of the namespace, allowing nothing')));
  });

  test('an unknown policyType enforces both directions', () => {
    const { value } = normalizeNetworkPolicy(np({ podSelector: {}, policyTypes: ['Egres'] }));
    assert.deepEqual(value!.policyTypes, ['ingress', 'egress']);
  });

  test('no name: nothing to use', () => {
    const { value, problems } = normalizeNetworkPolicy({ metadata: { namespace: 'x' }, spec: {} });
    assert.equal(value, undefined);
    assert.match(problems[0]!.message, /^NetworkPolicy x\/\(unnamed\): metadata.name: \(missing\) is required/);
  });

  test('IPv6 blocks are valid objects (the compiler reports that they are not enforced)', () => {
    const v = ok({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: 'fd00::/8', except: ['fd00:1::/32'] } }] }] });
    assert.deepEqual(v.egress[0]!.peers, [{ index: 0, kind: 'ipBlock', cidr: 'fd00::/8', except: ['fd00:1::/32'], family: 6 }]);
  });
});
