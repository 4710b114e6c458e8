// Programs: BPF_PROG_TEST_RUN on XDP and TC fixtures, program info.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { ObjectHandle, ProgHandle } from './index.ts';
import { ethFrame, fixture, throwsNative } from './test/helpers.ts';

const { xdpActions, tcActions, progTypes } = bpf.constants;

async function loaded(name: string): Promise<ObjectHandle> {
  const obj = bpf.openObject(fixture(name));
  await bpf.loadObject(obj);
  return obj;
}

describe('progTestRun on XDP programs', () => {
  let obj: ObjectHandle;
  const progs = new Map<string, ProgHandle>();
  const prog = (name: string): ProgHandle => {
    let p = progs.get(name);
    if (!p) {
      p = bpf.objectProgram(obj, name);
      progs.set(name, p);
    }
    return p;
  };
  before(async () => {
    obj = await loaded('xdp');
  });
  after(() => {
    for (const p of progs.values()) bpf.close(p);
    bpf.close(obj);
  });

  test('verdicts come back as retval; an untouched packet comes back as it went in', () => {
    const frame = ethFrame();
    const pass = bpf.progTestRun(prog('xdp_pass'), { data: frame });
    assert.equal(pass.retval, xdpActions.PASS);
    assert.deepEqual(pass.dataOut, frame);
    assert.equal(bpf.progTestRun(prog('xdp_drop'), { data: frame }).retval, xdpActions.DROP);
  });

  test('progTestRunAsync: the same run off the JS thread; bad options and closed handles are refused', async () => {
    const frame = ethFrame();
    const r = await bpf.progTestRunAsync(prog('xdp_swap_mac'), { data: frame });
    assert.equal(r.retval, xdpActions.TX);
    assert.deepEqual(r.dataOut, bpf.progTestRun(prog('xdp_swap_mac'), { data: frame }).dataOut);
    throwsNative(() => bpf.progTestRunAsync(prog('xdp_pass'), { data: new Uint8Array(0) }), { code: 'EINVALARG' });
    throwsNative(() => bpf.progTestRunAsync(prog('xdp_pass'), { data: frame, ctxIn: new Uint8Array(8) } as never), { code: 'EINVALARG' });
    // Closing the handle while a run is queued does not pull the program away from it.
    const p = bpf.objectProgram(obj, 'xdp_drop');
    const pending = bpf.progTestRunAsync(p, { data: frame });
    bpf.close(p);
    assert.equal((await pending).retval, xdpActions.DROP);
    throwsNative(() => bpf.progTestRunAsync(p, { data: frame }), { code: 'ECLOSED' });
  });

  test('rewritten packets: MAC swap', () => {
    const frame = ethFrame();
    const r = bpf.progTestRun(prog('xdp_swap_mac'), { data: frame });
    assert.equal(r.retval, xdpActions.TX);
    assert.deepEqual(r.dataOut.subarray(0, 12), Uint8Array.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]));
    assert.deepEqual(r.dataOut.subarray(12), frame.subarray(12));
  });

  test('a program that grows the packet gets room by default', () => {
    const frame = ethFrame();
    const r = bpf.progTestRun(prog('xdp_grow'), { data: frame });
    assert.equal(r.retval, xdpActions.PASS);
    assert.equal(r.dataOut.length, frame.length + 4);
    assert.deepEqual(r.dataOut.subarray(0, 4), Uint8Array.from([0xde, 0xad, 0xbe, 0xef]));
    assert.deepEqual(r.dataOut.subarray(4), frame);
  });

  test('too small a dataOutSize is ENOSPC', () => {
    throwsNative(() => bpf.progTestRun(prog('xdp_grow'), { data: ethFrame(), dataOutSize: 10 }), {
      code: 'ENOSPC',
      op: 'bpf_prog_test_run_opts',
      message: /data out 68 bytes \(room 10\)/,
    });
  });

  test('repeat runs many times and reports the average duration', () => {
    const r = bpf.progTestRun(prog('xdp_pass'), { data: ethFrame(), repeat: 100_000 });
    assert.equal(r.retval, xdpActions.PASS);
    assert.ok(r.durationNs >= 0 && r.durationNs < 1_000_000, `durationNs ${r.durationNs}`);
  });

  test('bad options are EINVALARG naming the field', () => {
    throwsNative(() => bpf.native.progTestRun(prog('xdp_pass'), {} as bpf.TestRunOptions), {
      code: 'EINVALARG',
      message: /opts\.data is required/,
    });
    throwsNative(() => bpf.progTestRun(prog('xdp_pass'), { data: ethFrame(), repeat: -1 }), {
      code: 'EINVALARG',
      message: /opts\.repeat/,
    });
    // the kernel itself refuses frames shorter than an Ethernet header
    throwsNative(() => bpf.progTestRun(prog('xdp_pass'), { data: new Uint8Array(4) }), { code: 'EINVAL' });
  });

  test('progInfo: id, type, name and tag', () => {
    const info = bpf.progInfo(prog('xdp_swap_mac'));
    assert.ok(info.id > 0);
    assert.equal(info.type, progTypes.XDP);
    assert.equal(info.name, 'xdp_swap_mac');
    assert.match(info.tag, /^[0-9a-f]{16}$/);
  });
});

describe('progTestRun on TC (sched_cls) programs', () => {
  let obj: ObjectHandle;
  before(async () => {
    obj = await loaded('tc');
  });
  after(() => bpf.close(obj));

  test('rewrites the destination MAC and returns TC_ACT_OK', () => {
    const p = bpf.objectProgram(obj, 'tc_rewrite');
    try {
      assert.equal(bpf.progInfo(p).type, progTypes.SCHED_CLS);
      const frame = ethFrame(60);
      const r = bpf.progTestRun(p, { data: frame });
      assert.equal(r.retval, tcActions.OK);
      assert.equal(r.dataOut.length, frame.length);
      assert.deepEqual(r.dataOut.subarray(0, 6), Uint8Array.from([2, 0, 0, 0, 0, 0xaa]));
      assert.deepEqual(r.dataOut.subarray(6), frame.subarray(6));
    } finally {
      bpf.close(p);
    }
  });

  test('TC_ACT_SHOT and a __sk_buff context in and out', () => {
    const p = bpf.objectProgram(obj, 'tc_shot');
    try {
      const ctxSize = 192; // sizeof(struct __sk_buff) in 6.x kernels
      const r = bpf.progTestRun(p, { data: ethFrame(), ctxIn: new Uint8Array(ctxSize), ctxOutSize: ctxSize });
      assert.equal(r.retval, tcActions.SHOT);
      assert.ok(r.ctxOut);
      assert.equal(r.ctxOut.length, ctxSize);
    } finally {
      bpf.close(p);
    }
  });
});
