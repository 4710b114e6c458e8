import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeEndpointSlice, normalizeService } from './normalize.ts';
import { endpointsOf, serviceKey } from './model.ts';

const base = {
  apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' },
  spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
};
const withPorts = (ports: unknown[], extra: object = {}): unknown => ({ ...base, spec: { ...base.spec, ports, ...extra } });

describe('normalizeService', () => {
  test('a plain ClusterIP Service', () => {
    const { value, problems } = normalizeService(base);
    assert.deepEqual(problems, []);
    assert.equal(value?.namespace, 'shop');
    assert.deepEqual(value?.clusterIPs, ['10.96.0.10']);
    assert.deepEqual(value?.ports, [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }]);
    assert.equal(value?.affinityTimeoutSeconds, 10800);
  });

  test('what repeats is shared: empty lists are one frozen array, equal port lists one array; values read back as given', () => {
    const parsed = (raw: unknown): unknown => JSON.parse(JSON.stringify(raw));
    const a = normalizeService(parsed({ ...base, spec: { ...base.spec, sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'UDP' }] } })).value!;
    const b = normalizeService(parsed({ ...base, metadata: { name: 'other', namespace: 'shop' }, spec: { ...base.spec, clusterIP: '10.96.0.11', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'UDP' }] } })).value!;
    assert.equal(a.externalIPs, b.loadBalancerIPs);
    assert.ok(Object.isFrozen(a.externalIPs) && a.externalIPs.length === 0);
    assert.equal(a.ports, b.ports);
    assert.deepEqual(b.clusterIPs, ['10.96.0.11']);
    assert.deepEqual([a.sessionAffinity, a.ports[0]!.protocol], ['ClientIP', 'UDP']);
    const s = normalizeEndpointSlice(parsed({ metadata: { name: 'web-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }] })).value!;
    assert.equal(s.addressType, 'IPv4');
    assert.equal(serviceKey(a.namespace, a.name), 'shop/web');
  });

  const bad: [string, unknown, string][] = [
    ['invalid cluster IP', { ...base, spec: { ...base.spec, clusterIP: '10.96.0.300' } }, 'Service shop/web: spec.clusterIP: "10.96.0.300" is not a valid IP address'],
    ['port 0', withPorts([{ name: 'a', port: 0 }]), 'Service shop/web: spec.ports[0].port: 0 is not a valid port number (1-65535)'],
    ['port 70000', withPorts([{ name: 'a', port: 70000 }]), 'Service shop/web: spec.ports[0].port: 70000 is not a valid port number (1-65535)'],
    ['nodePort 70000', withPorts([{ name: 'a', port: 80, nodePort: 70000 }], { type: 'NodePort' }), 'spec.ports[0].nodePort: 70000 is not a valid port number'],
    ['bad protocol', withPorts([{ name: 'a', port: 80, protocol: 'ICMP' }]), 'spec.ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP'],
    ['unnamed port among several', withPorts([{ name: 'a', port: 80 }, { port: 81 }]), 'spec.ports[1].name: (missing) is required when a Service has several ports'],
    ['duplicate port', withPorts([{ name: 'a', port: 80 }, { name: 'b', port: 80 }]), 'spec.ports[1].port: 80 duplicates another TCP port'],
    ['bad targetPort', withPorts([{ name: 'a', port: 80, targetPort: 0 }]), 'spec.ports[0].targetPort: 0 is neither a port number'],
    ['bad external IP', { ...base, spec: { ...base.spec, externalIPs: ['1.2.3.4', 'nope'] } }, 'spec.externalIPs[1]: "nope" is not a valid IP address'],
    ['bad affinity timeout', { ...base, spec: { ...base.spec, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } } }, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not an integer in 1..86400'],
    ['bad traffic policy', { ...base, spec: { ...base.spec, externalTrafficPolicy: 'Nearby' } }, 'spec.externalTrafficPolicy: "Nearby" is not one of Cluster, Local'],
    ['no name', { spec: {} }, 'metadata.name: (missing) is required'],
  ];
  for (const [name, raw, message] of bad) {
    test(`rejects ${name}, naming the field and value`, () => {
      const { value, problems } = normalizeService(raw);
      assert.equal(value, undefined);
      assert.ok(problems.some((p) => p.message.includes(message)), `got: ${problems.map((p) => p.message).join(' | ')}`);
    });
  }

  test('headless and IPv6 cluster IPs are accepted and carry no IPv4 frontend', () => {
    assert.equal(normalizeService({ ...base, spec: { ...base.spec, clusterIP: 'None' } }).value?.headless, true);
    const v6 = normalizeService({ ...base, spec: { ...base.spec, clusterIPs: ['fd00::10', '10.96.0.11'] } });
    assert.deepEqual(v6.value?.clusterIPs, ['10.96.0.11']);
  });

  test('IPv6-only Services are marked (ipFamilies [IPv6], or only IPv6 cluster IPs); dual-stack keeps its IPv4 family', () => {
    const only = normalizeService({ ...base, spec: { ...base.spec, clusterIP: 'fd00::10', clusterIPs: ['fd00::10'], ipFamilies: ['IPv6'] } });
    assert.deepEqual([only.value?.clusterIPs, only.value?.ipv6ClusterIPs, only.value?.ipv6Only], [[], ['fd00::10'], true]);
    const unallocated = normalizeService({ ...base, spec: { ports: base.spec.ports, ipFamilies: ['IPv6'] } });
    assert.equal(unallocated.value?.ipv6Only, true);
    const dual = normalizeService({ ...base, spec: { ...base.spec, clusterIPs: ['10.96.0.10', 'fd00::10'], ipFamilies: ['IPv4', 'IPv6'] } });
    assert.deepEqual([dual.value?.clusterIPs, dual.value?.ipv6Only], [['10.96.0.10'], undefined]);
    assert.equal(normalizeService({ ...base, spec: { ...base.spec, clusterIP: 'None', ipFamilies: ['IPv6'] } }).value?.ipv6Only, undefined, 'headless: DNS serves it');
    assert.match(normalizeService({ ...base, spec: { ...base.spec, ipFamilies: ['IPv7'] } }).problems[0]?.message ?? '', /spec\.ipFamilies\[0\]: "IPv7" is not one of IPv4, IPv6/);
  });

  test('the creation time is kept (it orders two Services claiming one frontend)', () => {
    const { value } = normalizeService({ ...base, metadata: { ...base.metadata, creationTimestamp: '2024-05-01T10:00:00Z' } });
    assert.equal(value?.created, '2024-05-01T10:00:00Z');
    assert.equal(normalizeService(base).value?.created, '');
  });

  test('LoadBalancer status IPs and named target ports', () => {
    const { value } = normalizeService({
      ...base,
      spec: { ...base.spec, type: 'LoadBalancer', ports: [{ name: 'http', port: 80, targetPort: 'web', nodePort: 30080 }] },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }, { hostname: 'lb.example' }] } },
    });
    assert.deepEqual(value?.loadBalancerIPs, ['203.0.113.7']);
    assert.equal(value?.ports[0]?.targetPort, 'web');
    assert.equal(value?.ports[0]?.nodePort, 30080);
  });
});

