import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { iptablesOneChange, iptablesPartialSync, iptablesRestoreInput, iptablesSyncInput } from './kube-proxy-iptables.ts';
import type { PeerService } from './peer-service.ts';

const opts = { clusterCIDR: '10.0.0.0/8' };

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

function table(text: string, name: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(`*${name}`);
  assert.notEqual(start, -1, `no *${name} table`);
  const end = lines.indexOf('COMMIT', start);
  return lines.slice(start + 1, end);
}

// The services of kube-proxy's TestSyncProxyRulesRepeated (pkg/proxy/iptables/proxier_test.go);
// the hashes below are the ones that test expects.
const svc1 = svc('ns1', 'svc1', 'p80', '172.30.0.41', 80, ['10.0.1.1:80']);
const svc2 = svc('ns2', 'svc2', 'p8080', '172.30.0.42', 8080, ['10.0.2.1:8080']);

describe('iptablesSyncInput', () => {
  test('writes the nat table kube-proxy writes, in its order', () => {
    const nat = table(iptablesSyncInput([svc1, svc2], opts), 'nat');
    assert.deepEqual(nat, [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      ':KUBE-POSTROUTING - [0:0]',
      ':KUBE-MARK-MASQ - [0:0]',
      ':KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]',
      ':KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]',
      ':KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]',
      ':KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]',
      '-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000',
      '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
      '-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO',
      '-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80',
      '-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6',
      '-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV',
      '-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ]);
  });

  test('writes the filter table kube-proxy writes', () => {
    const filter = table(iptablesSyncInput([svc1], opts), 'filter');
    assert.deepEqual(filter, [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-EXTERNAL-SERVICES - [0:0]',
      ':KUBE-FORWARD - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      ':KUBE-PROXY-FIREWALL - [0:0]',
      ':KUBE-FIREWALL - [0:0]',
      '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
      '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT',
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]);
  });

  test('spreads endpoints with 1/(n-i) probabilities, the last rule unconditional', () => {
    const s = svc('default', 'web', 'http', '10.96.0.10', 80, ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080', '10.1.0.4:8080']);
    const nat = table(iptablesSyncInput([s], opts), 'nat');
    const spread = nat.filter((l) => l.startsWith('-A KUBE-SVC-') && l.includes(' -> '));
    assert.deepEqual(
      spread.map((l) => /--probability (\S+)/.exec(l)?.[1] ?? 'last'),
      ['0.2500000000', '0.3333333333', '0.5000000000', 'last'],
    );
    assert.deepEqual(
      spread.map((l) => /-> (\S+)"/.exec(l)?.[1]),
      ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080', '10.1.0.4:8080'],
    );
    // each SEP chain: hairpin masquerade, then DNAT
    const sep = /-j (KUBE-SEP-\S+)$/.exec(spread[0]!)![1]!;
    assert.deepEqual(
      nat.filter((l) => l.startsWith(`-A ${sep} `)).map((l) => l.replace(/^.* -j /, '-j ')),
      ['-j KUBE-MARK-MASQ', '-j DNAT --to-destination 10.1.0.1:8080'],
    );
  });

  test('services without endpoints are rejected in the filter table and get no nat chains', () => {
    const s = svc('ns6', 'svc6', 'p80', '172.30.0.46', 80, [], { nodePort: 30046 });
    const text = iptablesSyncInput([s], opts);
    assert.ok(
      table(text, 'filter').includes('-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT'),
    );
    assert.ok(
      table(text, 'filter').includes(
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30046 -j REJECT',
      ),
    );
    assert.ok(!table(text, 'nat').some((l) => l.includes('KUBE-SVC-') || l.includes('KUBE-SEP-')));
  });

  test('NodePorts go through KUBE-NODEPORTS and a KUBE-EXT chain that masquerades', () => {
    const s = svc('ns3', 'svc3', 'p80', '172.30.0.43', 80, ['10.180.0.3:80'], { nodePort: 3003 });
    const nat = table(iptablesSyncInput([s], opts), 'nat');
    assert.ok(nat.includes('-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK'));
    assert.ok(nat.includes(':KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]'));
    const ext = nat.filter((l) => l.startsWith('-A KUBE-EXT-X27LE4BHSL4DOUIK'));
    assert.deepEqual(ext, [
      '-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ',
      '-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK',
    ]);
    assert.equal(nat.at(-1), '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  });

  test('UDP services match udp', () => {
    const s: PeerService = { ...svc('kube-system', 'dns', 'dns', '10.96.0.10', 53, ['10.1.0.5:53']), protocol: 'UDP' };
    const nat = table(iptablesSyncInput([s], opts), 'nat');
    assert.ok(nat.some((l) => l.startsWith('-A KUBE-SERVICES ') && l.includes('-m udp -p udp -d 10.96.0.10 --dport 53')));
    assert.ok(nat.some((l) => l.endsWith('-m udp -p udp -j DNAT --to-destination 10.1.0.5:53')));
  });

  test('above 1000 endpoints the per-endpoint comments are dropped (large cluster mode)', () => {
    const many = Array.from({ length: 101 }, (_, i) =>
      svc('bench', `svc-${i}`, 'http', `10.96.${i >> 8}.${i & 255}`, 80, Array.from({ length: 10 }, (_, j) => `10.1.${i >> 8}.${(i & 255) % 250}:${8080 + j}`)),
    );
    const nat = table(iptablesSyncInput(many, opts), 'nat');
    const sepRules = nat.filter((l) => l.startsWith('-A KUBE-SEP-'));
    assert.equal(sepRules.length, 101 * 10 * 2);
    assert.ok(sepRules.every((l) => !l.includes('--comment')));
    assert.ok(nat.filter((l) => l.startsWith('-A KUBE-SVC-') && l.includes('KUBE-SEP-')).every((l) => !l.includes('--comment')));
    // the cluster-IP rules keep theirs
    assert.ok(nat.filter((l) => l.startsWith('-A KUBE-SERVICES -m comment --comment "bench/')).length === 101);
  });

  test('is deterministic', () => {
    assert.equal(iptablesSyncInput([svc1, svc2], opts), iptablesSyncInput([svc1, svc2], opts));
  });
});

describe('iptablesRestoreInput', () => {
  test('adds the jumps from the built-in chains in kube-proxy order, before the rules', () => {
    const text = iptablesRestoreInput([svc1], opts);
    const nat = table(text, 'nat');
    const firstRule = nat.findIndex((l) => l.startsWith('-A '));
    assert.deepEqual(
      nat.filter((l) => l.startsWith('-I ')),
      [
        '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      ],
    );
    assert.ok(nat.findIndex((l) => l.startsWith('-I ')) < firstRule);
    const filterJumps = table(text, 'filter').filter((l) => l.startsWith('-I '));
    assert.equal(filterJumps.length, 11);
    assert.equal(filterJumps.at(-1), '-I OUTPUT -j KUBE-FIREWALL');
    assert.ok(table(text, 'mangle').includes(':KUBE-PROXY-CANARY - [0:0]'));
  });
});

describe('iptablesPartialSync', () => {
  // kube-proxy's TestSyncProxyRulesRepeated step "Change an endpoint of an existing
  // service": only svc3's chains are rewritten and its old endpoint chain deleted.
  const svc3 = svc('ns3', 'svc3', 'p80', '172.30.0.43', 80, ['10.0.3.1:80']);
  const svc4 = svc('ns4', 'svc4', 'p80', '172.30.0.44', 80, ['10.0.4.1:80']);
  const before = [svc1, svc3, svc4];

  test('rewrites only the changed service and deletes its stale endpoint chain', () => {
    const text = iptablesOneChange(before, opts, { service: 1, endpoint: 0, to: { ip: '10.0.3.2', port: 80 } });
    assert.deepEqual(table(text, 'nat'), [
      ':KUBE-SERVICES - [0:0]',
      ':KUBE-NODEPORTS - [0:0]',
      ':KUBE-POSTROUTING - [0:0]',
      ':KUBE-MARK-MASQ - [0:0]',
      ':KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]',
      ':KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]',
      ':KUBE-SEP-BSWRHOQ77KEXZLNL - [0:0]',
      '-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000',
      '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
      '-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000',
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
      '-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK',
      '-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -j KUBE-SEP-DKCFIS26GWF2WLWC',
      '-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ',
      '-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80',
      '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK',
      '-X KUBE-SEP-BSWRHOQ77KEXZLNL',
      '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ]);
    // the whole filter table is rewritten on every sync
    assert.deepEqual(table(text, 'filter'), table(iptablesSyncInput(before, opts), 'filter'));
  });

  test('leaves stale chains alone when cleanup is off (large clusters, most syncs)', () => {
    const text = iptablesOneChange(before, opts, { service: 1, endpoint: 0, to: { ip: '10.0.3.2', port: 80 } }, { staleChainCleanup: false });
    assert.ok(!text.includes('-X '));
    assert.ok(!text.includes('KUBE-SEP-BSWRHOQ77KEXZLNL'));
  });

  test('a deleted service has its chains deleted; an unchanged state rewrites no service chain', () => {
    const text = iptablesPartialSync(before, [svc1, svc4], opts);
    const nat = table(text, 'nat');
    assert.ok(nat.includes('-X KUBE-SVC-X27LE4BHSL4DOUIK'));
    assert.ok(nat.includes('-X KUBE-SEP-BSWRHOQ77KEXZLNL'));
    const same = table(iptablesPartialSync(before, before, opts), 'nat');
    assert.ok(!same.some((l) => /^:KUBE-(SVC|SEP)-/.test(l)));
  });
});
