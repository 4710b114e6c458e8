import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PeerInputError, applyEndpointChange, isPeerInputError, normalizeOptions, normalizeServices, updatedServices } from './peer-service.ts';

describe('input validation', () => {
  const good = { namespace: 'default', name: 'svc-1', portName: 'http', protocol: 'TCP' as const, clusterIP: '10.96.0.10', port: 80, endpoints: [] };

  test('names the field and the value', () => {
    const cases: [unknown, string][] = [
      [{ ...good, clusterIP: '10.96.0.300' }, 'services[0].clusterIP'],
      [{ ...good, port: 0 }, 'services[0].port'],
      [{ ...good, nodePort: 70000 }, 'services[0].nodePort'],
      [{ ...good, protocol: 'SCTP' }, 'services[0].protocol'],
      [{ ...good, name: 'Svc_1' }, 'services[0].name'],
      [{ ...good, endpoints: [{ ip: '10.0.0.1', port: 80 }, { ip: 'ten', port: 80 }] }, 'services[0].endpoints[1].ip'],
      [{ ...good, endpoints: [{ ip: '10.0.0.1', port: 80 }, { ip: '10.0.0.1', port: 80 }] }, 'services[0].endpoints[1]'],
    ];
    for (const [svc, field] of cases) {
      assert.throws(
        () => normalizeServices([svc as typeof good]),
        (err: unknown) => isPeerInputError(err) && err.field === field && err.message.startsWith(field),
        field,
      );
    }
  });

  test('rejects duplicate service ports and bad options', () => {
    assert.throws(() => normalizeServices([good, { ...good }]), (err: unknown) => isPeerInputError(err) && err.field === 'services[1]');
    assert.throws(
      () => normalizeOptions({ clusterCIDR: '10.0.0.0/33' }),
      (err: unknown) => err instanceof PeerInputError && err.field === 'options.clusterCIDR' && err.value === '10.0.0.0/33',
    );
    assert.throws(() => normalizeOptions({ clusterCIDR: '10.0.0.0/8', masqueradeBit: 32 }), (err: unknown) => isPeerInputError(err) && err.field === 'options.masqueradeBit');
    assert.throws(() => normalizeOptions({ clusterCIDR: '10.0.0.0/8', nodeIPs: ['::1'] }), (err: unknown) => isPeerInputError(err) && err.field === 'options.nodeIPs[0]');
  });

  test('endpoints are ordered by their "ip:port" bytes, like kube-proxy (":" sorts after digits)', () => {
    const [s] = normalizeServices([{ ...good, endpoints: [{ ip: '10.0.0.2', port: 80 }, { ip: '10.0.0.10', port: 80 }, { ip: '10.0.0.1', port: 80 }] }]);
    assert.deepEqual(s?.endpoints.map((e) => e.str), ['10.0.0.10:80', '10.0.0.1:80', '10.0.0.2:80']);
  });

  test('applyEndpointChange does not modify its input', () => {
    const svcs = [{ ...good, endpoints: [{ ip: '10.0.0.1', port: 80 }] }];
    const after = applyEndpointChange(svcs, { service: 0, endpoint: 0, to: { ip: '10.0.0.9', port: 81 } });
    assert.deepEqual(svcs[0]?.endpoints, [{ ip: '10.0.0.1', port: 80 }]);
    assert.deepEqual(after[0]?.endpoints, [{ ip: '10.0.0.9', port: 81 }]);
    assert.throws(() => applyEndpointChange(svcs, { service: 1, endpoint: 0, to: { ip: '10.0.0.9', port: 81 } }), (err: unknown) => isPeerInputError(err) && err.field === 'change.service');
  });
});

describe('updatedServices', () => {
  test('names the Services whose ports or endpoints changed, all ports of a Service together', () => {
    const a = { namespace: 'ns', name: 'a', portName: 'http', protocol: 'TCP' as const, clusterIP: '10.96.0.1', port: 80, endpoints: [{ ip: '10.1.0.1', port: 80 }] };
    const b = { ...a, name: 'b', clusterIP: '10.96.0.2' };
    const before = normalizeServices([a, b]);
    assert.deepEqual([...updatedServices(before, before)], []);
    assert.deepEqual([...updatedServices(before, normalizeServices([a, { ...b, endpoints: [{ ip: '10.1.0.2', port: 80 }] }]))], ['ns/b']);
    // endpoint order does not matter
    const two = normalizeServices([{ ...a, endpoints: [{ ip: '10.1.0.1', port: 80 }, { ip: '10.1.0.2', port: 80 }] }]);
    const swapped = normalizeServices([{ ...a, endpoints: [{ ip: '10.1.0.2', port: 80 }, { ip: '10.1.0.1', port: 80 }] }]);
    assert.deepEqual([...updatedServices(two, swapped)], []);
    assert.deepEqual([...updatedServices(before, normalizeServices([a]))], ['ns/b']);
  });
});
