// Drop events when nobody reads the ring: the ring takes what fits, and every
// event it had no room for is counted (hypha_events_lost_v1), so a monitor can
// say how many it missed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as native from '../../native/index.ts';
import { ConfigFlags } from '../../src/abi/abi.gen.ts';
import { readDrops, readEventsLost } from '../../src/datapath/drops.ts';
import { svc } from '../../src/services/fixtures.ts';
import { buildPacket } from '../lib/packet.ts';
import { BpfHarness } from './harness.ts';

const CFG = { loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 };

describe('drop events with the ring full', () => {
  let h: BpfHarness;
  before(async () => {
    h = await BpfHarness.create();
    h.service(svc('empty', { clusterIPs: ['10.96.0.20'] }), []);
  });
  after(() => h?.close());

  test('events the ring has no room for are counted, none otherwise', async () => {
    const packet = buildPacket({ src: '10.244.0.5', dst: '10.96.0.20', proto: 'tcp', sport: 40000, dport: 80 });
    const lost = () => readEventsLost(h.dp.map('hypha_events_lost_v1'));
    const noBackend = () => readDrops(h.dp.map('hypha_drops_v1')).find((d) => d.reason === 'NO_BACKEND')?.packets ?? 0n;
    // Off: drops counted, no events, nothing lost.
    for (let i = 0; i < 100; i++) h.run('fromPod', packet);
    assert.equal(noBackend(), 100n);
    assert.equal(lost(), 0n);
    // On, with no reader: a 256 KiB ring takes 4 681 events of 56 bytes (48 + the 8-byte header).
    h.config({ flags: ConfigFlags.DROP_EVENTS, ...CFG });
    try {
      // One run each: a rejected packet becomes the ICMP answer, so a repeat would not drop again.
      for (let i = 0; i < 10_000; i++) h.run('fromPod', packet);
    } finally {
      h.config({ flags: 0, ...CFG });
    }
    let delivered = 0;
    const rb = native.ringbufOpen(h.dp.map('hypha_events_v1'), () => delivered++);
    try {
      for (let i = 0; i < 200; i++) {
        const before = delivered;
        await new Promise((r) => setTimeout(r, 20));
        if (delivered > 0 && delivered === before) break;
      }
    } finally {
      native.close(rb);
    }
    const l = lost();
    assert.equal(noBackend(), 10_100n, 'every drop counted');
    assert.ok(delivered > 4000 && delivered < 5000, `the ring held ${delivered} events`);
    assert.equal(l, BigInt(10_000 - delivered), `${delivered} delivered + ${l} lost`);
  });
});
