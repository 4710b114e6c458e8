// Upgrading from the per-CPU-LRU conntrack map: the loader replaces the pin
// (libbpf cannot reuse a map whose flags differ) and carries every entry
// over, so open flows keep their translation across the upgrade.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as native from '../../native/index.ts';
import { CtDir } from '../../src/abi/abi.gen.ts';
import { Datapath } from '../../src/datapath/loader.ts';
import { ctEntry, ctKey } from './harness.ts';

test('a pinned conntrack map with per-CPU LRU lists is replaced by a shared-LRU one holding the same entries', async () => {
  const pinRoot = `/sys/fs/bpf/hypha-test-ctup-${process.pid}`;
  const size = 4096;
  try {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(pinRoot, { recursive: true });
    const old = native.mapCreate(native.constants.mapTypes.LRU_HASH, ctKey.layout.size, ctEntry.layout.size, size, { name: 'hypha_ct4_v1', flags: 1 << 1 });
    const flows = [40000, 40001, 40002].map((sport) => ({
      key: ctKey.encode({ saddr: '10.244.0.5', daddr: '10.96.0.10', sport, dport: 80, proto: 6, dir: CtDir.SERVICE }),
      value: ctEntry.encode({ nat_addr: '10.244.0.11', nat_addr2: '0.0.0.0', nat_port: 8080, nat_port2: sport, lb_gen: 0, pol_gen: 0, flags: 8, svc_id: 1, backend_id: 2, expires: 123456 }),
    }));
    for (const f of flows) native.mapUpdate(old, f.key, f.value);
    native.pin(old, `${pinRoot}/hypha_ct4_v1`);
    native.close(old);

    const dp = await Datapath.load({ pinRoot, mapSizes: { services: 1024, backends: 1024, affinity: 1024, ct: size } });
    try {
      const ct = dp.map('hypha_ct4_v1');
      assert.equal(native.mapInfo(ct).flags & (1 << 1), 0, 'one shared LRU list');
      for (const f of flows) assert.deepEqual(native.mapLookup(ct, f.key), f.value);
    } finally {
      dp.close();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});

test('a pinned preallocated names map (an older build) is replaced by one without preallocation, which also survives a growth', async () => {
  const pinRoot = `/sys/fs/bpf/hypha-test-namesup-${process.pid}`;
  try {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(pinRoot, { recursive: true });
    const old = native.mapCreate(native.constants.mapTypes.HASH, 4, 120, 1024, { name: 'hypha_lb4_names_v1', flags: 0 });
    native.mapUpdate(old, Buffer.from([1, 0, 0, 0]), Buffer.alloc(120, 0x61));
    native.pin(old, `${pinRoot}/hypha_lb4_names_v1`);
    native.close(old);

    const dp = await Datapath.load({ pinRoot, mapSizes: { affinity: 1024, ct: 4096 }, initialSizes: { services: 1024, backends: 1024 } });
    try {
      const names = dp.map('hypha_lb4_names_v1');
      assert.equal(native.mapInfo(names).flags & 1, 1, 'BPF_F_NO_PREALLOC');
      assert.equal(native.mapDump(names).count, 0, 'the old names went with the old map (the first sync writes them)');
      await dp.grow({ services: 4096 }, { reattach: async () => {} });
      const grown = native.mapInfo(dp.map('hypha_lb4_names_v1'));
      assert.equal(grown.maxEntries, 4096);
      assert.equal(grown.flags & 1, 1, 'a growth keeps the flag');
    } finally {
      dp.close();
    }
    // The next start adopts the pin as it is.
    const again = await Datapath.load({ pinRoot, mapSizes: { affinity: 1024, ct: 4096 } });
    again.close();
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
  }
});
