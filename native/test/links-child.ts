// Runs inside a throwaway network namespace (links.test.ts starts it with nsenter),
// on a veth pair `argv[2]`/`argv[3]` that exists only there.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import * as bpf from '../index.ts';
import type { ObjectHandle, ProgHandle } from '../index.ts';
import { fixture, throwsNative } from './helpers.ts';

const [dev, peer] = process.argv.slice(2);
if (!dev || !peer) throw new Error('usage: links-child.ts <dev> <peer>');

function tcFilters(direction: 'ingress' | 'egress'): string[] {
  return execFileSync('tc', ['filter', 'show', 'dev', dev as string, direction], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => / bpf .* handle /.test(line));
}

describe(`links on ${dev}`, () => {
  let xdp: ObjectHandle;
  let tc: ObjectHandle;
  const progs: Record<string, ProgHandle> = {};
  const id = (name: string): number => bpf.progInfo(progs[name] as ProgHandle).id;
  let ifindex: number;

  before(async () => {
    xdp = bpf.openObject(fixture('xdp'));
    tc = bpf.openObject(fixture('tc'));
    await bpf.loadObject(xdp);
    await bpf.loadObject(tc);
    for (const name of ['xdp_pass', 'xdp_drop', 'xdp_swap_mac']) progs[name] = bpf.objectProgram(xdp, name);
    for (const name of ['tc_rewrite', 'tc_shot']) progs[name] = bpf.objectProgram(tc, name);
    ifindex = bpf.ifNameToIndex(dev as string);
  });
  after(() => {
    for (const p of Object.values(progs)) bpf.close(p);
    bpf.close(xdp);
    bpf.close(tc);
  });

  test('interface names and indexes', () => {
    assert.ok(ifindex > 0);
    assert.equal(bpf.ifIndexToName(ifindex), dev);
    throwsNative(() => bpf.ifNameToIndex('hypha-nope0'), { code: 'ENODEV', op: 'if_nametoindex', message: /hypha-nope0/ });
    throwsNative(() => bpf.ifIndexToName(0x7ffffff0), { code: 'ENXIO', op: 'if_indextoname' });
  });

  test('XDP native: attach, query, atomic replace, stale replace refused, detach', () => {
    assert.deepEqual(bpf.xdpQuery(ifindex), { progId: 0, mode: 'none', nativeProgId: 0, genericProgId: 0 });
    bpf.xdpAttach(ifindex, progs.xdp_pass as ProgHandle, { mode: 'native' });
    assert.deepEqual(bpf.xdpQuery(ifindex), {
      progId: id('xdp_pass'),
      mode: 'native',
      nativeProgId: id('xdp_pass'),
      genericProgId: 0,
    });

    bpf.xdpAttach(ifindex, progs.xdp_drop as ProgHandle, { mode: 'native', replaceProgId: id('xdp_pass') });
    assert.equal(bpf.xdpQuery(ifindex).progId, id('xdp_drop'));

    // replacing what is no longer attached is refused: the caller's view is stale
    throwsNative(
      () => bpf.xdpAttach(ifindex, progs.xdp_swap_mac as ProgHandle, { mode: 'native', replaceProgId: id('xdp_pass') }),
      { code: 'EEXIST', op: 'bpf_xdp_attach' },
    );
    assert.equal(bpf.xdpQuery(ifindex).progId, id('xdp_drop'));

    bpf.xdpDetach(ifindex, { mode: 'native' });
    assert.equal(bpf.xdpQuery(ifindex).mode, 'none');
    bpf.xdpDetach(ifindex, { mode: 'native' }); // detaching nothing is fine
  });

  test('XDP generic mode', () => {
    bpf.xdpAttach(ifindex, progs.xdp_pass as ProgHandle, { mode: 'generic' });
    assert.deepEqual(bpf.xdpQuery(ifindex), {
      progId: id('xdp_pass'),
      mode: 'generic',
      nativeProgId: 0,
      genericProgId: id('xdp_pass'),
    });
    bpf.xdpDetach(ifindex, { mode: 'generic' });
    assert.equal(bpf.xdpQuery(ifindex).progId, 0);
  });

  test('XDP on a missing ifindex is an errno error', () => {
    throwsNative(() => bpf.xdpAttach(0x7ffffff0, progs.xdp_pass as ProgHandle), { code: 'ENODEV', op: 'bpf_xdp_attach' });
  });

  test('TC: nothing attached yet is undefined/false, not an error', () => {
    const peerIndex = bpf.ifNameToIndex(peer as string);
    assert.equal(bpf.tcQuery(peerIndex, 'ingress'), undefined); // no clsact qdisc at all
    assert.equal(bpf.tcDetach(peerIndex, 'ingress'), false);
  });

  test('TC: attach, replace in place, second filter, detach', () => {
    bpf.tcAttach(ifindex, 'ingress', progs.tc_rewrite as ProgHandle);
    assert.deepEqual(bpf.tcQuery(ifindex, 'ingress'), { progId: id('tc_rewrite') });
    assert.equal(bpf.tcQuery(ifindex, 'egress'), undefined);

    // same handle and priority: replaced atomically, still one filter
    bpf.tcAttach(ifindex, 'ingress', progs.tc_shot as ProgHandle, { handle: 1, priority: 1 });
    assert.deepEqual(bpf.tcQuery(ifindex, 'ingress'), { progId: id('tc_shot') });
    assert.equal(tcFilters('ingress').length, 1);

    // another handle/priority is another filter
    bpf.tcAttach(ifindex, 'ingress', progs.tc_rewrite as ProgHandle, { handle: 2, priority: 2 });
    assert.deepEqual(bpf.tcQuery(ifindex, 'ingress', { handle: 2, priority: 2 }), { progId: id('tc_rewrite') });
    assert.equal(tcFilters('ingress').length, 2);

    bpf.tcAttach(ifindex, 'egress', progs.tc_rewrite as ProgHandle);
    assert.deepEqual(bpf.tcQuery(ifindex, 'egress'), { progId: id('tc_rewrite') });

    assert.equal(bpf.tcDetach(ifindex, 'ingress'), true);
    assert.equal(bpf.tcDetach(ifindex, 'ingress'), false);
    assert.equal(bpf.tcQuery(ifindex, 'ingress'), undefined);
    assert.equal(bpf.tcDetach(ifindex, 'ingress', { handle: 2, priority: 2 }), true);
    assert.equal(bpf.tcDetach(ifindex, 'egress'), true);
    assert.equal(tcFilters('ingress').length, 0);
    assert.equal(tcFilters('egress').length, 0);
  });
});
