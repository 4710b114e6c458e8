// HyphaNetworkPolicy http rules, the policy side: normalising, compiling
// (merges), the policy map's proxy_port and l7ChecksFor.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { POLICY_MAP, decodePolicyKey, encodePolicyMaps, policyValCodec } from '../datapath/policy-maps.ts';
import { fromBytes } from '../datapath/reconciler.ts';
import { DEFAULT_L7_PROXY_PORT } from '../l7/constants.ts';
import { compilePolicies } from './compile.ts';
import { policy, xyz } from './fixtures.ts';
import { l7ChecksFor } from './l7.ts';
import type { NetworkPolicy } from './model.ts';
import { normalizeHyphaNetworkPolicy } from './normalize.ts';

const hnpRaw = (namespace: string, name: string, spec: Record<string, unknown>) =>
  ({ apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy', metadata: { namespace, name }, spec });

function hnp(namespace: string, name: string, spec: Record<string, unknown>): NetworkPolicy {
  const { value, problems } = normalizeHyphaNetworkPolicy(hnpRaw(namespace, name, spec));
  assert.deepEqual(problems.map((p) => `${p.field}: ${p.message}`), []);
  return value!;
}

const ingressTo = (pod: string, ports: unknown[]) => ({
  podSelector: { matchLabels: { pod } }, policyTypes: ['Ingress'], ingress: [{ ports }],
});

describe('normalizeHyphaNetworkPolicy', () => {
  test('a good rule: HttpRule with policy hnp:ns/name and its place', () => {
    const p = hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET', path: { prefix: '/api/' }, host: 'web.example', headers: [{ name: 'x-env', value: 'prod' }] }] }]));
    const port = (p.ingress[0]!.ports as { http?: unknown }[])[0]!;
    assert.deepEqual(port.http, [{
      method: 'GET', path: { kind: 'prefix', value: '/api/' }, host: 'web.example', headers: [{ name: 'x-env', value: 'prod' }],
      policy: 'hnp:x/web', rule: 'ingress[0].ports[0].http[0]',
    }]);
  });

  test('a port without http stays a plain port (no http field)', () => {
    const p = hnp('x', 'web', ingressTo('a', [{ port: 80 }]));
    assert.equal('http' in (p.ingress[0]!.ports as object[])[0]!, false);
  });

  const bad: [string, unknown, string, unknown][] = [
    ['method not upper case', { method: 'get' }, 'spec.ingress[0].ports[0].http[0].method', 'get'],
    ['path with none of exact/prefix/regex', { path: {} }, 'spec.ingress[0].ports[0].http[0].path', {}],
    ['path with two kinds', { path: { exact: '/a', prefix: '/b' } }, 'spec.ingress[0].ports[0].http[0].path', { exact: '/a', prefix: '/b' }],
    ['exact not starting with /', { path: { exact: 'a' } }, 'spec.ingress[0].ports[0].http[0].path', { exact: 'a' }],
    ['empty prefix', { path: { prefix: '' } }, 'spec.ingress[0].ports[0].http[0].path', { prefix: '' }],
    ['invalid regex', { path: { regex: '/(' } }, 'spec.ingress[0].ports[0].http[0].path', { regex: '/(' }],
    ['backreference', { path: { regex: '/(a)\\1' } }, 'spec.ingress[0].ports[0].http[0].path', { regex: '/(a)\\1' }],
    ['lookahead', { path: { regex: '/(?=a)' } }, 'spec.ingress[0].ports[0].http[0].path', { regex: '/(?=a)' }],
    ['header without name', { headers: [{ value: 'v' }] }, 'spec.ingress[0].ports[0].http[0].headers[0].name', undefined],
  ];
  for (const [what, rule, field, value] of bad) {
    test(`${what}: problem names ${field} and its value; the rule is dropped, the port keeps http []`, () => {
      const { value: p, problems } = normalizeHyphaNetworkPolicy(hnpRaw('x', 'web', ingressTo('a', [{ port: 80, http: [rule] }])));
      assert.ok(problems.length >= 1, 'no problem');
      const pr = problems.find((q) => q.field === field);
      assert.ok(pr, `no problem at ${field}: ${JSON.stringify(problems)}`);
      assert.deepEqual(pr.value, value);
      assert.equal(pr.object, 'HyphaNetworkPolicy x/web');
      assert.ok(pr.message.includes(JSON.stringify(value) ?? 'undefined') || value === undefined, pr.message);
      assert.deepEqual((p!.ingress[0]!.ports as { http?: unknown }[])[0]!.http, []);
    });
  }

  test('a bad rule next to a good one: only the good one is kept', () => {
    const { value: p, problems } = normalizeHyphaNetworkPolicy(hnpRaw('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'get' }, { method: 'POST' }] }])));
    assert.equal(problems.length, 1);
    assert.deepEqual((p!.ingress[0]!.ports as { http?: { method?: string; rule: string }[] }[])[0]!.http!.map((r) => [r.method, r.rule]), [['POST', 'ingress[0].ports[0].http[1]']]);
  });

  for (const protocol of ['UDP', 'SCTP']) {
    test(`http on a ${protocol} port: a problem, and the port allows no request`, () => {
      const { value: p, problems } = normalizeHyphaNetworkPolicy(hnpRaw('x', 'web', ingressTo('a', [{ protocol, port: 53, http: [{ method: 'GET' }] }])));
      assert.ok(problems.some((q) => q.field === 'spec.ingress[0].ports[0].http' && q.message.includes(protocol)), JSON.stringify(problems));
      assert.deepEqual((p!.ingress[0]!.ports as { http?: unknown }[])[0]!.http, []);
    });
  }

  test('kind and apiVersion are checked against HyphaNetworkPolicy', () => {
    const { problems } = normalizeHyphaNetworkPolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'x', name: 'w' }, spec: {} });
    assert.deepEqual(problems.map((p) => [p.field, p.value]), [['kind', 'NetworkPolicy'], ['apiVersion', 'networking.k8s.io/v1']]);
  });
});

describe('compile: entries with http', () => {
  const k = xyz();
  const compile = (policies: NetworkPolicy[]) => compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies });
  const tcp80 = (c: ReturnType<typeof compile>) =>
    c.endpoints.find((e) => e.key === 'x/a')!.ingress.entries.filter((e) => e.proto === 'TCP' && e.ports !== 'any' && e.ports.from === 80);

  test('every rule behind the entry has http: the entry carries them', () => {
    const c = compile([hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }]))]);
    const es = tcp80(c);
    assert.equal(es.length, 1);
    assert.deepEqual(es[0]!.http!.map((r) => `${r.policy} ${r.rule} ${r.method}`), ['hnp:x/web ingress[0].ports[0].http[0] GET']);
  });

  test('an http entry and a plain one for the same key: the plain one wins (no http)', () => {
    for (const order of [0, 1]) {
      const ps = [hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }])), policy('x', 'plain', ingressTo('a', [{ port: 80 }]))];
      const c = compile(order ? ps.reverse() : ps);
      const es = tcp80(c);
      assert.equal(es.length, 1);
      assert.equal(es[0]!.http, undefined);
      assert.equal(es[0]!.because.length, 2);
    }
  });

  test('two http entries for the same key: the union of their rules', () => {
    const c = compile([
      hnp('x', 'get', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }])),
      hnp('x', 'post', ingressTo('a', [{ port: 80, http: [{ method: 'POST' }, { method: 'GET' }] }])),
    ]);
    const es = tcp80(c);
    assert.equal(es.length, 1);
    assert.deepEqual(es[0]!.http!.map((r) => `${r.policy} ${r.rule}`).sort(),
      ['hnp:x/get ingress[0].ports[0].http[0]', 'hnp:x/post ingress[0].ports[0].http[0]', 'hnp:x/post ingress[0].ports[0].http[1]']);
  });

  test('a port whose rules were all bad: the entry carries http [] (fail closed)', () => {
    const { value } = normalizeHyphaNetworkPolicy(hnpRaw('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'get' }] }])));
    const es = tcp80(compile([value!]));
    assert.deepEqual(es[0]!.http, []);
  });

  test('a NetworkPolicy compiles as before: no http on any entry', () => {
    const c = compile([policy('x', 'plain', ingressTo('a', [{ port: 80 }]))]);
    for (const e of c.endpoints) for (const en of [...e.ingress.entries, ...e.egress.entries]) assert.equal('http' in en, false);
  });

  test('encodePolicyMaps: http entries get proxy_port (default 15001, or opts.proxyPort), plain ones 0', () => {
    const c = compile([
      hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }])),
      policy('x', 'plain', ingressTo('a', [{ port: 81 }])),
    ]);
    assert.equal(DEFAULT_L7_PROXY_PORT, 15001);
    for (const [opts, want] of [[undefined, 15001], [{ proxyPort: 4000 }, 4000]] as const) {
      const out = opts ? encodePolicyMaps(c, { policy: 1000, cidrs: 100 }, [], [], opts) : encodePolicyMaps(c, { policy: 1000, cidrs: 100 });
      const rows = [...out.maps.get(POLICY_MAP)!].map(([kb, vb]) => {
        const key = decodePolicyKey(fromBytes(kb));
        return { ports: String(key.ports), proxy: policyValCodec.decode(fromBytes(vb)).proxy_port };
      });
      const p80 = rows.filter((r) => r.ports.startsWith('80'));
      const p81 = rows.filter((r) => r.ports.startsWith('81'));
      assert.ok(p80.length > 0 && p81.length > 0, JSON.stringify(rows));
      for (const r of p80) assert.equal(r.proxy, want, JSON.stringify(r));
      for (const r of p81) assert.equal(r.proxy, 0, JSON.stringify(r));
    }
  });
});

