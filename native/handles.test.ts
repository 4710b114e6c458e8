// Handles: kinds are checked, closed handles are refused, close is idempotent,
// finalizers give back what was never closed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { Handle, MapHandle, ObjectHandle, ProgHandle, RingbufHandle } from './index.ts';
import { collectGarbage, ethFrame, fixture, openFdCount, throwsNative, u32 } from './test/helpers.ts';

const { mapTypes } = bpf.constants;

describe('handle kinds and closed handles', () => {
  let obj: ObjectHandle;
  let prog: ProgHandle;
  let map: MapHandle;
  before(async () => {
    obj = bpf.openObject(fixture('xdp'));
    await bpf.loadObject(obj);
    prog = bpf.objectProgram(obj, 'xdp_pass');
    map = bpf.mapCreate(mapTypes.ARRAY, 4, 4, 1);
  });
  after(() => {
    for (const h of [prog, map, obj]) bpf.close(h);
  });

  test('a handle of the wrong kind is EBADHANDLE naming both kinds', () => {
    throwsNative(() => bpf.mapLookup(prog as unknown as MapHandle, u32(0)), {
      code: 'EBADHANDLE',
      op: 'mapLookup',
      errno: 0,
      name: 'TypeError',
      message: /map must be a map handle, got a prog handle/,
    });
    throwsNative(() => bpf.progTestRun(map as unknown as ProgHandle, { data: ethFrame() }), {
      code: 'EBADHANDLE',
      message: /got a map handle/,
    });
    throwsNative(() => bpf.objectMaps(map as unknown as ObjectHandle), { code: 'EBADHANDLE' });
    throwsNative(() => bpf.pin(obj as unknown as MapHandle, '/sys/fs/bpf/never'), {
      code: 'EBADHANDLE',
      message: /map or prog handle, got an object handle/,
    });
  });

  test('values that are no handle at all are EBADHANDLE, never a crash', () => {
    const fakes: unknown[] = [undefined, null, 0, 'map', {}, { __brand: 'hypha.MapHandle' }, [], () => {}, Symbol('x'), 1n];
    for (const fake of fakes) {
      throwsNative(() => bpf.mapLookup(fake as MapHandle, u32(0)), { code: 'EBADHANDLE', message: /non-handle/ });
      throwsNative(() => bpf.close(fake as Handle), { code: 'EBADHANDLE', op: 'close' });
    }
  });

  test('wrong argument types are EINVALARG naming the argument', () => {
    throwsNative(() => bpf.native.mapCreate('hash' as unknown as number, 4, 4, 1), {
      code: 'EINVALARG',
      message: /type must be a number, got string/,
    });
    throwsNative(() => bpf.native.openObject(42 as unknown as string), { code: 'EINVALARG', message: /path must be a string/ });
    throwsNative(() => bpf.native.openObject(fixture('xdp'), 'x' as unknown as bpf.OpenObjectOptions), {
      code: 'EINVALARG',
      message: /opts must be an object/,
    });
    throwsNative(() => bpf.native.xdpAttach(1, prog, { mode: 'turbo' as bpf.XdpMode }), {
      code: 'EINVALARG',
      message: /opts\.mode must be 'native', 'generic' or 'auto', got "turbo"/,
    });
    throwsNative(() => bpf.native.tcAttach(1, 'sideways' as bpf.TcDirection, prog), {
      code: 'EINVALARG',
      message: /direction must be 'ingress' or 'egress'/,
    });
    throwsNative(() => bpf.native.ringbufOpen(map, 'not a function' as unknown as () => void), {
      code: 'EINVALARG',
      message: /onRecord must be a function/,
    });
    throwsNative(() => bpf.ringbufOpen(map, () => {}), { code: 'EINVALARG', message: /ring buffer/ });
  });

  test('closed handles are ECLOSED; close is idempotent', () => {
    const m = bpf.mapCreate(mapTypes.HASH, 4, 4, 4);
    const p = bpf.objectProgram(obj, 'xdp_drop');
    bpf.close(m);
    bpf.close(m);
    bpf.close(p);
    bpf.close(p);
    throwsNative(() => bpf.mapLookup(m, u32(0)), { code: 'ECLOSED', op: 'mapLookup', errno: 0 });
    throwsNative(() => bpf.mapDump(m), { code: 'ECLOSED' });
    throwsNative(() => bpf.progTestRun(p, { data: ethFrame() }), { code: 'ECLOSED' });
    throwsNative(() => bpf.progInfo(p), { code: 'ECLOSED' });
  });

  test('closing releases fds at once', () => {
    const before = openFdCount();
    const handles = Array.from({ length: 50 }, () => bpf.mapCreate(mapTypes.ARRAY, 4, 4, 1));
    assert.equal(openFdCount(), before + 50);
    for (const h of handles) bpf.close(h);
    assert.equal(openFdCount(), before);
  });
});

describe('finalizers', () => {
  // Handles are made in nested functions: a variable of the async test function
  // itself could stay reachable from its suspended frame.
  async function dropSome(): Promise<void> {
    for (let i = 0; i < 200; i++) bpf.mapCreate(mapTypes.HASH, 8, 8, 16);
    const obj = bpf.openObject(fixture('xdp'));
    await bpf.loadObject(obj);
    for (let i = 0; i < 20; i++) bpf.objectProgram(obj, 'xdp_pass');
    bpf.objectMaps(obj);
  }

  test('dropped map, program and object handles give their fds back after GC', async () => {
    await collectGarbage();
    const before = openFdCount();
    for (let round = 0; round < 5; round++) {
      await dropSome();
      assert.ok(openFdCount() > before + 200, 'the handles hold fds until collected');
      await collectGarbage();
    }
    await collectGarbage();
    assert.equal(openFdCount(), before, 'fd count back to where it started');
  });

  test('an open ring buffer subscription is not collected when dropped; close releases it', async () => {
    const obj = bpf.openObject(fixture('ringbuf'));
    await bpf.loadObject(obj);
    const events = bpf.objectMap(obj, 'events');
    const before = openFdCount();
    let weak: WeakRef<RingbufHandle> | undefined;
    (() => {
      weak = new WeakRef(bpf.ringbufOpen(events, () => {}));
    })();
    assert.ok(openFdCount() > before);
    await collectGarbage();
    const rb = weak?.deref();
    assert.ok(rb, 'an open subscription stays alive (like a socket)');
    bpf.close(rb);
    assert.equal(openFdCount(), before, 'poller fds released by close');
    bpf.close(events);
    bpf.close(obj);
  });
});
