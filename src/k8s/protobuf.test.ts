// The protobuf reader on hand-encoded messages: the JSON shape it builds
// (omitted empty values, pointer fields kept even when false or 0), what it
// skips, and the errors a damaged message gets. The same objects from a real
// API server, both ways: test/e2e/k8s-protobuf.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeObject, ENDPOINT_SLICE_LIST, ProtobufError, SERVICE_LIST, STATUS } from './protobuf.ts';

// A minimal encoder, for building inputs.
function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? b | 0x80 : b);
  } while (v);
  return Buffer.from(out);
}
const tag = (no: number, wire: number): Buffer => varint(BigInt((no << 3) | wire));
const int = (no: number, n: number): Buffer => Buffer.concat([tag(no, 0), varint(BigInt(n))]);
const bytes = (no: number, ...parts: (Buffer | string)[]): Buffer => {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
  return Buffer.concat([tag(no, 2), varint(BigInt(body.length)), body]);
};
const fixed64 = (no: number): Buffer => Buffer.concat([tag(no, 1), Buffer.alloc(8, 0xee)]);
const fixed32 = (no: number): Buffer => Buffer.concat([tag(no, 5), Buffer.alloc(4, 0xee)]);
/** The 'k8s\0' envelope: runtime.Unknown { typeMeta = 1, raw = 2 }. */
const envelope = (kind: string, raw: Buffer): Buffer =>
  Buffer.concat([Buffer.from('k8s\0', 'latin1'), bytes(1, bytes(1, 'v1'), bytes(2, kind)), bytes(2, raw), bytes(4, '')]);
const list = (items: Buffer[], rv = '42', cont = ''): Buffer => Buffer.concat([bytes(1, bytes(2, rv), bytes(3, cont)), ...items.map((i) => bytes(2, i))]);

