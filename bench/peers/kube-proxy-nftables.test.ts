import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { nftInput, nftOneChange, nftPartialSync, nftStaleChainDeletion } from './kube-proxy-nftables.ts';
import type { PeerService } from './peer-service.ts';

function svc(ns: string, name: string, portName: string, clusterIP: string, port: number, eps: string[], extra: Partial<PeerService> = {}): PeerService {
  return {
    namespace: ns,
    name,
    portName,
    protocol: 'TCP',
    clusterIP,
    port,
    endpoints: eps.map((e) => ({ ip: e.split(':')[0]!, port: Number(e.split(':')[1]) })),
    ...extra,
  };
}

const T = 'ip kube-proxy';
const opts = { clusterCIDR: '10.0.0.0/8', nodeIPs: ['192.168.0.2'], serviceCIDR: '172.30.0.0/16' };
// kube-proxy's TestOverallNFTablesRules services (pkg/proxy/nftables/proxier_test.go).
const svc1 = svc('ns1', 'svc1', 'p80', '172.30.0.41', 80, ['10.180.0.1:80']);
const svc3 = svc('ns3', 'svc3', 'p80', '172.30.0.43', 80, ['10.180.0.3:80'], { nodePort: 3003 });
const svc6 = svc('ns6', 'svc6', 'p80', '172.30.0.46', 80, []);

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

