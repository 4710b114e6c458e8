// Objects: open, load (verifier and libbpf logs), maps and programs by name,
// pinned-map reuse across loads.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { ObjectHandle } from './index.ts';
import { fixture, makePinDir, readU64, rejectsNative, removePinDir, throwsNative, u32, u64 } from './test/helpers.ts';

const { mapTypes, progTypes } = bpf.constants;

describe('openObject and loadObject', () => {
  let pinDir: string;
  before(() => {
    pinDir = makePinDir();
  });
  after(() => removePinDir(pinDir));

  test('lists maps and programs, applies maxEntries, and hands out working handles', async () => {
    const obj = bpf.openObject(fixture('maps'), { pinRoot: pinDir, maxEntries: { small_hash: 4 } });
    try {
      const maps = bpf.objectMaps(obj);
      assert.deepEqual(
        maps.find((m) => m.name === 'small_hash'),
        { name: 'small_hash', type: mapTypes.HASH, keySize: 4, valueSize: 8, maxEntries: 4 },
      );
      assert.deepEqual(
        maps.map((m) => m.name).sort(),
        ['big_hash', 'hypha_test_pinned', 'lpm', 'lru', 'percpu_counts', 'small_hash'],
      );
      assert.deepEqual(bpf.objectPrograms(obj), [{ name: 'count_packets', section: 'xdp', type: progTypes.XDP }]);

      await bpf.loadObject(obj);
      const map = bpf.objectMap(obj, 'small_hash');
      assert.equal(bpf.mapInfo(map).maxEntries, 4);
      assert.equal(bpf.mapInfo(map).name, 'small_hash');
      bpf.mapUpdate(map, u32(7), u64(42));
      const value = bpf.mapLookup(map, u32(7));
      assert.ok(value);
      assert.equal(readU64(value), 42n);

      const prog = bpf.objectProgram(obj, 'count_packets');
      assert.equal(bpf.progInfo(prog).type, progTypes.XDP);

      // handles own a dup of the fd: they keep working after the object is closed
      bpf.close(obj);
      assert.equal(readU64(bpf.mapLookup(map, u32(7)) ?? new Uint8Array(8)), 42n);
      assert.equal(bpf.progInfo(prog).name, 'count_packets');
      bpf.close(map);
      bpf.close(prog);
    } finally {
      bpf.close(obj);
    }
  });

  test('maxEntries naming a map the object lacks is EINVALARG naming it', () => {
    throwsNative(() => bpf.openObject(fixture('maps'), { maxEntries: { no_such_map: 1 } }), {
      code: 'EINVALARG',
      op: 'openObject',
      message: /no_such_map/,
      name: 'TypeError',
    });
  });

  test('a missing object file is ENOENT with the path and libbpf log', () => {
    let caught: unknown;
    throwsNative(
      () => {
        try {
          bpf.openObject('/nonexistent/hypha.bpf.o');
        } catch (err) {
          caught = err;
          throw err;
        }
      },
      { code: 'ENOENT', op: 'bpf_object__open_file', errno: 2, message: /\/nonexistent\/hypha\.bpf\.o/ },
    );
    assert.ok(bpf.isNativeError(caught));
    assert.match(caught.libbpfLog ?? '', /failed to open/);
  });

  test('objectMap/objectProgram: unknown names are ENOENT naming them; before load is EINVALARG', async () => {
    const obj = bpf.openObject(fixture('maps'), { pinRoot: pinDir });
    try {
      throwsNative(() => bpf.objectMap(obj, 'small_hash'), { code: 'EINVALARG', message: /not loaded/ });
      await bpf.loadObject(obj);
      throwsNative(() => bpf.objectMap(obj, 'nope_map'), { code: 'ENOENT', errno: 2, message: /"nope_map"/ });
      throwsNative(() => bpf.objectProgram(obj, 'nope_prog'), { code: 'ENOENT', message: /"nope_prog"/ });
      await rejectsNative(bpf.loadObject(obj), { code: 'EINVALARG', op: 'loadObject' });
    } finally {
      bpf.close(obj);
    }
  });

  test('a program the verifier rejects: code, errno, op, program and the verifier log', async () => {
    const obj = bpf.openObject(fixture('bad'));
    try {
      const err = await rejectsNative(bpf.loadObject(obj), { code: 'EACCES', errno: 13, op: 'bpf_object__load' });
      assert.equal(err.program, 'bad_prog');
      assert.match(err.verifierLog ?? '', /invalid access to packet/);
      assert.match(err.message, /"bad_prog"/);
      assert.match(err.message, /invalid access to packet/);
      assert.match(err.libbpfLog ?? '', /prog 'bad_prog': BPF program load failed/);
    } finally {
      bpf.close(obj);
    }
  });

  test('object handles are busy while loading; close during a load is deferred safely', async () => {
    const obj = bpf.openObject(fixture('maps'), { pinRoot: pinDir });
    const loading = bpf.loadObject(obj);
    throwsNative(() => bpf.objectMaps(obj), { code: 'EHANDLEBUSY' });
    bpf.close(obj);
    await loading; // the load finishes, then the object is released
    throwsNative(() => bpf.objectMaps(obj), { code: 'ECLOSED' });
  });
});

