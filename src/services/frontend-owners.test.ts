import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClaimedAddress, FrontendKind } from './compile.ts';
import { type FrontendClaim, FrontendOwners } from './frontend-owners.ts';

interface Spec {
  key: string;
  created?: string;
  claims: [FrontendKind, string, number][]; // kind, addr, port
}

function claimsOf(s: Spec): { frontends: FrontendClaim[]; addresses: ClaimedAddress[] } {
  const frontends = s.claims.map(([kind, addr, port]) => ({ frontend: `${addr}:${port}/TCP`, addr, kind }));
  const addresses = s.claims.filter(([kind]) => kind !== 'NodePort').map(([kind, addr]) => ({ addr, kind }));
  return { frontends, addresses };
}

function put(o: FrontendOwners, s: Spec): string[] {
  const { frontends, addresses } = claimsOf(s);
  return o.set(s.key, frontends, addresses, s.created ?? '');
}

/** Who is granted which frontend: 'fk' -> service. */
function grants(o: FrontendOwners, specs: Spec[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of specs) {
    for (const f of claimsOf(s).frontends) if (o.verdict(s.key, f.frontend).granted) (out[f.frontend] ??= []).push(s.key);
  }
  return out;
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

const A: Spec = { key: 'default/a', created: '2024-01-02T00:00:00Z', claims: [['ClusterIP', '10.96.0.10', 80]] };
const B: Spec = { key: 'default/b', created: '2024-01-01T00:00:00Z', claims: [['ClusterIP', '10.96.0.20', 80], ['ExternalIP', '10.96.0.10', 80], ['ExternalIP', '10.96.0.10', 8080]] };

describe('FrontendOwners', () => {
  test('a ClusterIP beats an ExternalIP of an older Service on it, in either order, on every port of the address', () => {
    for (const order of [[A, B], [B, A]]) {
      const o = new FrontendOwners();
      for (const s of order) put(o, s);
      assert.deepEqual(grants(o, [A, B]), { '10.96.0.10:80/TCP': ['default/a'], '10.96.0.20:80/TCP': ['default/b'] });
      const v = o.verdict('default/b', '10.96.0.10:8080/TCP');
      assert.deepEqual(v, { granted: false, owner: 'default/a', reason: 'address 10.96.0.10 is the ClusterIP of Service default/a' });
    }
  });

  test('delete and recreate: the ExternalIP holds the address only while no Service owns it, and each change names who changed', () => {
    const o = new FrontendOwners();
    assert.deepEqual(put(o, A), []);
    assert.deepEqual(put(o, B), []);
    assert.deepEqual(o.set('default/a', [], [], ''), ['default/b'], 'B is granted what A let go');
    assert.equal(o.verdict('default/b', '10.96.0.10:80/TCP').granted, true);
    assert.deepEqual(put(o, { ...A, created: '2024-02-01T00:00:00Z' }), ['default/b'], 'B loses it again to the recreated A');
    assert.equal(o.verdict('default/b', '10.96.0.10:80/TCP').granted, false);
    assert.equal(o.verdict('default/b', '10.96.0.10:8080/TCP').granted, false);
    assert.equal(o.verdict('default/a', '10.96.0.10:80/TCP').granted, true);
    assert.deepEqual(put(o, B), [], 'an unchanged claim changes nothing');
  });

  test('a NodePort beats an ExternalIP on the node address at the same port only', () => {
    const np: Spec = { key: 'default/np', created: '2024-03-01T00:00:00Z', claims: [['NodePort', '192.168.1.10', 30080]] };
    const ext: Spec = { key: 'default/ext', created: '2024-01-01T00:00:00Z', claims: [['ExternalIP', '192.168.1.10', 30080], ['ExternalIP', '192.168.1.10', 443]] };
    for (const order of [[np, ext], [ext, np]]) {
      const o = new FrontendOwners();
      for (const s of order) put(o, s);
      assert.deepEqual(grants(o, [np, ext]), { '192.168.1.10:30080/TCP': ['default/np'], '192.168.1.10:443/TCP': ['default/ext'] });
      assert.equal((o.verdict('default/ext', '192.168.1.10:30080/TCP') as { reason: string }).reason, '192.168.1.10:30080/TCP is the NodePort of Service default/np');
    }
  });

  test('LoadBalancer IPs: over ExternalIPs on the whole address, under ClusterIPs, shared with other LoadBalancers port by port', () => {
    const lb1: Spec = { key: 'ns/lb1', created: '2024-02-01T00:00:00Z', claims: [['LoadBalancer', '203.0.113.7', 80]] };
    const lb2: Spec = { key: 'ns/lb2', created: '2024-02-02T00:00:00Z', claims: [['LoadBalancer', '203.0.113.7', 443]] };
    const ext: Spec = { key: 'ns/ext', created: '2024-01-01T00:00:00Z', claims: [['ExternalIP', '203.0.113.7', 22]] };
    const bad: Spec = { key: 'ns/bad', created: '2024-01-01T00:00:00Z', claims: [['LoadBalancer', '10.96.0.10', 80]] };
    for (const order of permutations([lb1, lb2, ext, bad, A])) {
      const o = new FrontendOwners();
      for (const s of order) put(o, s);
      assert.deepEqual(grants(o, [lb1, lb2, ext, bad, A]), {
        '203.0.113.7:80/TCP': ['ns/lb1'], '203.0.113.7:443/TCP': ['ns/lb2'], '10.96.0.10:80/TCP': ['default/a'],
      }, order.map((s) => s.key).join(' '));
    }
  });

  test('two claims of the same rank: the older Service keeps the frontend, then the lower name; never the order they came in', () => {
    const x: Spec = { key: 'ns/x', created: '2024-01-05T00:00:00Z', claims: [['ExternalIP', '198.51.100.1', 80]] };
    const y: Spec = { key: 'ns/y', created: '2024-01-01T00:00:00Z', claims: [['ExternalIP', '198.51.100.1', 80]] };
    const z: Spec = { key: 'ns/z', created: '2024-01-01T00:00:00Z', claims: [['ExternalIP', '198.51.100.1', 80]] };
    const u: Spec = { key: 'ns/a-unknown-age', claims: [['ExternalIP', '198.51.100.1', 80]] };
    for (const order of permutations([x, y, z, u])) {
      const o = new FrontendOwners();
      for (const s of order) put(o, s);
      assert.deepEqual(grants(o, [x, y, z, u]), { '198.51.100.1:80/TCP': ['ns/y'] });
      assert.equal((o.verdict('ns/x', '198.51.100.1:80/TCP') as { reason: string }).reason, '198.51.100.1:80/TCP is also the ExternalIP of Service ns/y, which is older');
    }
    const o = new FrontendOwners();
    for (const s of [z, y]) put(o, s);
    assert.equal((o.verdict('ns/z', '198.51.100.1:80/TCP') as { reason: string }).reason, '198.51.100.1:80/TCP is also the ExternalIP of Service ns/y, which sorts first');
  });

  test('every refused claim is forgotten when its Services go', () => {
    const o = new FrontendOwners();
    put(o, A);
    put(o, B);
    assert.ok(o.refused().size > 0);
    o.set('default/a', [], [], '');
    o.set('default/b', [], [], '');
    assert.equal(o.refused().size, 0);
  });
  test('one claimant, a second, back to one, then a third: verdicts and who changed at each step', () => {
    const ext = (key: string, created: string): Spec => ({ key, created, claims: [['ExternalIP', '198.51.100.1', 80], ['ExternalIP', '198.51.100.1', 443]] });
    const a = ext('ns/a', '2024-01-05T00:00:00Z');
    const b = ext('ns/b', '2024-01-01T00:00:00Z');
    const c = ext('ns/c', '2024-01-02T00:00:00Z');
    const o = new FrontendOwners();
    assert.deepEqual(put(o, a), []);
    assert.deepEqual(grants(o, [a]), { '198.51.100.1:80/TCP': ['ns/a'], '198.51.100.1:443/TCP': ['ns/a'] });
    assert.deepEqual(put(o, b), ['ns/a'], 'the older b takes both frontends from a');
    assert.deepEqual(grants(o, [a, b]), { '198.51.100.1:80/TCP': ['ns/b'], '198.51.100.1:443/TCP': ['ns/b'] });
    assert.deepEqual(o.set('ns/b', [], [], ''), ['ns/a'], 'a gets them back');
    assert.deepEqual(grants(o, [a]), { '198.51.100.1:80/TCP': ['ns/a'], '198.51.100.1:443/TCP': ['ns/a'] });
    assert.equal(o.refused().size, 0);
    assert.deepEqual(put(o, c), ['ns/a'], 'a third, older than a, takes them');
    assert.deepEqual(grants(o, [a, c]), { '198.51.100.1:80/TCP': ['ns/c'], '198.51.100.1:443/TCP': ['ns/c'] });
    assert.equal((o.verdict('ns/a', '198.51.100.1:443/TCP') as { reason: string }).reason, '198.51.100.1:443/TCP is also the ExternalIP of Service ns/c, which is older');
    // An owner of the whole address comes and goes: every port follows.
    const owner: Spec = { key: 'ns/owner', created: '2024-03-01T00:00:00Z', claims: [['ClusterIP', '198.51.100.1', 53]] };
    assert.deepEqual(put(o, owner), ['ns/a', 'ns/c']);
    assert.deepEqual(grants(o, [a, c, owner]), { '198.51.100.1:53/TCP': ['ns/owner'] });
    assert.deepEqual(o.set('ns/owner', [], [], ''), ['ns/a', 'ns/c']);
    assert.deepEqual(grants(o, [a, c]), { '198.51.100.1:80/TCP': ['ns/c'], '198.51.100.1:443/TCP': ['ns/c'] });
    o.set('ns/c', [], [], '');
    o.set('ns/a', [], [], '');
    assert.equal(o.refused().size, 0);
  });

  test('whatever the history of changes, verdicts are those of the end state fed at once, and every Service whose verdict changed is named', () => {
    let seed = 7;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    const kinds: FrontendKind[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalIP'];
    const addrs = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
    const keys = ['ns/p', 'ns/q', 'ns/r', 'ns/s', 'ns/t'];
    const randomSpec = (key: string): Spec => ({
      key,
      created: rand(4) === 0 ? '' : `2024-01-0${1 + rand(3)}T00:00:00Z`,
      claims: Array.from({ length: 1 + rand(3) }, () => [kinds[rand(4)]!, addrs[rand(3)]!, 80 + rand(2)] as [FrontendKind, string, number]),
    });
    const verdicts = (o: FrontendOwners, specs: Spec[]): Map<string, string> => new Map(specs.flatMap((s) => claimsOf(s).frontends.map((f) => {
      const v = o.verdict(s.key, f.frontend);
      return [`${s.key} ${f.frontend}`, v.granted ? '' : v.reason] as [string, string];
    })));
    const o = new FrontendOwners();
    const now = new Map<string, Spec>();
    for (let step = 0; step < 400; step++) {
      const key = keys[rand(keys.length)]!;
      const before = verdicts(o, [...now.values()]);
      let changed: string[];
      if (rand(3) === 0) {
        changed = o.set(key, [], [], '');
        now.delete(key);
      } else {
        const s = randomSpec(key);
        changed = put(o, s);
        now.set(key, s);
      }
      const fresh = new FrontendOwners();
      for (const s of [...now.values()].sort((x, y) => (x.key < y.key ? 1 : -1))) put(fresh, s);
      const after = verdicts(o, [...now.values()]);
      assert.deepEqual(after, verdicts(fresh, [...now.values()]), `step ${step}`);
      for (const [k, v] of after) {
        const s = k.split(' ')[0]!;
        if (s !== key && before.has(k) && before.get(k) !== v) assert.ok(changed.includes(s), `step ${step}: ${k} changed and ${s} is not named`);
      }
    }
    for (const k of keys) o.set(k, [], [], '');
    assert.equal(o.refused().size, 0);
  });
});
