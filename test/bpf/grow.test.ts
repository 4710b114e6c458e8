// Datapath.grow against the real kernel: the maps it grows keep every entry
// under their pins (renamed into place), writes made during the growth reach
// the new map, entries the old programs made meanwhile are carried over, and
// a growth interrupted at any step is rolled back by the next load (the old
// maps, whole). Traffic through a growth is the agent e2e test's
// (test/e2e/map-growth.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import * as native from '../../native/index.ts';
import { CtDir } from '../../src/abi/abi.gen.ts';
import { Datapath, GROW_DIR, type GrowStep } from '../../src/datapath/loader.ts';
import { ctEntry, ctKey } from './harness.ts';

const SMALL = { services: 64, backends: 64, affinity: 64, ct: 256 };

const flow = (sport: number) => ({
  key: ctKey.encode({ saddr: '10.244.0.5', daddr: '10.96.0.10', sport, dport: 80, proto: 6, dir: CtDir.SERVICE }),
  value: ctEntry.encode({ nat_addr: '10.244.0.11', nat_addr2: '0.0.0.0', nat_port: 8080, nat_port2: sport, lb_gen: 0, pol_gen: 0, flags: 8, svc_id: 1, backend_id: 2, expires: 123456 }),
});

const backendKey = (id: number) => Buffer.from(new Uint32Array([id]).buffer);

