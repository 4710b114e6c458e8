import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProcRoutes } from './endpoints.ts';

test('parseProcRoutes: little-endian hex addresses and masks', () => {
  const text = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'lxc0a1b2c3d4e5\t0101F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0',
    'eth0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
  ].join('\n');
  assert.deepEqual(parseProcRoutes(text), [
    { ifname: 'eth0', destination: '0.0.0.0', prefixLength: 0 },
    { ifname: 'lxc0a1b2c3d4e5', destination: '10.244.1.1', prefixLength: 32 },
    { ifname: 'eth0', destination: '192.168.77.0', prefixLength: 24 },
  ]);
});
