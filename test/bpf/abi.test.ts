// The TypeScript codecs are generated from BTF; these checks make sure nobody
// edits either side alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ABI_OUTPUT, abiModel, generate, readBtf } from '../../scripts/gen-abi.ts';
import { layouts, maps } from '../../src/abi/abi.gen.ts';

const objects = ['tc/from_pod.o', 'tc/to_pod.o', 'tc/from_netdev.o', 'xdp/nodeport.o'].map((o) => path.resolve('bpf/build', o));

test('src/abi/abi.gen.ts is what bpf/build/abi.o generates (run `make abi` after changing a header)', () => {
  assert.equal(readFileSync(ABI_OUTPUT, 'utf8'), generate());
});

test('every program object defines its maps exactly as the generated ABI says', () => {
  for (const obj of objects) {
    const model = abiModel(readBtf(obj));
    assert.ok(model.maps.length > 0, `${obj} defines maps`);
    for (const m of model.maps) {
      const want = maps[m.name as keyof typeof maps];
      assert.ok(want, `${obj}: map ${m.name} is in the ABI`);
      assert.deepEqual(m, { ...want }, `${obj}: map ${m.name}`);
    }
    for (const s of model.structs) {
      const want = layouts[s.name as keyof typeof layouts];
      if (want) assert.deepEqual(s, JSON.parse(JSON.stringify(want)), `${obj}: struct ${s.name}`);
    }
  }
});
