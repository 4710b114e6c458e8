import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  base32Std,
  goFixed,
  iptExtChain,
  iptSepChain,
  iptSvcChain,
  nftEndpointBase,
  nftServiceBase,
  portProtoHash,
  probability,
} from './kube-proxy-names.ts';
import { goHex08, normalizeOptions } from './peer-service.ts';

describe('base32Std', () => {
  test('matches the RFC 4648 test vectors', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'MY======'],
      ['fo', 'MZXQ===='],
      ['foo', 'MZXW6==='],
      ['foob', 'MZXW6YQ='],
      ['fooba', 'MZXW6YTB'],
      ['foobar', 'MZXW6YTBOI======'],
    ];
    for (const [plain, encoded] of vectors) assert.equal(base32Std(new TextEncoder().encode(plain)), encoded);
  });
});

describe('kube-proxy chain names', () => {
  // Computed by hand: base64.b32encode(hashlib.sha256(b"ns1/svc1:p80tcp").digest())[:16]
  // in Python gives XPGD46QRK7WJZT7O, the chain kube-proxy's own proxier_test.go
  // expects for Service ns1/svc1 port p80/TCP.
  test('KUBE-SVC hash of a known service port', () => {
    assert.equal(portProtoHash('ns1/svc1:p80', 'tcp'), 'XPGD46QRK7WJZT7O');
    assert.equal(iptSvcChain('ns1/svc1:p80', 'tcp'), 'KUBE-SVC-XPGD46QRK7WJZT7O');
    assert.equal(iptExtChain('ns1/svc1:p80', 'tcp'), 'KUBE-EXT-XPGD46QRK7WJZT7O');
  });

  test('KUBE-SEP hash includes protocol and endpoint', () => {
    // sha256("ns1/svc1:p80tcp10.180.0.1:80"), base32, 16 characters.
    assert.equal(iptSepChain('ns1/svc1:p80', 'tcp', '10.180.0.1:80'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
    assert.equal(iptSepChain('ns3/svc3:p80', 'tcp', '10.0.3.1:80'), 'KUBE-SEP-BSWRHOQ77KEXZLNL');
    assert.notEqual(iptSepChain('ns1/svc1:p80', 'udp', '10.180.0.1:80'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  test('iptables chain names fit the 28-character limit', () => {
    assert.ok(iptSepChain('a-very-long-namespace-name/a-very-long-service-name:https', 'tcp', '10.1.2.3:65535').length <= 28);
  });

  test('nftables chain bases', () => {
    // sha256("ns1/svc1/tcp/p80") -> ULMVA6XW; the endpoint form hashes the whole name.
    assert.equal(nftServiceBase('ns1', 'svc1', 'tcp', 'p80'), 'ULMVA6XW-ns1/svc1/tcp/p80');
    assert.equal(nftEndpointBase('ns1', 'svc1', 'tcp', 'p80', '10.180.0.1', 80), '5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  });

  test('nftables names longer than 240 characters are cut with ...', () => {
    const long = 'x'.repeat(63);
    const base = nftEndpointBase(long, long, 'tcp', long, '10.0.0.1', 80);
    assert.ok(base.length <= 240);
  });
});

describe('Go number formatting', () => {
  test('probability is %0.10f of 1/n', () => {
    assert.equal(probability(2), '0.5000000000');
    assert.equal(probability(3), '0.3333333333');
    assert.equal(probability(6), '0.1666666667');
    assert.equal(probability(7), '0.1428571429');
    assert.equal(probability(10), '0.1000000000');
    assert.equal(probability(1), '1.0000000000');
  });

  test('exact ties round half to even like Go, not up like toFixed', () => {
    // 1/2048 = 0.00048828125 exactly; Go prints 0.0004882812, toFixed 0.0004882813.
    assert.equal(probability(2048), '0.0004882812');
    assert.equal(probability(4096), '0.0002441406');
    assert.equal(goFixed(0.125, 2), '0.12');
    assert.equal(goFixed(0.375, 2), '0.38');
    assert.equal(goFixed(2.5, 0), '2');
  });

  test('masquerade mark is %#08x of 1<<bit', () => {
    assert.equal(goHex08(1 << 14), '0x00004000');
    assert.equal(normalizeOptions({ clusterCIDR: '10.0.0.0/8' }).masqueradeMark, '0x00004000');
    assert.equal(normalizeOptions({ clusterCIDR: '10.0.0.0/8', masqueradeBit: 31 }).masqueradeMark, '0x80000000');
  });
});
