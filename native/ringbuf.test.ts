// Ring buffers: records written by a program (run through BPF_PROG_TEST_RUN) reach
// the callback; closing while records flow, twice, from the callback, or by ending
// the process neither hangs nor crashes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { MapHandle, ObjectHandle, ProgHandle } from './index.ts';
import { NODE, TEST_DIR, ethFrame, fixture, readU32, readU64 } from './test/helpers.ts';

async function waitFor(predicate: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('ring buffer subscriptions', () => {
  let obj: ObjectHandle;
  let events: MapHandle;
  let emit: ProgHandle;
  before(async () => {
    obj = bpf.openObject(fixture('ringbuf'));
    await bpf.loadObject(obj);
    events = bpf.objectMap(obj, 'events');
    emit = bpf.objectProgram(obj, 'emit');
  });
  after(() => {
    for (const h of [emit, events, obj]) bpf.close(h);
  });

  test('delivers every record, in order, as a copy', async () => {
    const records: Uint8Array[] = [];
    const rb = bpf.ringbufOpen(events, (data) => records.push(data));
    try {
      const first = bpf.progTestRun(emit, { data: ethFrame(64) });
      assert.equal(first.retval, bpf.constants.xdpActions.PASS, 'record written');
      bpf.progTestRun(emit, { data: ethFrame(100), repeat: 499 });
      await waitFor(() => records.length >= 500, '500 records');
      assert.equal(records.length, 500);
      const base = readU64(records[0] ?? new Uint8Array(16));
      records.forEach((r, i) => {
        assert.equal(r.length, 16);
        assert.equal(readU64(r, 0), base + BigInt(i), `record ${i} in sequence`);
        assert.equal(readU32(r, 8), i === 0 ? 64 : 100);
        assert.equal(readU32(r, 12), 0xfeedf00d);
      });
    } finally {
      bpf.close(rb);
    }
  });

  test('close from inside the callback stops delivery at once', async () => {
    let seen = 0;
    const rb = bpf.ringbufOpen(events, () => {
      seen++;
      if (seen === 50) bpf.close(rb);
    });
    bpf.progTestRun(emit, { data: ethFrame(), repeat: 5000 });
    await waitFor(() => seen >= 50, '50 records');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(seen, 50);
    bpf.close(rb); // twice is fine
    assert.throws(() => bpf.ringbufOpen(rb as unknown as MapHandle, () => {}), { code: 'EBADHANDLE' });
  });

  test('open/close cycles while records flow', async () => {
    for (let cycle = 0; cycle < 20; cycle++) {
      let seen = 0;
      const rb = bpf.ringbufOpen(events, () => {
        seen++;
      });
      bpf.progTestRun(emit, { data: ethFrame(), repeat: 3000 });
      await new Promise((resolve) => setTimeout(resolve, cycle % 3));
      bpf.close(rb);
      const atClose = seen;
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(seen, atClose, 'nothing delivered after close');
    }
    // the ring itself is still usable afterwards
    const got: Uint8Array[] = [];
    const rb = bpf.ringbufOpen(events, (d) => got.push(d));
    bpf.progTestRun(emit, { data: ethFrame(), repeat: 10 });
    await waitFor(() => got.length >= 10, 'records after the cycles');
    bpf.close(rb);
  });

  for (const [mode, status] of [
    ['exit', 0],
    ['exit-code', 3],
    ['throw', 1],
    ['worker', 0],
    ['callback-throws', 7], // onRecord threw: 'uncaughtException' saw it
  ] as const) {
    test(`ending the process with a subscription open (${mode}) neither hangs nor crashes`, () => {
      const child = spawnSync(NODE, [`${TEST_DIR}ringbuf-child.ts`, mode], { timeout: 20_000, encoding: 'utf8' });
      assert.equal(child.signal, null, `killed by ${child.signal}; stderr: ${child.stderr}`);
      assert.equal(child.status, status, `stderr: ${child.stderr}`);
    });
  }
});