describe('pinned maps (LIBBPF_PIN_BY_NAME)', () => {
  let pinDir: string;
  before(() => {
    pinDir = makePinDir();
  });
  after(() => removePinDir(pinDir));

  async function load(opts: bpf.OpenObjectOptions = {}): Promise<ObjectHandle> {
    const obj = bpf.openObject(fixture('maps'), { pinRoot: pinDir, ...opts });
    try {
      await bpf.loadObject(obj);
      return obj;
    } catch (err) {
      bpf.close(obj);
      throw err;
    }
  }

  test('a second load reuses the pinned map and sees its entries', async () => {
    const first = await load();
    const m1 = bpf.objectMap(first, 'hypha_test_pinned');
    bpf.mapUpdate(m1, u32(1), u64(1111));
    const id1 = bpf.mapInfo(m1).id;
    bpf.close(m1);
    bpf.close(first);
    assert.ok(existsSync(`${pinDir}/hypha_test_pinned`));

    const second = await load();
    try {
      const m2 = bpf.objectMap(second, 'hypha_test_pinned');
      assert.equal(bpf.mapInfo(m2).id, id1, 'same kernel map');
      assert.equal(readU64(bpf.mapLookup(m2, u32(1)) ?? new Uint8Array(8)), 1111n);
      // unpinned maps are fresh per load
      assert.equal(bpf.mapLookup(bpf.objectMap(second, 'small_hash'), u32(7)), undefined);
      bpf.close(m2);
    } finally {
      bpf.close(second);
    }

    // the pin also opens directly
    const pinned = bpf.openPinnedMap(`${pinDir}/hypha_test_pinned`);
    assert.equal(bpf.mapInfo(pinned).id, id1);
    bpf.close(pinned);
  });

  test('a pinned map whose layout no longer matches fails the load with libbpf\'s reason', async () => {
    const err = await rejectsNative(load({ maxEntries: { hypha_test_pinned: 2048 } }), {
      code: 'EINVAL',
      op: 'bpf_object__load',
    });
    assert.match(err.libbpfLog ?? '', /couldn't reuse pinned map/);
    assert.match(err.message, /couldn't reuse pinned map/);
    assert.equal(err.verifierLog, '');
  });

  test('openPinnedMap on a missing pin is ENOENT naming the path', () => {
    throwsNative(() => bpf.openPinnedMap(`${pinDir}/does_not_exist`), {
      code: 'ENOENT',
      errno: 2,
      op: 'bpf_obj_get',
      message: /does_not_exist/,
    });
  });

  test('pin() pins maps and programs; openPinnedMap refuses a pinned program', async () => {
    const obj = await load();
    try {
      const prog = bpf.objectProgram(obj, 'count_packets');
      bpf.pin(prog, `${pinDir}/prog`);
      throwsNative(() => bpf.openPinnedMap(`${pinDir}/prog`), { code: 'EINVALARG', message: /not a pinned map/ });
      const map = bpf.mapCreate(mapTypes.ARRAY, 4, 4, 1, { name: 'pin_me' });
      bpf.pin(map, `${pinDir}/pin_me`);
      throwsNative(() => bpf.pin(map, `${pinDir}/pin_me`), { code: 'EEXIST', op: 'bpf_obj_pin' });
      const again = bpf.openPinnedMap(`${pinDir}/pin_me`);
      assert.equal(bpf.mapInfo(again).id, bpf.mapInfo(map).id);
      for (const h of [prog, map, again]) bpf.close(h);
    } finally {
      bpf.close(obj);
    }
  });
});
