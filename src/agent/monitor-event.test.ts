// Drop events as `hypha monitor` shows them: struct hypha_drop_event from
// literal bytes, named from the agent's state, formatted one line each.
process.env.TZ = 'UTC';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AccessEvent } from '../l7/proxy.ts';
import {
  type EnrichSources, dropEventCodec, enrichDrop, enrichL7, formatLine, matchesType, monotonicToWallMs, parseMonitorType,
} from './monitor-event.ts';

// struct hypha_drop_event, 48 bytes, host order (little-endian) except the
// addresses and ports (network order).
function bytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));
}
const POLICY_INGRESS = bytes(`
  00 ca 9a 3b 00 00 00 00   12 00 00 00   07 00 00 00
  0a f4 01 05   0a f4 02 07   9c 40   00 50   06 02 00 00
  00 00 00 00   e9 03 00 00   eb 03 00 00   00 00 00 00`);
// NO_BACKEND at from-pod, UDP to a ClusterIP, frontend id 4, no identities.
const NO_BACKEND = bytes(`
  00 ca 9a 3b 00 00 00 00   03 00 00 00   05 00 00 00
  0a f4 01 05   0a 60 00 14   d4 31   00 35   11 01 00 00
  04 00 00 00   00 00 00 00   00 00 00 00   00 00 00 00`);

const sources: EnrichSources = {
  node: 'n1',
  pod: (ip) => ({ '10.244.1.5': 'x/b', '10.244.2.7': 'y/a' })[ip],
  identity: (id) => (id === 1001 ? { namespace: 'x', labels: { pod: 'b' } } : id === 1003 ? { namespace: 'y', labels: { pod: 'a' } } : id === 2 ? { reserved: 'world' } : undefined),
  service: (id) => (id === 4 ? 'default/dns:dns' : undefined),
};
// ts_ns is 1 s of CLOCK_MONOTONIC; "now" is 1.5 s at 12:00:01.623 UTC.
const WALL = monotonicToWallMs(1_000_000_000n, 1_500_000_000n, Date.UTC(2026, 11, 4, 12, 0, 1, 623));

