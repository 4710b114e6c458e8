import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { layouts, maps as mapDefs } from '../abi/abi.gen.ts';
import { compilePolicies } from '../policy/compile.ts';
import { cluster, policy } from '../policy/fixtures.ts';
import { CIDR_IDENTITY_BASE, type Endpoint, IDENTITY_HOST } from '../policy/model.ts';
import { FaultyMapIO, MemoryMapIO, type MapIO } from './map-io.ts';
import {
  POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, PolicyMapsReconciler, decodePolicyKey, encodePolicyMaps, entryKeys,
  policyCidrKeyCodec, policyCidrValCodec, policyEpKeyCodec, policyEpValCodec,
} from './policy-maps.ts';
import { type Bytes, fromBytes } from './reconciler.ts';

const CAP = { policy: 1000, cidrs: 100 };
const TCP = 6;
const UDP = 17;

/** Policy map keys as 'ep identity dir proto ports' strings, sorted. */
function policyRows(m: ReadonlyMap<Bytes, Bytes>): string[] {
  return [...m.keys()].map((k) => {
    const r = decodePolicyKey(fromBytes(k));
    return `${r.ep} ${r.identity} ${r.dir} ${r.proto} ${r.ports}`;
  }).sort();
}

function epsRows(m: ReadonlyMap<Bytes, Bytes>): string[] {
  return [...m].map(([k, v]) => {
    const e = policyEpValCodec.decode(fromBytes(v));
    return `${policyEpKeyCodec.decode(fromBytes(k)).value} ${e.identity} ${e.flags}`;
  }).sort();
}

function cidrRows(m: ReadonlyMap<Bytes, Bytes>): string[] {
  return [...m].map(([k, v]) => {
    const key = policyCidrKeyCodec.decode(fromBytes(k));
    return `${key.addr}/${key.prefixlen} ${policyCidrValCodec.decode(fromBytes(v)).identity}`;
  }).sort();
}

const pods = cluster([
  { namespace: 'x', name: 'a', labels: { app: 'a' }, ip: '10.0.0.1', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] },
  { namespace: 'x', name: 'b', labels: { app: 'b' }, ip: '10.0.0.2' },
]);
const A = pods.id('x/a');
const B = pods.id('x/b');