describe('nftInput', () => {
  test('sets up the kube-proxy table, base chains and dispatch as kube-proxy v1.36 does', () => {
    const ops = lines(nftInput([], opts));
    assert.equal(ops[0], `add table ${T} { comment "rules for kube-proxy" ; }`);
    for (const expected of [
      `add chain ${T} filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }`,
      `add chain ${T} filter-output-pre-dnat { type filter hook output priority -110 ; }`,
      `add chain ${T} filter-forward { type filter hook forward priority 0 ; }`,
      `add chain ${T} nat-prerouting { type nat hook prerouting priority -100 ; }`,
      `add chain ${T} nat-output { type nat hook output priority -100 ; }`,
      `add chain ${T} nat-postrouting { type nat hook postrouting priority 100 ; }`,
      `add rule ${T} nat-prerouting jump services`,
      `add rule ${T} nat-output jump services`,
      `add rule ${T} nat-postrouting jump masquerading`,
      `add rule ${T} filter-input ct state new jump service-endpoints-check`,
      `add rule ${T} filter-forward ct state new jump cluster-ips-check`,
      `add rule ${T} masquerading mark and 0x00004000 != 0 mark set mark xor 0x00004000 masquerade fully-random`,
      `add rule ${T} masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random`,
      `add rule ${T} cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"`,
      `add map ${T} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
      `add map ${T} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`,
      `add rule ${T} services ip daddr @cluster-ips ip saddr != 10.0.0.0/8 mark set mark or 0x00004000 comment "masquerade clusterIP traffic from outside cluster"`,
      `add rule ${T} services ip daddr . meta l4proto . th dport vmap @service-ips`,
      `add rule ${T} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports`,
      `add element ${T} nodeport-ips { 192.168.0.2 }`,
      `add rule ${T} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services`,
      `add rule ${T} reject-chain reject`,
    ]) {
      assert.ok(ops.includes(expected), expected);
    }
    // a base chain is created (and flushed) before any rule is added to it
    assert.ok(ops.indexOf(`flush chain ${T} nat-prerouting`) < ops.indexOf(`add rule ${T} nat-prerouting jump services`));
    // the services chain masquerades before it dispatches
    assert.ok(
      ops.findIndex((l) => l.startsWith(`add rule ${T} services ip daddr @cluster-ips`)) <
        ops.indexOf(`add rule ${T} services ip daddr . meta l4proto . th dport vmap @service-ips`),
    );
  });

  test('without node IPs NodePorts match every local address', () => {
    const ops = lines(nftInput([], { clusterCIDR: '10.0.0.0/8' }));
    assert.ok(ops.includes(`delete set ${T} nodeport-ips`));
    assert.ok(ops.includes(`add rule ${T} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports`));
    assert.ok(!ops.some((l) => l.includes('Drop traffic to unallocated ClusterIPs')));
  });

  test('a ClusterIP service: chain named by kube-proxy\'s hash, map element, numgen DNAT', () => {
    const ops = lines(nftInput([svc1], opts));
    const from = ops.indexOf(`add element ${T} hairpin-connections { 10.180.0.1 . 10.180.0.1 . tcp . 80 }`);
    assert.notEqual(from, -1);
    assert.deepEqual(ops.slice(from), [
      `add element ${T} hairpin-connections { 10.180.0.1 . 10.180.0.1 . tcp . 80 }`,
      `add chain ${T} service-ULMVA6XW-ns1/svc1/tcp/p80`,
      `flush chain ${T} service-ULMVA6XW-ns1/svc1/tcp/p80`,
      `add element ${T} cluster-ips { 172.30.0.41 }`,
      `add element ${T} service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }`,
      `add rule ${T} service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat ip addr . port to numgen random mod 1 map { 0 : 10.180.0.1 . 80 }`,
    ]);
  });

  test('several endpoints share one numgen map, in kube-proxy\'s endpoint order', () => {
    const s = svc('default', 'web', 'http', '10.96.0.10', 80, ['10.1.0.3:8080', '10.1.0.1:8080', '10.1.0.2:8080']);
    const rule = lines(nftInput([s], opts)).find((l) => l.includes('numgen'));
    // base32(sha256("default/web/tcp/http"))[:8] = SUSTUHLJ
    assert.equal(
      rule,
      `add rule ${T} service-SUSTUHLJ-default/web/tcp/http meta l4proto tcp dnat ip addr . port to numgen random mod 3 map { 0 : 10.1.0.1 . 8080 , 1 : 10.1.0.2 . 8080 , 2 : 10.1.0.3 . 8080 }`,
    );
  });

  test('a NodePort service gets an external chain that marks for masquerade', () => {
    const ops = lines(nftInput([svc3], opts));
    for (const expected of [
      `add chain ${T} external-4AT6LBPK-ns3/svc3/tcp/p80`,
      `add element ${T} service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }`,
      `add rule ${T} external-4AT6LBPK-ns3/svc3/tcp/p80 mark set mark or 0x00004000 comment "masquerade"`,
      `add rule ${T} external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80`,
    ]) {
      assert.ok(ops.includes(expected), expected);
    }
  });

  test('a service without endpoints goes to the reject map only', () => {
    const ops = lines(nftInput([svc6], opts));
    assert.ok(ops.includes(`add element ${T} no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }`));
    assert.ok(ops.includes(`add element ${T} cluster-ips { 172.30.0.46 }`));
    assert.ok(!ops.some((l) => l.includes('service-') && l.includes('ns6/svc6')));
  });

  test('remote endpoints are not in the hairpin set', () => {
    const ops = lines(nftInput([svc1], { ...opts, localEndpoints: false }));
    assert.ok(!ops.some((l) => l.startsWith(`add element ${T} hairpin-connections`)));
  });

  test('is deterministic', () => {
    assert.equal(nftInput([svc1, svc3, svc6], opts), nftInput([svc1, svc3, svc6], opts));
  });
});

describe('nftPartialSync', () => {
  test('one endpoint change rewrites one service chain and swaps the hairpin element', () => {
    const web = svc('default', 'web', 'http', '10.96.0.10', 80, ['10.1.0.1:8080', '10.1.0.2:8080']);
    const text = nftOneChange([svc1, web, svc3], opts, { service: 1, endpoint: 1, to: { ip: '10.1.0.9', port: 8080 } });
    const chain = 'service-SUSTUHLJ-default/web/tcp/http';
    assert.deepEqual(lines(text), [
      `add element ${T} hairpin-connections { 10.1.0.9 . 10.1.0.9 . tcp . 8080 }`,
      `add chain ${T} ${chain}`,
      `flush chain ${T} ${chain}`,
      `add rule ${T} ${chain} meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.1.0.1 . 8080 , 1 : 10.1.0.9 . 8080 }`,
      `delete element ${T} hairpin-connections { 10.1.0.2 . 10.1.0.2 . tcp . 8080 }`,
    ]);
  });

  test('a service losing its endpoints moves to the reject map and its chains are flushed, deleted later', () => {
    const after = [svc1, { ...svc3, endpoints: [] }];
    const ops = lines(nftPartialSync([svc1, svc3], after, opts));
    assert.ok(ops.includes(`add element ${T} no-endpoint-services { 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : goto reject-chain }`));
    assert.ok(ops.includes(`add element ${T} no-endpoint-nodeports { tcp . 3003 comment "ns3/svc3:p80" : goto reject-chain }`));
    assert.ok(ops.includes(`flush chain ${T} service-4AT6LBPK-ns3/svc3/tcp/p80`));
    assert.ok(ops.includes(`delete element ${T} service-ips { 172.30.0.43 . tcp . 80 }`));
    assert.ok(ops.includes(`delete element ${T} service-nodeports { tcp . 3003 }`));
    assert.ok(!ops.some((l) => l.includes('ns1/svc1')));
    assert.deepEqual(lines(nftStaleChainDeletion([svc1, svc3], after)), [
      `delete chain ${T} external-4AT6LBPK-ns3/svc3/tcp/p80`,
      `delete chain ${T} service-4AT6LBPK-ns3/svc3/tcp/p80`,
    ]);
  });

  test('no change, empty transaction', () => {
    assert.equal(nftPartialSync([svc1, svc3], [svc1, svc3], opts), '');
  });
});