describe('monitor events', () => {
  test('a policy drop decodes, names both pods and identities, and reads as one line', () => {
    const e = dropEventCodec.decode(POLICY_INGRESS);
    assert.deepEqual(e, {
      ts_ns: 1_000_000_000n, reason: 18, ifindex: 7, saddr: '10.244.1.5', daddr: '10.244.2.7', sport: 40000, dport: 80,
      proto: 6, hook: 2, svc_id: 0, src_identity: 1001, dst_identity: 1003,
    });
    const ev = enrichDrop(e, sources, WALL);
    assert.deepEqual(ev, {
      type: 'drop', time: '2026-12-04T12:00:01.123Z', node: 'n1', reason: 'POLICY_INGRESS', code: 18,
      description: "NetworkPolicy: the destination pod's ingress policy allows no such flow", policy: true, hook: 'to-pod', ifindex: 7, proto: 'TCP',
      src: { ip: '10.244.1.5', port: 40000, pod: 'x/b', identity: { id: 1001, namespace: 'x', labels: { pod: 'b' } } },
      dst: { ip: '10.244.2.7', port: 80, pod: 'y/a', identity: { id: 1003, namespace: 'y', labels: { pod: 'a' } } },
    });
    assert.equal(formatLine(ev),
      '12:00:01.123 POLICY_INGRESS to-pod x/b 10.244.1.5:40000 [identity 1001 x: pod=b] -> y/a 10.244.2.7:80/TCP [identity 1003 y: pod=a]  ' +
      "NetworkPolicy: the destination pod's ingress policy allows no such flow");
    assert.ok(matchesType(ev, 'policy-drop') && matchesType(ev, 'drop') && matchesType(ev, 'all'));
  });

  test('a Service drop names the Service; no identities, no pod for the ClusterIP', () => {
    const ev = enrichDrop(dropEventCodec.decode(NO_BACKEND), sources, WALL);
    assert.deepEqual([ev.reason, ev.policy, ev.hook, ev.proto, ev.service, ev.svcId, ev.src, ev.dst], [
      'NO_BACKEND', false, 'from-pod', 'UDP', 'default/dns:dns', 4, { ip: '10.244.1.5', port: 54321, pod: 'x/b' }, { ip: '10.96.0.20', port: 53 },
    ]);
    assert.equal(formatLine(ev), '12:00:01.123 NO_BACKEND from-pod x/b 10.244.1.5:54321 -> 10.96.0.20:53/UDP via default/dns:dns  reject: the Service has no ready backend');
    assert.equal(matchesType(ev, 'policy-drop'), false);
    assert.equal(matchesType(ev, 'drop'), true);
  });

  test('unknown names and codes still print; reserved and CIDR identities say so', () => {
    const b = POLICY_INGRESS.slice();
    b[8] = 99; // reason
    b[29] = 9; // hook
    b[28] = 47; // GRE: no ports
    new DataView(b.buffer).setUint32(36, 2, true); // src: world
    new DataView(b.buffer).setUint32(40, (1 << 24) + 3, true); // dst: a CIDR identity
    const ev = enrichDrop(dropEventCodec.decode(b), { ...sources, pod: () => undefined }, WALL);
    assert.deepEqual([ev.reason, ev.description, ev.hook, ev.proto, ev.src, ev.dst], [
      'UNKNOWN_99', '', 'hook-9', '47', { ip: '10.244.1.5', identity: { id: 2, reserved: 'world' } }, { ip: '10.244.2.7', identity: { id: 16777219, cidr: true } },
    ]);
    assert.equal(formatLine(ev), '12:00:01.123 UNKNOWN_99 hook-9 10.244.1.5 [identity 2 reserved:world] -> 10.244.2.7/47 [identity 16777219 cidr]');
  });

  test('lost and start lines', () => {
    assert.equal(formatLine({ lost: 3, cause: 'client' }), '... 3 events not sent: this monitor read too slowly');
    assert.equal(formatLine({ lost: 1, cause: 'ring' }), "... 1 drop event lost: the datapath's ring buffer was full");
    assert.equal(formatLine({ monitor: { node: 'n1', type: 'policy-drop' } }), 'listening for policy-drop events on node n1 (Ctrl-C to stop)');
    assert.equal(formatLine({ monitor: { node: 'n1', type: 'l7' } }), 'listening for l7 (HTTP access) events on node n1 (Ctrl-C to stop)');
  });

  test('the type: drop by default, a bad one named with the field', () => {
    assert.equal(parseMonitorType(undefined), 'drop');
    assert.equal(parseMonitorType(''), 'drop');
    assert.equal(parseMonitorType('all'), 'all');
    assert.equal(parseMonitorType('l7'), 'l7');
    assert.throws(() => parseMonitorType('drops'), { name: 'MonitorInputError', field: 'type', message: 'type "drops" is not one of drop, policy-drop, l7, all' });
  });

  // What the L7 proxy hands onAccess: the flow's parties (pods when it knew them) and the judgement.
  const access = (o: Partial<AccessEvent> = {}): AccessEvent => ({
    time: '2026-12-04T12:00:01.123Z',
    src: { ip: '10.244.1.5', port: 40000, identity: 1001 },
    dst: { ip: '10.244.2.7', port: 80, identity: 1003, pod: 'y/a' },
    method: 'GET', path: '/api/v1', host: 'web.y', verdict: 'allow', status: 200,
    policy: 'hnp:y/web', rule: 'ingress[0].ports[0].http[1]', latencyMs: 1.234,
    ...o,
  });

  test('an L7 access event names both pods and identities, and reads as one line', () => {
    const ev = enrichL7(access(), sources);
    assert.deepEqual(ev, {
      type: 'l7', time: '2026-12-04T12:00:01.123Z', node: 'n1',
      src: { ip: '10.244.1.5', port: 40000, pod: 'x/b', identity: { id: 1001, namespace: 'x', labels: { pod: 'b' } } },
      dst: { ip: '10.244.2.7', port: 80, pod: 'y/a', identity: { id: 1003, namespace: 'y', labels: { pod: 'a' } } },
      method: 'GET', path: '/api/v1', host: 'web.y', verdict: 'allow', status: 200,
      policy: 'hnp:y/web', rule: 'ingress[0].ports[0].http[1]', latencyMs: 1.234,
    });
    assert.equal(formatLine(ev),
      '12:00:01.123 L7 ALLOW 200 x/b 10.244.1.5:40000 [identity 1001 x: pod=b] -> y/a 10.244.2.7:80 [identity 1003 y: pod=a]  ' +
      'GET web.y/api/v1  allowed by hnp:y/web ingress[0].ports[0].http[1]  1.2 ms');
    assert.deepEqual((['drop', 'policy-drop', 'l7', 'all'] as const).map((t) => matchesType(ev, t)), [false, false, true, true]);
  });

  test('L7 denials, plain L3/L4 allows and the proxy\'s own answers say which they are', () => {
    const line = (o: Partial<AccessEvent>) => formatLine(enrichL7(access(o), sources)).split('  ').slice(1).join('  ');
    assert.equal(line({ path: '/admin', verdict: 'deny', status: 403, rule: undefined, latencyMs: 0.25 }), 'GET web.y/admin  denied: no rule of hnp:y/web allows it  0.3 ms');
    assert.equal(line({ verdict: 'deny', status: 403, policy: undefined, rule: undefined }), 'GET web.y/api/v1  denied: no L7 policy covers this flow  1.2 ms');
    assert.equal(line({ policy: undefined, rule: undefined, latencyMs: 12.6 }), 'GET web.y/api/v1  allowed: plain L3/L4 allows (every request)  13 ms');
    assert.equal(line({ verdict: 'error', status: 503, policy: undefined, rule: undefined }), 'GET web.y/api/v1  answered by the proxy: upstream unreachable  1.2 ms');
    assert.equal(line({ method: '', path: '', host: '', verdict: 'error', status: 431, policy: undefined, rule: undefined }), '(no request line)  answered by the proxy: headers too large  1.2 ms');
    assert.match(formatLine(enrichL7(access({ verdict: 'deny', status: 403 }), sources)), /^12:00:01\.123 L7 DENY 403 x\/b /);
  });

  test('a drop goes to drop and all, never to l7', () => {
    const ev = enrichDrop(dropEventCodec.decode(POLICY_INGRESS), sources, WALL);
    assert.deepEqual((['drop', 'policy-drop', 'l7', 'all'] as const).map((t) => matchesType(ev, t)), [true, true, false, true]);
  });

  test('a short record is refused with the layout named', () => {
    assert.throws(() => dropEventCodec.decode(POLICY_INGRESS.subarray(0, 40)), /hypha_drop_event: need 48 bytes, have 40/);
  });
});
