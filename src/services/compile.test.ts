import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CidrSet } from './cidr-set.ts';
import { DEFAULT_LIMITS, REASON_IPV6, REASON_NO_NODE_ADDRESS, SCOPE_EXTERNAL, SCOPE_INTERNAL, compileService, entriesUpperBound } from './compile.ts';
import { entriesNeeded } from './lb-table.ts';
import { slice, svc } from './fixtures.ts';
import { normalizeEndpointSlice } from './normalize.ts';

const node = { name: 'node-a', addresses: ['192.168.77.10'] };

describe('compileService', () => {
  test('ClusterIP: one frontend, internal scope, ready backends in slots', () => {
    const c = compileService(svc('web'), [slice('web', ['10.244.0.3', '10.244.0.2'])], node);
    assert.equal(c.frontends.length, 1);
    const f = c.frontends[0]!;
    assert.equal(f.key, '10.96.0.10:80/TCP');
    assert.deepEqual(f.scopes.map((s) => [s.scope, s.slots]), [[SCOPE_INTERNAL, ['10.244.0.2:8080', '10.244.0.3:8080']]]);
    assert.deepEqual(c.vips, ['10.96.0.10']);
  });

  test('no endpoints: the frontend exists with no slots (it rejects)', () => {
    const c = compileService(svc('web'), [], node);
    assert.deepEqual(c.frontends[0]?.scopes[0]?.slots, []);
  });

  test('terminating endpoints take no new flows but stay known as backends', () => {
    const c = compileService(svc('web'), [slice('web', ['10.0.0.1', { ip: '10.0.0.2', ready: false, serving: true, terminating: true }])], node);
    const f = c.frontends[0]!;
    assert.deepEqual(f.scopes[0]?.slots, ['10.0.0.1:8080']);
    assert.deepEqual(f.backends.map((b) => [b.key, b.terminating]), [['10.0.0.1:8080', false], ['10.0.0.2:8080', true]]);
  });

  test('only terminating endpoints left: they serve (graceful termination fallback)', () => {
    const c = compileService(svc('web'), [slice('web', [{ ip: '10.0.0.2', ready: false, serving: true, terminating: true }])], node);
    assert.deepEqual(c.frontends[0]?.scopes[0], { scope: 0, slots: ['10.0.0.2:8080'], localOnly: false, terminatingFallback: true });
  });

  test('not-ready, not-serving endpoints are ignored', () => {
    const c = compileService(svc('web'), [slice('web', [{ ip: '10.0.0.9', ready: false, serving: false }])], node);
    assert.deepEqual(c.frontends[0]?.backends, []);
  });

  test('a lone terminating endpoint with serving unset (as the API server stores it) takes the flows', () => {
    const raw = {
      metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: ['10.0.0.2'], conditions: { ready: false, terminating: true }, nodeName: 'node-a' }],
    };
    const sl = normalizeEndpointSlice(raw).value!;
    const c = compileService(svc('web'), [sl], node);
    assert.deepEqual(c.frontends[0]?.scopes[0], { scope: 0, slots: ['10.0.0.2:8080'], localOnly: false, terminatingFallback: true });
  });

  test('an endpoint neither ready nor terminating is no backend, even serving (kube-proxy\'s rule)', () => {
    const c = compileService(svc('web'), [slice('web', ['10.0.0.1', { ip: '10.0.0.9', ready: false, serving: true, terminating: false }])], node);
    assert.deepEqual(c.frontends[0]?.backends.map((b) => b.key), ['10.0.0.1:8080']);
  });

  test('several slices merge; an endpoint in two slices counts once', () => {
    const a = slice('web', ['10.0.0.1', '10.0.0.2'], { name: 'web-a' });
    const b = slice('web', ['10.0.0.2', '10.0.0.3'], { name: 'web-b' });
    const c = compileService(svc('web'), [a, b], node);
    assert.deepEqual(c.frontends[0]?.scopes[0]?.slots, ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  test('several ports: each finds its endpoints by port name (named targetPorts resolved by the slice)', () => {
    const s = svc('web', {
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 'web', nodePort: 0 },
        { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 0 },
      ],
    });
    const sl = slice('web', ['10.0.0.1'], { ports: [{ name: 'http', protocol: 'TCP', port: 8081 }, { name: 'dns', protocol: 'UDP', port: 5353 }] });
    const c = compileService(s, [sl], node);
    assert.deepEqual(c.frontends.map((f) => [f.key, f.backends.map((b) => b.key)]), [
      ['10.96.0.10:80/TCP', ['10.0.0.1:8081']],
      ['10.96.0.10:53/UDP', ['10.0.0.1:5353']],
    ]);
  });

  test('NodePort with externalTrafficPolicy Local: outside traffic only to local endpoints, pods to all', () => {
    const s = svc('web', { type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
    const c = compileService(s, [slice('web', [{ ip: '10.0.0.1', node: 'node-a' }, { ip: '10.0.1.1', node: 'node-b' }])], node);
    const np = c.frontends.find((f) => f.kind === 'NodePort')!;
    assert.equal(np.key, '192.168.77.10:30080/TCP');
    const ext = np.scopes.find((x) => x.scope === SCOPE_EXTERNAL)!;
    const int = np.scopes.find((x) => x.scope === SCOPE_INTERNAL)!;
    assert.deepEqual([ext.slots, ext.localOnly], [['10.0.0.1:8080'], true]);
    assert.deepEqual(int.slots, ['10.0.0.1:8080', '10.0.1.1:8080']);
    assert.deepEqual(c.vips, ['10.96.0.10'], 'node addresses are not Service addresses');
  });

  test('internalTrafficPolicy Local limits ClusterIP traffic to local endpoints', () => {
    const c = compileService(svc('web', { internalTrafficPolicy: 'Local' }), [slice('web', [{ ip: '10.0.1.1', node: 'node-b' }])], node);
    assert.deepEqual(c.frontends[0]?.scopes[0], { scope: 0, slots: [], localOnly: true, terminatingFallback: false });
  });

  test('ExternalIPs and LoadBalancer IPs are frontends with both scopes, and VIPs', () => {
    const s = svc('web', { type: 'LoadBalancer', externalIPs: ['198.51.100.1'], loadBalancerIPs: ['203.0.113.7'] });
    const c = compileService(s, [slice('web', ['10.0.0.1'])], node);
    assert.deepEqual(c.frontends.map((f) => [f.kind, f.key, f.scopes.length]), [
      ['ClusterIP', '10.96.0.10:80/TCP', 1], ['ExternalIP', '198.51.100.1:80/TCP', 2], ['LoadBalancer', '203.0.113.7:80/TCP', 2],
    ]);
    assert.deepEqual(c.vips, ['10.96.0.10', '198.51.100.1', '203.0.113.7']);
  });

  test('an IPv6-only Service is skipped and its frontends listed as not served', () => {
    const s = svc('v6', {
      type: 'NodePort', clusterIPs: [], ipv6ClusterIPs: ['fd00::10'], ipv6Only: true,
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
    });
    const c = compileService(s, [slice('v6', ['10.0.0.1'])], node);
    assert.equal(c.skipped, REASON_IPV6);
    assert.deepEqual(c.frontends, []);
    assert.deepEqual(c.notServed, [
      { frontend: '[fd00::10]:80/TCP', kind: 'ClusterIP', reason: REASON_IPV6 },
      { frontend: '*:30080/TCP', kind: 'NodePort', reason: REASON_IPV6 },
    ]);
  });

  test('NodePorts on a node without an address are listed as not served; the ClusterIP still is', () => {
    const s = svc('np', { type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
    const c = compileService(s, [slice('np', ['10.0.0.1'])], { name: 'node-a', addresses: [] });
    assert.deepEqual(c.frontends.map((f) => f.key), ['10.96.0.10:80/TCP']);
    assert.deepEqual(c.notServed, [{ frontend: '*:30080/TCP', kind: 'NodePort', reason: REASON_NO_NODE_ADDRESS }]);
    assert.deepEqual(compileService(s, [], node).notServed, [], 'with an address, nothing to say');
  });

  test('ExternalIPs outside services.externalIPs.allowedCIDRs: no frontend, no Service address, listed with the reason', () => {
    const s = svc('web', { externalIPs: ['198.51.100.1', '8.8.8.8'] });
    const limits = { ...DEFAULT_LIMITS, allowedExternalIPs: new CidrSet(['198.51.100.0/24']) };
    const c = compileService(s, [slice('web', ['10.0.0.1'])], node, limits);
    assert.deepEqual(c.frontends.map((f) => f.key), ['10.96.0.10:80/TCP', '198.51.100.1:80/TCP']);
    assert.deepEqual(c.vips, ['10.96.0.10', '198.51.100.1']);
    assert.deepEqual(c.notServed, [{ frontend: '8.8.8.8:80/TCP', kind: 'ExternalIP', reason: '8.8.8.8 is outside services.externalIPs.allowedCIDRs (198.51.100.0/24)' }]);
    const none = compileService(s, [], node, { ...DEFAULT_LIMITS, allowedExternalIPs: new CidrSet([]) });
    assert.deepEqual(none.frontends.map((f) => f.kind), ['ClusterIP'], 'an empty list serves no ExternalIP');
    assert.equal(compileService(s, [], node).frontends.length, 3, 'unset: any (kube-proxy)');
  });

  test('an ExternalIP on the node\'s address is a frontend but not a Service address (the node keeps its other ports)', () => {
    const c = compileService(svc('web', { externalIPs: ['192.168.77.10'] }), [], node);
    assert.ok(c.frontends.some((f) => f.key === '192.168.77.10:80/TCP'));
    assert.deepEqual(c.vips, ['10.96.0.10']);
  });

  test('its own ClusterIP or LoadBalancer IP listed as an ExternalIP is one frontend, of the allocated kind', () => {
    const c = compileService(svc('web', { externalIPs: ['10.96.0.10'] }), [], node);
    assert.deepEqual(c.frontends.map((f) => [f.key, f.kind, f.scopes.map((x) => x.scope)]), [['10.96.0.10:80/TCP', 'ClusterIP', [SCOPE_INTERNAL, SCOPE_EXTERNAL]]]);
    const lb = compileService(svc('web', { type: 'LoadBalancer', externalIPs: ['203.0.113.7'], loadBalancerIPs: ['203.0.113.7'] }), [], node);
    assert.deepEqual(lb.frontends.map((f) => [f.key, f.kind]), [['10.96.0.10:80/TCP', 'ClusterIP'], ['203.0.113.7:80/TCP', 'LoadBalancer']]);
  });

  test('session affinity carries its timeout', () => {
    const c = compileService(svc('web', { sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 30 }), [], node);
    assert.equal(c.frontends[0]?.affinityTimeout, 30);
  });

  test('headless and ExternalName Services are skipped (DNS serves them)', () => {
    assert.match(compileService(svc('h', { headless: true, clusterIPs: [] }), [], node).skipped ?? '', /headless/);
    assert.match(compileService(svc('x', { type: 'ExternalName', clusterIPs: [] }), [], node).skipped ?? '', /ExternalName/);
  });

  test('more endpoints than a frontend holds: the port is refused with the field named', () => {
    const eps = Array.from({ length: 20 }, (_, i) => `10.0.0.${i + 1}`);
    const c = compileService(svc('big'), [slice('big', eps)], node, { maxBackendsPerFrontend: 10 });
    assert.equal(c.frontends.length, 0);
    assert.match(c.problems[0]?.message ?? '', /Service default\/big: spec.ports\[0\] \(http\) endpoints: 20 exceed the 10 backends/);
  });
});

test('publishNotReadyAddresses: an endpoint the slice calls ready takes new flows even while terminating, as kube-proxy reads it', () => {
  const out = compileService(svc('pnr'), [slice('pnr', [{ ip: '10.0.0.1', ready: true, serving: false, terminating: true }, { ip: '10.0.0.2', ready: false, serving: true, terminating: true }])], node);
  assert.deepEqual(out.frontends[0]!.scopes.map((sc) => sc.slots), [['10.0.0.1:8080']]);
});

test('entriesUpperBound: never below what the compiled Service needs, exact for a ClusterIP with ready endpoints', () => {
  const eps = slice('web', ['10.0.0.1', '10.0.0.2', { ip: '10.0.0.3', ready: false, serving: true, terminating: true }, { ip: '10.0.0.4', ready: false, serving: false }]);
  const twoPorts = [{ name: 'http', protocol: 'TCP' as const, port: 80, targetPort: 8080, nodePort: 30080 }, { name: 'dns', protocol: 'UDP' as const, port: 53, targetPort: 53, nodePort: 0 }];
  const withDns = slice('web', ['10.0.0.1', '10.0.0.5']);
  withDns.ports = [{ name: 'dns', protocol: 'UDP', port: 53 }];
  const cases = [
    { s: svc('web'), slices: [slice('web', ['10.0.0.1', '10.0.0.2'])], exact: true },
    { s: svc('web'), slices: [], exact: true },
    { s: svc('web', { type: 'NodePort', ports: twoPorts, externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local' }), slices: [eps, withDns], exact: false },
    { s: svc('web', { type: 'LoadBalancer', ports: twoPorts, externalIPs: ['198.51.100.1', '10.96.0.10'], loadBalancerIPs: ['203.0.113.7'], sessionAffinity: 'ClientIP' }), slices: [eps, eps], exact: false },
    { s: svc('web', { headless: true, clusterIPs: [] }), slices: [eps], exact: true },
  ];
  for (const c of cases) {
    const need = entriesNeeded(compileService(c.s, c.slices, node));
    const bound = entriesUpperBound(c.s, c.slices, node);
    assert.ok(bound.services >= need.services && bound.backends >= need.backends, `${JSON.stringify(bound)} < ${JSON.stringify(need)} for ${c.s.type}`);
    if (c.exact) assert.deepEqual(bound, need);
  }
});
