import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layouts } from './abi.gen.ts';
import { CodecError, decode, encode } from './codec.ts';

test('codec: network-order addresses and ports, host-order ids, zeroed padding', () => {
  const bytes = encode(layouts.hypha_lb4_svc_key, { addr: '10.96.0.10', dport: 80, proto: 6, scope: 1, slot: 258 });
  assert.deepEqual([...bytes], [10, 96, 0, 10, 0, 80, 6, 1, 2, 1, 0, 0]);
  assert.deepEqual(decode(layouts.hypha_lb4_svc_key, bytes), { addr: '10.96.0.10', dport: 80, proto: 6, scope: 1, slot: 258 });
});

test('codec: out-of-range values name the struct and field', () => {
  assert.throws(() => encode(layouts.hypha_lb4_svc_key, { addr: '10.0.0.1', dport: 70000 }), (e: unknown) =>
    e instanceof CodecError && e.message === 'hypha_lb4_svc_key.dport: 70000 is not an integer in 0..65535');
  assert.throws(() => encode(layouts.hypha_lb4_svc_key, { addr: '10.0.0.256' }), CodecError);
});