describe('encodePolicyMaps', () => {
  test('open endpoints get an entry with flags 0 and no policy entries', () => {
    const out = encodePolicyMaps(compilePolicies({ identities: pods.identities, endpoints: pods.endpoints, policies: [] }), CAP);
    assert.deepEqual(epsRows(out.maps.get(POLICY_EPS_MAP)!), [`10.0.0.1 ${A} 0`, `10.0.0.2 ${B} 0`]);
    assert.equal(out.maps.get(POLICY_MAP)!.size, 0);
    assert.equal(out.maps.get(POLICY_CIDR_MAP)!.size, 0);
  });

  test('a port, any port of a protocol, any protocol, a named port, any peer, the host entry', () => {
    const c = compilePolicies({
      identities: pods.identities, endpoints: pods.endpoints, policies: [
        policy('x', 'p', {
          podSelector: { matchLabels: { app: 'a' } },
          ingress: [
            { from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 80 }, { protocol: 'UDP' }, { port: 'http' }] },
            { ports: [{ port: 53, protocol: 'UDP' }] },
          ],
          egress: [{ to: [{ podSelector: { matchLabels: { app: 'b' } } }] }],
          policyTypes: ['Ingress', 'Egress'],
        }),
      ],
    });
    const out = encodePolicyMaps(c, CAP);
    assert.deepEqual(epsRows(out.maps.get(POLICY_EPS_MAP)!), [`10.0.0.1 ${A} 3`, `10.0.0.2 ${B} 0`]);
    assert.deepEqual(policyRows(out.maps.get(POLICY_MAP)!), [
      `10.0.0.1 0 ingress ${UDP} 53/16`,
      `10.0.0.1 ${IDENTITY_HOST} ingress 0 any`,
      `10.0.0.1 ${A + 1} egress 0 any`,
      `10.0.0.1 ${A + 1} ingress ${TCP} 80/16`,
      `10.0.0.1 ${A + 1} ingress ${TCP} 8080/16`,
      `10.0.0.1 ${A + 1} ingress ${UDP} any`,
    ].sort());
    // The prefix lengths the datapath's LPM lookups rely on.
    const lens = [...out.maps.get(POLICY_MAP)!.keys()].map((k) => decodePolicyKey(fromBytes(k))).map((r) => `${r.proto}:${r.ports}:${r.prefixlen}`).sort();
    assert.deepEqual([...new Set(lens)], ['0:any:72', `${TCP}:80/16:96`, `${TCP}:8080/16:96`, `${UDP}:53/16:96`, `${UDP}:any:80`].sort());
    assert.equal(B, A + 1);
  });

  test('a port range is its aligned prefixes, in network byte order', () => {
    const keys = entryKeys('10.0.0.1', 'ingress', { identity: 'any', proto: 'TCP', ports: { from: 8000, to: 8080 } });
    assert.deepEqual(keys.map((k) => `${k.dport}/${k.prefixlen - 80}`), ['8000/10', '8064/12', '8080/16']);
    // dport is big-endian in the key: 8000 = 0x1f40.
    const c = compilePolicies({
      identities: pods.identities, endpoints: pods.endpoints,
      policies: [policy('x', 'p', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ ports: [{ port: 8000, endPort: 8080 }] }] })],
    });
    const rows = policyRows(encodePolicyMaps(c, CAP).maps.get(POLICY_MAP)!);
    assert.deepEqual(rows.filter((r) => r.includes(' 0 ingress 6 ')), ['10.0.0.1 0 ingress 6 8000/10', '10.0.0.1 0 ingress 6 8064/12', '10.0.0.1 0 ingress 6 8080/16']);
    const raw = [...encodePolicyMaps(c, CAP).maps.get(POLICY_MAP)!.keys()].map(fromBytes).find((k) => k[13] === TCP && k[0] === 90)!;
    assert.deepEqual([raw[14], raw[15]], [0x1f, 0x40]);
    assert.equal(layouts.hypha_policy_key.size, 16);
  });

  test('ipBlocks: every prefix in the CIDR map with its identity, entries keyed by the CIDR identities', () => {
    const c = compilePolicies({
      identities: pods.identities, endpoints: pods.endpoints,
      policies: [policy('x', 'p', { podSelector: { matchLabels: { app: 'b' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }] }] })],
    });
    const out = encodePolicyMaps(c, CAP);
    assert.deepEqual(cidrRows(out.maps.get(POLICY_CIDR_MAP)!), [`10.0.0.0/8 ${CIDR_IDENTITY_BASE}`, `10.1.0.0/16 ${CIDR_IDENTITY_BASE + 1}`]);
    assert.deepEqual(policyRows(out.maps.get(POLICY_MAP)!), [`10.0.0.2 ${CIDR_IDENTITY_BASE} egress 0 any`]);
    assert.deepEqual(epsRows(out.maps.get(POLICY_EPS_MAP)!), [`10.0.0.1 ${A} 0`, `10.0.0.2 ${B} 2`]);
  });

  test('an endpoint whose identity is unknown: identity 0, and the policies that might select it deny', () => {
    const endpoints: Endpoint[] = [...pods.endpoints, { namespace: 'x', name: 'new', identity: 0, ports: [], addresses: ['10.0.0.9'] }];
    const c = compilePolicies({
      identities: pods.identities, endpoints,
      policies: [policy('x', 'p', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{}] })],
    });
    const out = encodePolicyMaps(c, CAP, ['10.0.0.77']);
    assert.deepEqual(epsRows(out.maps.get(POLICY_EPS_MAP)!), [`10.0.0.1 ${A} 1`, `10.0.0.2 ${B} 0`, '10.0.0.77 0 0', '10.0.0.9 0 1']);
    // The unknown one gets the host entry only (deny all else); x/a allows any peer.
    assert.deepEqual(policyRows(out.maps.get(POLICY_MAP)!), ['10.0.0.1 0 ingress 0 any', `10.0.0.1 ${IDENTITY_HOST} ingress 0 any`, `10.0.0.9 ${IDENTITY_HOST} ingress 0 any`]);
  });

  test('a direction that does not fit in the map denies and is reported; others still fit', () => {
    const c = compilePolicies({
      identities: pods.identities, endpoints: pods.endpoints,
      policies: [policy('x', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 1, endPort: 65535 }] }] })],
    });
    // x/a needs 16 keys for 1-65535 plus the host entry; x/b the same: room for one of them.
    const out = encodePolicyMaps(c, { policy: 20, cidrs: 10 });
    assert.equal(out.maps.get(POLICY_MAP)!.size, 17);
    assert.deepEqual(out.overflows, [{ endpoint: 'x/b', direction: 'ingress', keys: 17, policies: ['x/p'] }]);
    assert.match(out.problems[0]!.message, /^Endpoint x\/b: ingress entries: 17 do not fit in the policy map \(3 of 20 left\): none are programmed and ingress traffic is denied \(policies: x\/p\)$/);
    assert.deepEqual(epsRows(out.maps.get(POLICY_EPS_MAP)!), [`10.0.0.1 ${A} 1`, `10.0.0.2 ${B} 1`]);
  });

  test('a CIDR table that does not fit: no prefix, no ipBlock entry (ipBlocks allow nothing)', () => {
    const c = compilePolicies({
      identities: pods.identities, endpoints: pods.endpoints,
      policies: [policy('x', 'p', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }, { podSelector: {} }] }] })],
    });
    const out = encodePolicyMaps(c, { policy: 100, cidrs: 1 });
    assert.equal(out.cidrOverflow, 2);
    assert.equal(out.maps.get(POLICY_CIDR_MAP)!.size, 0);
    assert.deepEqual(policyRows(out.maps.get(POLICY_MAP)!), [`10.0.0.1 ${A} egress 0 any`, `10.0.0.1 ${B} egress 0 any`, `10.0.0.2 ${A} egress 0 any`, `10.0.0.2 ${B} egress 0 any`]);
    assert.match(out.problems[0]!.message, /ipBlock prefixes exceed the 1 the CIDR map holds/);
  });
});

