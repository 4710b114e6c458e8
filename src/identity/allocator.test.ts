// The allocator's decisions against an in-memory store that behaves like the
// API server where it matters: one revision counter for every write, names
// unique, reads that see every completed write. A seeded scheduler interleaves
// many allocators' requests in random orders; every order must end with one
// id per label set, the same one returned to every allocator. (The real API
// server is exercised by test/e2e/identity-allocator.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type IdentityStore, IdentityAllocator, type StoredIdentityLike, isIdentityError, pickCandidate, winnerOf } from './allocator.ts';
import { IdentityCache } from './cache.ts';
import { type LabelSet, canonicalLabelSet, labelsKey } from './labels.ts';

interface Fake extends StoredIdentityLike {
  key: string;
}

/** Seeded PRNG (mulberry32). */
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

class FakeStore implements IdentityStore<Fake> {
  readonly objects = new Map<number, Fake>();
  revision = 100n;
  uid = 0;
  creates = 0;
  deletes = 0;
  /** Before every request: yields to the scheduler (random interleaving). */
  gate: () => Promise<void> = async () => {};

  async listByKey(key: string): Promise<Fake[]> {
    await this.gate();
    return [...this.objects.values()].filter((o) => o.key === key);
  }

  async create(id: number, set: LabelSet): Promise<Fake | 'exists'> {
    await this.gate();
    if (this.objects.has(id)) return 'exists';
    this.creates++;
    const o: Fake = { id, ...set, key: labelsKey(set), uid: `u${++this.uid}`, revision: ++this.revision, deleting: false };
    this.objects.set(id, o);
    await this.gate();
    return o;
  }

  async delete(identity: Fake): Promise<void> {
    await this.gate();
    const cur = this.objects.get(identity.id);
    if (cur?.uid === identity.uid) {
      this.objects.delete(identity.id);
      this.revision++;
      this.deletes++;
    }
  }

  async listIds(): Promise<Set<number>> {
    await this.gate();
    return new Set(this.objects.keys());
  }
}

/** Runs queued continuations one at a time, in a random order. */
function scheduler(random: () => number): () => Promise<void> {
  const waiting: (() => void)[] = [];
  let timer: NodeJS.Immediate | undefined;
  const pump = (): void => {
    timer = undefined;
    if (waiting.length === 0) return;
    const [next] = waiting.splice(Math.floor(random() * waiting.length), 1);
    next!();
    timer = setImmediate(pump);
  };
  return () => new Promise<void>((resolve) => {
    waiting.push(resolve);
    timer ??= setImmediate(pump);
  });
}

const set = (i: number, ns = 'default'): LabelSet => ({ namespace: ns, podLabels: { app: `a${i}` }, namespaceLabels: { 'kubernetes.io/metadata.name': ns } });

test('winnerOf: exactly the set, not being deleted, lowest revision', () => {
  const s = set(1);
  const mk = (id: number, revision: bigint, extra: Partial<Fake> = {}): Fake => ({ id, ...s, key: labelsKey(s), uid: String(id), revision, deleting: false, ...extra });
  assert.equal(winnerOf([mk(300, 20n), mk(301, 10n), mk(302, 30n)], s)?.id, 301);
  assert.equal(winnerOf([mk(300, 20n), mk(301, 10n, { deleting: true })], s)?.id, 300);
  // Same key (a collision, made by hand here), another set: never taken.
  assert.equal(winnerOf([mk(303, 1n, { podLabels: { app: 'other' } }), mk(300, 20n)], s)?.id, 300);
  assert.equal(winnerOf([], s), undefined);
  // Revisions compared as numbers, not strings.
  assert.equal(winnerOf([mk(300, 9n), mk(301, 10n)], s)?.id, 300);
});

test('pickCandidate: prefers the given id, avoids used and tried ids, finds the last free one, undefined when none', () => {
  const range = { min: 256, max: 259 };
  const r = rng(1);
  assert.equal(pickCandidate({ range, used: new Set(), tried: new Set(), prefer: 258, random: r }), 258);
  assert.notEqual(pickCandidate({ range, used: new Set([258]), tried: new Set(), prefer: 258, random: r }), 258);
  for (let i = 0; i < 50; i++) assert.equal(pickCandidate({ range, used: new Set([256, 257]), tried: new Set([259]), random: r }), 258);
  assert.equal(pickCandidate({ range, used: new Set([256, 257]), tried: new Set([258, 259]), random: r }), undefined);
  assert.equal(pickCandidate({ range, used: new Set(), tried: new Set(), prefer: 100, random: () => 0 }), 256, 'a preferred id outside the range is not used');
  const big = { min: 256, max: 65535 };
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) seen.add(pickCandidate({ range: big, used: new Set(), tried: new Set(), random: r })!);
  assert.ok(seen.size > 90, 'spread over the range');
});

test('a set gets one id; a second allocation and a restarted allocator get the same one', async () => {
  const store = new FakeStore();
  const a = new IdentityAllocator({ store, random: rng(2) });
  const first = await a.allocate(set(1));
  assert.equal(first.outcome, 'created');
  assert.equal((await a.allocate(set(1))).identity.id, first.identity.id);
  const restarted = new IdentityAllocator({ store, random: rng(3) });
  const again = await restarted.allocate(set(1));
  assert.deepEqual([again.outcome, again.identity.id], ['existing', first.identity.id]);
  assert.equal((await restarted.lookup(set(1)))?.id, first.identity.id);
  assert.equal(await restarted.lookup(set(2)), undefined);
  assert.equal(store.creates, 1);
});