async function withPinRoot(name: string, fn: (pinRoot: string) => Promise<void>): Promise<void> {
  const pinRoot = `/sys/fs/bpf/hypha-test-${name}-${process.pid}`;
  try {
    await fn(pinRoot);
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
}

test('grow: services (with names), backends and conntrack grow with every entry, the pins renamed into place, the programs replaced', async () => {
  await withPinRoot('grow', async (pinRoot) => {
    const dp = await Datapath.load({ pinRoot, initialSizes: SMALL });
    try {
      const backends = dp.mapIO('hypha_lb4_backends_v1');
      const valueSize = backends.valueSize;
      for (let i = 1; i <= 50; i++) backends.update(backendKey(i), Buffer.alloc(valueSize, i));
      for (let p = 40000; p < 40200; p++) native.mapUpdate(dp.map('hypha_ct4_v1'), flow(p).key, flow(p).value);
      const progBefore = native.progInfo(dp.programs.fromPod).id;
      const ctOld = dp.map('hypha_ct4_v1');
      const steps: string[] = [];
      let reattached = 0;
      const r = await dp.grow({ services: 256, backends: 512, ct: 1024 }, {
        reattach: () => {
          reattached++;
          // A write during the growth (after the copy) reaches the new map.
          backends.update(backendKey(51), Buffer.alloc(valueSize, 51));
        },
        afterStep: async (s) => {
          steps.push(s);
          // A flow opened between the copy and the swap is carried over.
          if (s === 'copied' && steps.length === 2) native.mapUpdate(ctOld, flow(41000).key, flow(41000).value);
        },
      });
      assert.deepEqual(steps, ['created', 'copied', 'swapped', 'carried', 'created', 'copied', 'loaded', 'attached', 'carried'], 'conntrack by its slot, then the rest by reloading the programs');
      assert.deepEqual(native.mapLookup(dp.map('hypha_ct4_v1'), flow(41000).key), flow(41000).value, 'carried over');
      const slots = dp.map('hypha_ct4_maps_v1');
      const slot = (i: number) => native.mapLookup(slots, Buffer.from(new Uint32Array([i]).buffer));
      assert.equal(Buffer.from(slot(0)!).readUInt32LE(0), native.mapInfo(dp.map('hypha_ct4_v1')).id, 'slot 0: the new conntrack map');
      assert.equal(slot(1), undefined, 'slot 1 empty');
      assert.equal(reattached, 1);
      assert.deepEqual(r.maps.map((m) => [m.map, m.from, m.to]).sort(), [
        ['hypha_ct4_v1', 256, 1024], ['hypha_lb4_backends_v1', 64, 512], ['hypha_lb4_names_v1', 64, 256], ['hypha_lb4_services_v1', 64, 256],
      ]);
      assert.deepEqual({ ...dp.sizes }, { services: 256, backends: 512, affinity: 64, ct: 1024 });
      assert.equal(backends.maxEntries, 512, 'a MapIO follows the grown map');
      for (let i = 1; i <= 51; i++) assert.deepEqual(Buffer.from(backends.lookup(backendKey(i)) ?? []), Buffer.alloc(valueSize, i), `backend ${i}`);
      for (let p = 40000; p < 40200; p++) assert.deepEqual(native.mapLookup(dp.map('hypha_ct4_v1'), flow(p).key), flow(p).value);
      assert.notEqual(native.progInfo(dp.programs.fromPod).id, progBefore, 'new programs');
      assert.equal(existsSync(`${pinRoot}/${GROW_DIR}`), false, 'no staging directory left');
      for (const [name, size] of [['hypha_lb4_services_v1', 256], ['hypha_lb4_backends_v1', 512], ['hypha_ct4_v1', 1024], ['hypha_lb4_names_v1', 256]] as const) {
        const h = native.openPinnedMap(`${pinRoot}/${name}`);
        assert.equal(native.mapInfo(h).maxEntries, size, `${name} pinned at its new size`);
        native.close(h);
      }
      // Growing to a size not larger does nothing.
      assert.deepEqual((await dp.grow({ services: 128 }, { reattach: () => assert.fail('no reattach') })).maps, []);
    } finally {
      dp.close();
    }
    // A restart adopts the grown sizes (no ESIZE: the configuration did not fix them).
    const again = await Datapath.load({ pinRoot, initialSizes: SMALL });
    try {
      assert.deepEqual({ ...again.sizes }, { services: 256, backends: 512, affinity: 64, ct: 1024 });
      assert.equal(native.mapDump(again.map('hypha_lb4_backends_v1')).count, 51);
    } finally {
      again.close();
    }
    // A size the configuration fixes must match what is pinned.
    await assert.rejects(Datapath.load({ pinRoot, mapSizes: { services: 64 } }), /hypha_lb4_(services|names)_v1 holds 256 entries, the configuration asks for 64/);
  });
});

test('a growth interrupted at each step leaves the old maps whole; the next load rolls it back', async () => {
  for (const step of ['created', 'copied', 'loaded', 'attached', 'carried'] as GrowStep[]) {
    await withPinRoot(`growcrash-${step}`, async (pinRoot) => {
      const dp = await Datapath.load({ pinRoot, initialSizes: SMALL });
      const backends = dp.mapIO('hypha_lb4_backends_v1');
      const vs = backends.valueSize;
      for (let i = 1; i <= 20; i++) backends.update(backendKey(i), Buffer.alloc(vs, i));
      // The crash: the step's hook never returns and the process state is dropped (handles closed, pins stay).
      const crashed = new Error(`crash after ${step}`);
      await assert.rejects(dp.grow({ backends: 256 }, {
        reattach: () => backends.update(backendKey(21), Buffer.alloc(vs, 21)),
        afterStep: async (s) => {
          if (s === step) {
            // What a kill -9 leaves: pins as they are. Copy the staging directory aside, let grow() clean up, put it back.
            staged = readdirSync(`${pinRoot}/${GROW_DIR}`);
            throw crashed;
          }
        },
      }), /crash after/);
      dp.close();
      assert.ok(staged.includes('hypha_lb4_backends_v1'), 'the new map was staged');
      // (grow() removed its staging directory on the error; a kill -9 would not: make one as it would be.)
      const { mkdirSync } = await import('node:fs');
      mkdirSync(`${pinRoot}/${GROW_DIR}`);
      const stray = native.mapCreate(native.constants.mapTypes.HASH, 4, vs, 256, { name: 'stray' });
      native.pin(stray, `${pinRoot}/${GROW_DIR}/hypha_lb4_backends_v1`);
      native.close(stray);
      const again = await Datapath.load({ pinRoot, initialSizes: SMALL });
      try {
        assert.equal(existsSync(`${pinRoot}/${GROW_DIR}`), false, `${step}: rolled back`);
        assert.equal(again.sizes.backends, 64, `${step}: the old map`);
        const n = native.mapDump(again.map('hypha_lb4_backends_v1')).count;
        assert.ok(n === 20 || (n === 21 && ['attached', 'carried'].includes(step)), `${step}: every entry (${n})`);
      } finally {
        again.close();
      }
    });
  }
});
test('a conntrack growth killed after its swap is finished by the next load; one killed before is rolled back', async () => {
  for (const step of ['copied', 'swapped'] as GrowStep[]) {
    await withPinRoot(`ctcrash-${step}`, async (pinRoot) => {
      const dp = await Datapath.load({ pinRoot, initialSizes: SMALL });
      for (let p = 40000; p < 40100; p++) native.mapUpdate(dp.map('hypha_ct4_v1'), flow(p).key, flow(p).value);
      const old = dp.map('hypha_ct4_v1');
      // A kill -9: the process stops inside the step's hook, nothing after it runs.
      let killed: () => void = () => undefined;
      const stuck = dp.grow({ ct: 1024 }, {
        reattach: () => undefined,
        afterStep: (s) => new Promise<void>((resolve) => {
          if (s !== step) return resolve();
          // A flow the programs open in the old map while the growth is stopped here.
          native.mapUpdate(old, flow(42000).key, flow(42000).value);
          killed = resolve;
        }),
      });
      await new Promise((r) => setTimeout(r, 50));
      // The next agent loads while this one "is dead" (its hook never returned).
      const again = await Datapath.load({ pinRoot, initialSizes: SMALL });
      try {
        const ct = again.map('hypha_ct4_v1');
        const want = step === 'swapped' ? 1024 : 256;
        assert.equal(again.sizes.ct, want, `${step}: ${step === 'swapped' ? 'finished' : 'rolled back'}`);
        assert.equal(existsSync(`${pinRoot}/${GROW_DIR}`), false);
        for (const p of [40000, 40099, 42000]) assert.deepEqual(native.mapLookup(ct, flow(p).key), flow(p).value, `${step}: flow ${p}`);
        const slots = again.map('hypha_ct4_maps_v1');
        assert.equal(Buffer.from(native.mapLookup(slots, Buffer.from(new Uint32Array([0]).buffer))!).readUInt32LE(0), native.mapInfo(ct).id);
        assert.equal(native.mapLookup(slots, Buffer.from(new Uint32Array([1]).buffer)), undefined);
      } finally {
        again.close();
      }
      killed();
      await stuck.catch(() => undefined);
      dp.close();
    });
  }
});

let staged: string[] = [];