function memoryMaps(policyMax = 1000): { policy: FaultyMapIO; eps: FaultyMapIO; cidrs: FaultyMapIO; all: FaultyMapIO[] } {
  const mk = (name: keyof typeof mapDefs, max: number) => {
    const d = mapDefs[name];
    const ks = d.key === 'ip4' ? 4 : layouts[d.key as 'hypha_policy_key'].size;
    return new FaultyMapIO(new MemoryMapIO(name, ks, layouts[d.value as 'hypha_policy_val'].size, max));
  };
  const policy = mk(POLICY_MAP, policyMax);
  const eps = mk(POLICY_EPS_MAP, 100);
  const cidrs = mk(POLICY_CIDR_MAP, 100);
  return { policy, eps, cidrs, all: [policy, eps, cidrs] };
}

/** Records each write as 'map:op' (consecutive repeats collapsed). */
function recordOrder(m: ReturnType<typeof memoryMaps>): string[] {
  const order: string[] = [];
  for (const io of m.all) {
    io.failWhen((op) => {
      if (op === 'dump') return undefined;
      const s = `${({ [POLICY_MAP]: 'policy', [POLICY_EPS_MAP]: 'eps', [POLICY_CIDR_MAP]: 'cidr' } as Record<string, string>)[io.name]}:${op}`;
      if (order.at(-1) !== s) order.push(s);
      return undefined;
    });
  }
  return order;
}

const compile = (policies: ReturnType<typeof policy>[]) => compilePolicies({ identities: pods.identities, endpoints: pods.endpoints, policies });
const allowFromB = policy('x', 'p', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 80 }] }] });
const cidrEgress = policy('x', 'q', { podSelector: { matchLabels: { app: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '192.168.0.0/16' } }] }] });