describe('normalizeEndpointSlice', () => {
  const sliceRaw = (endpoints: unknown[], ports: unknown[] = [{ name: 'http', port: 8080 }]): unknown => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'web-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    ports, endpoints,
  });

  test('conditions unset: ready and serving true, terminating false (discovery/v1, as kube-proxy reads them)', () => {
    const { value, problems } = normalizeEndpointSlice(sliceRaw([
      { addresses: ['10.0.0.1'] },
      { addresses: ['10.0.0.2'], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ['10.0.0.3'], conditions: { ready: false } },
      // A lone terminating endpoint whose serving condition was never set: still serving.
      { addresses: ['10.0.0.4'], conditions: { ready: false, terminating: true } },
      { addresses: ['10.0.0.5'], conditions: { ready: null, serving: null, terminating: null } },
      { addresses: ['10.0.0.6'], conditions: { ready: false, serving: false, terminating: true } },
    ]));
    assert.deepEqual(problems, []);
    assert.deepEqual(endpointsOf(value!).map((e) => [e.address, e.ready, e.serving, e.terminating]), [
      ['10.0.0.1', true, true, false], ['10.0.0.2', false, true, true], ['10.0.0.3', false, true, false],
      ['10.0.0.4', false, true, true], ['10.0.0.5', true, true, false], ['10.0.0.6', false, false, true],
    ]);
  });

  test('a condition that is not a boolean drops that endpoint, naming the field', () => {
    const { value, problems } = normalizeEndpointSlice(sliceRaw([{ addresses: ['10.0.0.1'], conditions: { serving: 'yes' } }, { addresses: ['10.0.0.2'] }]));
    assert.deepEqual(endpointsOf(value!).map((e) => e.address), ['10.0.0.2']);
    assert.equal(problems[0]?.message, 'EndpointSlice shop/web-1: endpoints[0].conditions.serving: "yes" is not a boolean');
  });

  test('an endpoint address that is not an IP drops that endpoint only, and says which', () => {
    const { value, problems } = normalizeEndpointSlice(sliceRaw([{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.x'] }]));
    assert.equal(endpointsOf(value!).length, 1);
    assert.equal(problems[0]?.message, 'EndpointSlice shop/web-1: endpoints[1].addresses[0]: "10.0.0.x" is not an IPv4 address');
  });

  test('a port out of range drops that port, and says which', () => {
    const { value, problems } = normalizeEndpointSlice(sliceRaw([{ addresses: ['10.0.0.1'] }], [{ name: 'http', port: 70000 }]));
    assert.equal(value?.ports.length, 0);
    assert.match(problems[0]?.message ?? '', /ports\[0\]\.port: 70000 is not a valid port number/);
  });

  test('a slice without the service-name label is ignored without a problem (kube-proxy skips it too)', () => {
    for (const labels of [undefined, {}, { 'kubernetes.io/service-name': '' }, { app: 'web' }]) {
      const n = normalizeEndpointSlice({ metadata: { name: 'x', namespace: 'shop', ...(labels ? { labels } : {}) }, addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }] });
      assert.equal(n.value, undefined);
      assert.deepEqual(n.problems, []);
      assert.equal(n.ignored, 'EndpointSlice shop/x has no kubernetes.io/service-name label');
    }
  });
});