for (const seed of [11, 12, 13, 14, 15, 16, 17, 18]) {
  test(`racing allocators (random interleaving, seed ${seed}): one id per set, returned to all; no id with two sets; losers deleted`, async () => {
    const random = rng(seed);
    const store = new FakeStore();
    store.gate = scheduler(random);
    // A tiny range makes name clashes common, too.
    const range = { min: 256, max: 256 + 40 };
    const allocators = Array.from({ length: 5 }, (_, i) => new IdentityAllocator({ store, range, random: rng(seed * 100 + i) }));
    const sets = Array.from({ length: 12 }, (_, i) => set(i));
    const results = await Promise.all(allocators.flatMap((a) => sets.map(async (s) => [canonicalLabelSet(s), (await a.allocate(s)).identity.id] as const)));
    const byCanon = new Map<string, Set<number>>();
    for (const [c, id] of results) {
      if (!byCanon.has(c)) byCanon.set(c, new Set());
      byCanon.get(c)!.add(id);
    }
    for (const [c, ids] of byCanon) assert.equal(ids.size, 1, `${c} got ids ${[...ids].join(', ')}`);
    const live = [...store.objects.values()];
    assert.equal(live.length, sets.length, `live objects: ${live.map((o) => `${o.id}:${o.podLabels.app}`).join(' ')}`);
    for (const s of sets) {
      const mine = live.filter((o) => canonicalLabelSet(o) === canonicalLabelSet(s));
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.id, [...byCanon.get(canonicalLabelSet(s))!][0]);
    }
    assert.equal(store.creates - store.deletes, sets.length);
  });
}

test('exhaustion is an error naming the range; a stale hint is checked against the store first', async () => {
  const store = new FakeStore();
  const range = { min: 300, max: 302 };
  const cache = new IdentityCache<Fake>();
  const a = new IdentityAllocator({ store, range, random: rng(4), knownIds: () => cache.ids() });
  for (let i = 0; i < 3; i++) cache.upsert((await a.allocate(set(i))).identity as Fake);
  await assert.rejects(a.allocate(set(9)), (err: unknown) => {
    assert.ok(isIdentityError(err, 'E_IDENTITY_EXHAUSTED'));
    assert.match(err.message, /^no free security identity in 300\.\.302: all 3 are in use/);
    return true;
  });
  // The hint says all is taken, the store knows one was deleted meanwhile.
  await store.delete(store.objects.get(301)!);
  const got = await a.allocate(set(9));
  assert.deepEqual([got.outcome, got.identity.id], ['created', 301]);
  assert.throws(() => new IdentityAllocator({ store, range: { min: 100, max: 300 } }), /identity range 100\.\.300 is not inside 256\.\.65535/);
});

test('prefer: a collected set that is still in use gets its old id back when it is free', async () => {
  const store = new FakeStore();
  const a = new IdentityAllocator({ store, random: rng(5) });
  const first = await a.allocate(set(1));
  await store.delete(first.identity);
  const again = await a.allocate(set(1), { prefer: first.identity.id });
  assert.deepEqual([again.outcome, again.identity.id], ['created', first.identity.id]);
});

test('a loser that cannot delete its object still returns the winner (the collector removes the leftover)', async () => {
  const store = new FakeStore();
  const s = set(1);
  const b = new IdentityAllocator({ store, random: rng(6) });
  const winner = await b.allocate(s);
  // An allocator whose first read missed the winner (it ran before the create).
  let reads = 0;
  const blind: IdentityStore<Fake> = {
    listByKey: async (k) => (reads++ === 0 ? [] : store.listByKey(k)),
    create: (id, ls) => store.create(id, ls),
    delete: async () => {
      throw new Error('connection reset');
    },
    listIds: () => store.listIds(),
  };
  const got = await new IdentityAllocator({ store: blind, random: rng(7) }).allocate(s);
  assert.deepEqual([got.outcome, got.identity.id], ['lost-race', winner.identity.id]);
  assert.equal(store.objects.size, 2, 'the leftover is there for the collector');
});

test('IdentityCache: by id and key, winner by revision, replace and delete', () => {
  const c = new IdentityCache<Fake>();
  const s = set(1);
  const mk = (id: number, revision: bigint): Fake => ({ id, ...s, key: labelsKey(s), uid: String(id), revision, deleting: false });
  c.upsert(mk(400, 50n));
  c.upsert(mk(300, 60n));
  assert.equal(c.winner(labelsKey(s))?.id, 400);
  assert.equal(c.winner(labelsKey(s), canonicalLabelSet(set(2))), undefined);
  c.delete(400);
  assert.equal(c.winner(labelsKey(s))?.id, 300);
  assert.deepEqual([...c.ids()], [300]);
  c.upsert({ ...mk(300, 70n), ...set(2), key: labelsKey(set(2)) });
  assert.equal(c.winner(labelsKey(s)), undefined, 'an id re-used for another set leaves the old key');
  assert.equal(c.winner(labelsKey(set(2)))?.id, 300);
  assert.equal(c.size, 1);
});