describe('l7ChecksFor', () => {
  const k = xyz();
  const compile = (policies: NetworkPolicy[]) => compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies });
  const party = (key: string) => ({ ip: k.ipOf(key), identity: k.id(key) });
  const flow = (src: string, dst: string, port = 80) => ({ src: party(src), dst: party(dst), proto: 'TCP' as const, port });
  const summary = (cs: ReturnType<typeof l7ChecksFor>) =>
    cs.map((c) => `${c.direction} ${c.endpoint} ${c.rules === 'all' ? 'all' : c.rules.map((r) => r.method).join(',') || '[]'}`);

  test('ingress only: one check at the destination with its rules', () => {
    const c = compile([hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }]))]);
    assert.deepEqual(summary(l7ChecksFor(c, flow('x/b', 'x/a'))), ['ingress x/a GET']);
  });

  test("a plain allow of the same flow: 'all'", () => {
    const c = compile([
      hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }])),
      policy('x', 'any-tcp', ingressTo('a', [{ protocol: 'TCP' }])),
    ]);
    assert.deepEqual(summary(l7ChecksFor(c, flow('x/b', 'x/a'))), ['ingress x/a all']);
  });

  test('no entry allows the flow: rules [] (no request passes)', () => {
    const c = compile([hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }]))]);
    assert.deepEqual(summary(l7ChecksFor(c, flow('x/b', 'x/a', 8080))), ['ingress x/a []']);
  });

  test('egress at the source and ingress at the destination, the endpoint given by key', () => {
    const c = compile([
      hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }])),
      hnp('x', 'out', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80, http: [{ method: 'PUT' }] }] }] }),
    ]);
    const f = flow('x/b', 'x/a');
    assert.deepEqual(summary(l7ChecksFor(c, { ...f, src: { ...f.src, endpoint: 'x/b' } })), ['egress x/b PUT', 'ingress x/a GET']);
  });

  test('directions not enforced give no check', () => {
    const c = compile([hnp('x', 'web', ingressTo('a', [{ port: 80, http: [{ method: 'GET' }] }]))]);
    assert.deepEqual(l7ChecksFor(c, flow('x/a', 'x/b')), []);
  });
});