describe('PolicyMapsReconciler', () => {

  test('adds policy entries, then CIDRs, then endpoints; deletes entries, then CIDRs, then endpoints', async () => {
    const m = memoryMaps();
    const order = recordOrder(m);
    const r = new PolicyMapsReconciler(m);
    await r.sync(encodePolicyMaps(compile([allowFromB, cidrEgress]), r.capacity).maps);
    assert.deepEqual(order, ['policy:update', 'cidr:update', 'eps:update']);
    order.length = 0;
    // Both policies gone: x/a turns open (its eps entry first), then its entries and the CIDR go.
    const s = await r.sync(encodePolicyMaps(compile([]), r.capacity).maps);
    assert.deepEqual(order, ['eps:update', 'policy:delete', 'cidr:delete']);
    assert.equal(s.full, false);
    assert.equal((m.policy.inner as MemoryMapIO).entries.size, 0);
  });

  test('a second identical sync writes nothing; a restarted reconciler adopts what is pinned and writes only the difference', async () => {
    const m = memoryMaps();
    const desired = encodePolicyMaps(compile([allowFromB]), { policy: 1000, cidrs: 100 }).maps;
    await new PolicyMapsReconciler(m).sync(desired);
    const again = new PolicyMapsReconciler(m);
    const s = await again.sync(desired);
    assert.deepEqual([s.upserts, s.deletes, s.full], [0, 0, true]);
    // An entry deleted by hand is repaired by the next full sync, not by an incremental one.
    const [k] = (m.policy.inner as MemoryMapIO).entries.keys();
    (m.policy.inner as MemoryMapIO).entries.delete(k!);
    assert.equal((await again.sync(desired)).upserts, 0);
    again.requestFull();
    assert.equal((await again.sync(desired)).upserts, 1);
  });

  test('a failed write makes the next sync full (it reads the maps back)', async () => {
    const m = memoryMaps();
    const r = new PolicyMapsReconciler(m);
    m.eps.failWhen((op) => (op === 'update' ? 'ENOMEM' : undefined));
    await assert.rejects(r.sync(encodePolicyMaps(compile([allowFromB]), r.capacity).maps), /upsert in map hypha_policy_eps_v1 failed/);
    m.eps.failWhen(undefined);
    const s = await r.sync(encodePolicyMaps(compile([allowFromB]), r.capacity).maps);
    assert.equal(s.full, true);
    assert.equal(s.upserts, 2, 'the endpoints only: the policy entries were written before the failure');
  });

  test('a map that cannot hold the old and the new entries together deletes first', async () => {
    const m = memoryMaps(3);
    const order = recordOrder(m);
    const r = new PolicyMapsReconciler(m);
    await r.sync(encodePolicyMaps(compile([allowFromB]), r.capacity).maps);
    assert.equal((m.policy.inner as MemoryMapIO).entries.size, 2);
    order.length = 0;
    const other = policy('x', 'p', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 81 }, { port: 82 }] }] });
    await r.sync(encodePolicyMaps(compile([other]), r.capacity).maps);
    assert.deepEqual(order, ['policy:delete', 'policy:update']);
    assert.equal((m.policy.inner as MemoryMapIO).entries.size, 3);
  });
});

// Against real BPF maps (root, the addon built): the kernel's LPM trie
// accepts the keys and a lookup finds an allow the way the datapath looks.
const root = process.getuid?.() === 0;
describe('PolicyMapsReconciler on BPF maps', { skip: !root && 'needs root (BPF maps)' }, () => {
  test('LPM lookups by (pod, peer, dir, proto, port) find the entries; a restart adopts them', async () => {
    const native = await import('../../native/index.ts');
    const { BpfMapIO } = await import('./loader.ts');
    const LPM = native.constants.mapTypes.LPM_TRIE;
    const HASH = native.constants.mapTypes.HASH;
    const NO_PREALLOC = 1;
    const handles = [
      native.mapCreate(LPM, 16, 4, 1024, { name: 'hy_t_policy', flags: NO_PREALLOC }),
      native.mapCreate(HASH, 4, 8, 64, { name: 'hy_t_eps' }),
      native.mapCreate(LPM, 8, 4, 64, { name: 'hy_t_cidr', flags: NO_PREALLOC }),
    ];
    try {
      const named = (name: string, i: number): MapIO => new BpfMapIO(name, handles[i]!);
      const io = { policy: named(POLICY_MAP, 0), eps: named(POLICY_EPS_MAP, 1), cidrs: named(POLICY_CIDR_MAP, 2) };
      const ranged = policy('x', 'p', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 8000, endPort: 8080 }] }] });
      const desired = encodePolicyMaps(compile([ranged, cidrEgress]), new PolicyMapsReconciler(io).capacity).maps;
      const s = await new PolicyMapsReconciler(io).sync(desired);
      assert.ok(s.upserts > 0);
      const lookup = (port: number, peer: number) => io.policy.lookup(new Uint8Array(Buffer.from([
        96, 0, 0, 0, 10, 0, 0, 1, ...new Uint8Array(new Uint32Array([peer]).buffer), 1, TCP, port >> 8, port & 255,
      ])));
      for (const [port, want] of [[7999, false], [8000, true], [8063, true], [8064, true], [8080, true], [8081, false]] as const) {
        assert.equal(lookup(port, B) !== undefined, want, `port ${port} from x/b`);
      }
      assert.equal(lookup(8000, A), undefined, 'another peer');
      assert.equal((await new PolicyMapsReconciler(io).sync(desired)).upserts, 0, 'a restarted reconciler finds everything in place');
      assert.equal((await new PolicyMapsReconciler(io).sync(encodePolicyMaps(compile([]), { policy: 1024, cidrs: 64 }).maps)).deletes, desired.get(POLICY_MAP)!.size + 1);
      assert.equal((await io.policy.dump()).count, 0);
    } finally {
      for (const h of handles) native.close(h);
    }
  });
});
