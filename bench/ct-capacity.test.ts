// bench-ct's measurement on small maps (run by `make test-bench-peers`): the
// flow tuples, the per-CPU share arithmetic, and in a real kernel that the
// shared-LRU map keeps every flow where the per-CPU-LRU build keeps one CPU's
// share, that a flow which lost an entry is counted as broken, and that the
// netfilter peer counts the flows its namespace tracks. The process pins all
// its threads to one CPU for the kernel tests (as bench-ct does) and puts its
// affinity back afterwards.
//
// Root only for the kernel tests (programs, /sys/fs/bpf pins, namespaces).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import * as native from '../native/index.ts';
import { CtDir, layouts } from '../src/abi/abi.gen.ts';
import { codec } from '../src/abi/codec.ts';
import { Topology } from '../test/e2e/lib/topology.ts';
import {
  FIRST_PORT, PERCPU_OBJECT_DIR, PORTS_PER_CLIENT, VIP, allowedCpus, cpuListCount, flowTuple, openHyphaFlows, openNfFlows,
  perCpuShare, possibleCpus,
} from './ct-capacity.ts';

const isRoot = process.getuid?.() === 0;

describe('arithmetic', () => {
  test('flow tuples are distinct and follow synflows.c: PORTS_PER_CLIENT ports per address', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3 * PORTS_PER_CLIENT; i += 7) {
      const t = flowTuple(i);
      const key = `${t.saddr}:${t.sport}`;
      assert.ok(!seen.has(key), key);
      seen.add(key);
    }
    assert.deepEqual(flowTuple(0), { saddr: '10.244.2.1', sport: FIRST_PORT });
    assert.deepEqual(flowTuple(PORTS_PER_CLIENT - 1), { saddr: '10.244.2.1', sport: FIRST_PORT + PORTS_PER_CLIENT - 1 });
    assert.deepEqual(flowTuple(PORTS_PER_CLIENT), { saddr: '10.244.2.2', sport: FIRST_PORT });
  });

  test('a per-CPU LRU map gives each CPU max_entries / CPUs, rounded up to a multiple of the CPUs', () => {
    assert.equal(perCpuShare(262144, 64), 4096);
    assert.equal(perCpuShare(262144, 2), 131072);
    assert.equal(perCpuShare(262144, 3), 87382); // 262146 / 3
    assert.equal(cpuListCount('0-1'), 2);
    assert.equal(cpuListCount('0-3,8,10-11\n'), 7);
    assert.throws(() => cpuListCount('0-1,x'), /part "x"/);
  });
});

describe('in the kernel', { skip: !isRoot && 'needs root' }, () => {
  let original = '';
  const cpus = isRoot ? possibleCpus() : 1;
  const pinBase = `/sys/fs/bpf/hypha-test-ctcap-${process.pid}`;
  before(() => {
    assert.ok(existsSync(`${PERCPU_OBJECT_DIR}/tc/from_pod.o`), `${PERCPU_OBJECT_DIR} is built by make test-bench-peers`);
    original = allowedCpus();
    const cpu = original.split(/[-,]/)[0]!;
    const r = spawnSync('taskset', ['-a', '-p', '-c', cpu, String(process.pid)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(allowedCpus(), cpu);
  });
  after(() => {
    if (original) spawnSync('taskset', ['-a', '-p', '-c', original, String(process.pid)]);
  });

  // A map of 1024 entries per possible CPU: with per-CPU lists one CPU's
  // share is 1024 entries (512 flows); 800 flows (1600 entries) fit the
  // whole map when its list is shared. With one possible CPU both are the
  // same map and the contrast is skipped.
  const share = 1024;
  const flows = 800;
  const contrast = cpus >= 2 || 'one possible CPU: a per-CPU share is the whole map';

  test('the shared LRU keeps every flow on one CPU; a flow that lost its SERVICE entry counts as broken', async () => {
    const ctKey = codec<Record<string, unknown>>(layouts.hypha_ct4_key);
    const r = await openHyphaFlows({
      flows, ctEntries: share * cpus, pinRoot: `${pinBase}-shared`,
      beforeCount: (ct) => {
        const { saddr, sport } = flowTuple(7);
        assert.ok(native.mapDelete(ct, ctKey.encode({ saddr, daddr: VIP, sport, dport: 80, proto: 6, dir: CtDir.SERVICE })));
      },
    });
    assert.equal(r.perCpuLru, false);
    assert.equal(r.mapEntries, share * cpus);
    assert.deepEqual({ kept: r.kept, half: r.half, lost: r.lost, entries: r.entries }, { kept: flows - 1, half: 1, lost: 0, entries: 2 * flows - 1 });
  });

  test('per-CPU LRU lists keep one CPU\'s share of the flows, each with both entries', { skip: contrast !== true && contrast }, async () => {
    const r = await openHyphaFlows({ flows, ctEntries: share * cpus, objectDir: PERCPU_OBJECT_DIR, pinRoot: `${pinBase}-percpu` });
    assert.equal(r.perCpuLru, true);
    assert.ok(r.entries <= share, `${r.entries} entries: more than one CPU's share ${share}`);
    assert.ok(r.kept <= share / 2 && r.kept >= share / 2 - 8, `kept ${r.kept}, one CPU holds ${share / 2} flows`);
    assert.ok(r.half <= 4, `${r.half} half flows`);
  });

  test('netfilter conntrack behind kube-proxy\'s nftables rules tracks every flow, translated to a backend', async () => {
    const topo = await Topology.create({ name: 'ctcap-test' });
    try {
      const r = await openNfFlows(topo, flows);
      assert.deepEqual({ kept: r.kept, count: r.count, sendFailed: r.sendFailed }, { kept: flows, count: flows, sendFailed: 0 });
    } finally {
      await topo.destroy();
    }
  });
});