describe('protobuf reader', () => {
  test('a Service: the fields the normalizer reads, in their JSON shape; empty value fields left out', () => {
    const port = (name: string, port: number, target: Buffer, nodePort: number) =>
      bytes(1, bytes(1, name), bytes(2, 'TCP'), int(3, port), bytes(4, target), int(5, nodePort), bytes(6, 'http'));
    const svc = Buffer.concat([
      bytes(1, bytes(1, 'web'), bytes(2, 'gen-'), bytes(3, 'shop'), bytes(5, 'uid-1'), bytes(6, '77'), bytes(8, int(1, 1_700_000_000), int(2, 5)),
        bytes(11, bytes(1, 'app'), bytes(2, 'web')), bytes(17, bytes(1, 'kubectl'))),
      bytes(2,
        port('', 80, Buffer.concat([int(1, 0), int(2, 8080)]), 0),
        port('admin', 9000, Buffer.concat([int(1, 1), bytes(3, 'admin-port')]), 30900),
        bytes(2, bytes(1, 'app'), bytes(2, 'web')), // selector: not read
        bytes(3, '10.96.0.10'), bytes(4, 'NodePort'), bytes(5, '192.0.2.1'), bytes(5, '192.0.2.2'),
        bytes(7, 'ClientIP'), bytes(11, ''), int(12, 0),
        bytes(14, bytes(1, int(1, 600))), bytes(18, '10.96.0.10'), bytes(19, 'IPv4'), bytes(22, 'Local')),
      bytes(3, bytes(1, bytes(1, bytes(1, '203.0.113.7'), bytes(3, 'VIP')), bytes(1, bytes(2, 'lb.example.')))),
    ]);
    const out = decodeObject(envelope('ServiceList', list([svc], '99', 'next')), SERVICE_LIST) as { metadata: unknown; items: Iterable<unknown> };
    assert.deepEqual(out.metadata, { resourceVersion: '99', continue: 'next' });
    assert.deepEqual([...out.items], [{
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '77', creationTimestamp: '2023-11-14T22:13:20Z' },
      spec: {
        ports: [
          { protocol: 'TCP', port: 80, targetPort: 8080 },
          { name: 'admin', protocol: 'TCP', port: 9000, targetPort: 'admin-port', nodePort: 30900 },
        ],
        clusterIP: '10.96.0.10', type: 'NodePort', externalIPs: ['192.0.2.1', '192.0.2.2'], sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, clusterIPs: ['10.96.0.10'], ipFamilies: ['IPv4'],
        internalTrafficPolicy: 'Local',
      },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.7', ipMode: 'VIP' }, { hostname: 'lb.example.' }] } },
    }]);
  });

  test('an EndpointSlice: pointer fields kept when false, 0 or empty; absent ones absent; negative int32s', () => {
    const slice = Buffer.concat([
      bytes(1, bytes(1, 's-1'), bytes(3, 'shop'), bytes(11, bytes(1, 'kubernetes.io/service-name'), bytes(2, 's')), bytes(11, bytes(1, 'x'), bytes(2, ''))),
      bytes(4, 'IPv4'),
      bytes(2, bytes(1, '10.0.0.1'), bytes(2, int(1, 0), int(3, 1)), bytes(3, 'host-a'), bytes(6, 'n1'), bytes(7, 'z1')),
      bytes(2, bytes(1, '10.0.0.2'), bytes(1, '10.0.0.3'), bytes(2)),
      bytes(2, bytes(1, '10.0.0.4'), bytes(6, '')),
      bytes(3, bytes(1, ''), bytes(2, 'UDP'), int(3, 53)),
      bytes(3, int(3, -1)),
    ]);
    const out = decodeObject(envelope('EndpointSliceList', list([slice])), ENDPOINT_SLICE_LIST) as { items: Iterable<unknown> };
    assert.deepEqual([...out.items], [{
      metadata: { name: 's-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 's', x: '' } },
      addressType: 'IPv4',
      endpoints: [
        { addresses: ['10.0.0.1'], conditions: { ready: false, terminating: true }, nodeName: 'n1' },
        { addresses: ['10.0.0.2', '10.0.0.3'], conditions: {} },
        { addresses: ['10.0.0.4'], nodeName: '' },
      ],
      ports: [{ name: '', protocol: 'UDP', port: 53 }, { port: -1 }],
    }]);
  });

  test('fields it does not know are skipped, whatever their wire type', () => {
    const svc = Buffer.concat([int(90, 123456789), fixed64(91), fixed32(92), bytes(93, 'x'.repeat(300)), bytes(1, fixed64(40), bytes(1, 'a'), int(41, 7))]);
    const out = decodeObject(envelope('ServiceList', list([svc])), SERVICE_LIST) as { items: Iterable<unknown> };
    assert.deepEqual([...out.items], [{ metadata: { name: 'a' } }]);
  });

  test('a list page reads its items as they are iterated: a damaged item throws when reached, after the ones before it', () => {
    const good = bytes(1, bytes(1, 'a'));
    const damaged = Buffer.concat([tag(1, 2), varint(50n), Buffer.from('xx')]);
    const out = decodeObject(envelope('ServiceList', list([good, damaged, good])), SERVICE_LIST) as { items: Iterable<unknown> & { length: number } };
    assert.equal(out.items.length, 3);
    const it = out.items[Symbol.iterator]();
    assert.deepEqual(it.next().value, { metadata: { name: 'a' } });
    assert.throws(() => it.next(), /runs past its message/);
  });

  test('a Status (a failed request) in the shape of its JSON', () => {
    const status = Buffer.concat([bytes(1), bytes(2, 'Failure'), bytes(3, 'services "x" not found'), bytes(4, 'NotFound'),
      bytes(5, bytes(1, 'x'), bytes(3, 'services'), bytes(4, bytes(1, 'FieldValueInvalid'), bytes(3, 'spec.ports'))), int(6, 404)]);
    assert.deepEqual(decodeObject(envelope('Status', status), STATUS), {
      status: 'Failure', message: 'services "x" not found', reason: 'NotFound', code: 404,
      details: { name: 'x', kind: 'services', causes: [{ reason: 'FieldValueInvalid', field: 'spec.ports' }] },
    });
  });

  test('a damaged message is an error that says where; nothing half-decoded is returned', () => {
    // The items of a list are read as they are iterated: an error in one is thrown then.
    const bad = (buf: Buffer, message: RegExp) => assert.throws(() => [...(decodeObject(buf, SERVICE_LIST).items as Iterable<unknown>)], (err: unknown) => {
      assert.ok(err instanceof ProtobufError, String(err));
      assert.equal(err.code, 'EPROTOBUF');
      assert.match(err.message, message);
      return true;
    });
    bad(Buffer.from('{"kind":"ServiceList"}'), /not a Kubernetes protobuf message \(starts "\{\\"ki", not "k8s\\0"\)/);
    bad(Buffer.from('k8s\0', 'latin1'), /without an object/);
    const whole = envelope('ServiceList', list([bytes(1, bytes(1, 'web'))]));
    bad(whole.subarray(0, whole.length - 4), /runs past|truncated/);
    bad(envelope('ServiceList', list([bytes(1, int(1, 5))])), /field name at byte \d+ has wire type 0, expected 2/);
    bad(envelope('ServiceList', list([Buffer.concat([tag(2, 2), Buffer.from([0x80, 0x80])])])), /truncated at byte/);
    bad(envelope('ServiceList', Buffer.concat([tag(7, 3)])), /wire type 3/);
  });
});
