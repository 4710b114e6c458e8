// The pure parts of the kube-proxy binary peer: the configuration it runs
// with and the reading of its log. (bench-control and bench-lb run the binary.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generatedReason, kubeProxyConfig, parseBinaryMax, parseGoDuration, parseSyncLine } from './kube-proxy-binary.ts';

describe('kubeProxyConfig', () => {
  const base = { kubeconfig: '/k', nodeName: 'n1', clusterCIDR: '10.244.0.0/16' };
  test('the mode follows the dataplane', () => {
    assert.equal(kubeProxyConfig({ ...base, dataplane: 'nftables' })['mode'], 'nftables');
    assert.equal(kubeProxyConfig({ ...base, dataplane: 'iptables-nft' })['mode'], 'iptables');
    assert.equal(kubeProxyConfig({ ...base, dataplane: 'iptables-legacy' })['mode'], 'iptables');
  });
  test('every conntrack sysctl kube-proxy would set is left alone', () => {
    // pkg/proxy/conntrack/sysctls.go: maxPerCore 0 skips nf_conntrack_max and
    // the hashsize; a zero timeout and be_liberal false skip theirs.
    assert.deepEqual(kubeProxyConfig({ ...base, dataplane: 'iptables-nft' })['conntrack'], {
      maxPerCore: 0, min: 0, tcpBeLiberal: false,
      tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s', udpTimeout: '0s', udpStreamTimeout: '0s',
    });
  });
  test('listens on loopback only, logs JSON at -v=2, keeps the default OOM score', () => {
    const c = kubeProxyConfig({ ...base, dataplane: 'nftables' });
    assert.equal(c['metricsBindAddress'], '127.0.0.1:10249');
    assert.equal(c['healthzBindAddress'], '127.0.0.1:10256');
    assert.deepEqual(c['logging'], { format: 'json', verbosity: 2 });
    assert.equal(c['oomScoreAdj'], 0);
    assert.equal(c['hostnameOverride'], 'n1');
  });
});

describe('parseGoDuration', () => {
  test('reads time.Duration.String() output', () => {
    const cases: [string, number][] = [['90.514185ms', 0.090514185], ['1.5s', 1.5], ['12.3µs', 12.3e-6], ['1m2.5s', 62.5], ['1h0m0s', 3600], ['0s', 0], ['7ns', 7e-9]];
    for (const [s, want] of cases) assert.ok(Math.abs(parseGoDuration(s) - want) < 1e-12, `${s}: ${parseGoDuration(s)}`);
  });
  test('rejects what is not a duration', () => {
    for (const s of ['', '5', '1.5 s', 'fast']) assert.throws(() => parseGoDuration(s), /is not a Go duration/);
  });
});

describe('parseSyncLine', () => {
  test('takes the end of a sync, with its family, wall clock and duration', () => {
    // As kube-proxy v1.36.3 printed it (iptables/proxier.go:662).
    const line = '{"ts":1796607127173.1912,"caller":"iptables/proxier.go:662","msg":"SyncProxyRules complete","ipFamily":"IPv4","v":2,"elapsed":"90.514185ms"}';
    assert.deepEqual(parseSyncLine(line), { ts: 1796607127173.1912, family: 'IPv4', elapsedSeconds: 0.090514185 });
  });
  test('ignores other lines', () => {
    assert.equal(parseSyncLine('{"ts":1,"msg":"Syncing iptables rules","ipFamily":"IPv4","fullSync":true}'), undefined);
    assert.equal(parseSyncLine('I1207 01:17:07.130492 1 proxier.go:662] "SyncProxyRules complete" elapsed="1s"'), undefined);
  });
});

test('--binary-max: per dataplane, unnamed ones never; a bad entry is named', () => {
  const max = parseBinaryMax('iptables-nft=1000,nftables=25000');
  assert.equal(max('iptables-nft'), 1000);
  assert.equal(max('nftables'), 25000);
  assert.equal(max('iptables-legacy'), -1);
  assert.throws(() => parseBinaryMax('ipvs=10'), /--binary-max entry "ipvs=10" is not/);
  assert.throws(() => parseBinaryMax('nftables='), /--binary-max entry "nftables=" is not/);
  assert.match(generatedReason('iptables-legacy', -1), /^the kube-proxy binary is not run in iptables-legacy \(--binary-max\)$/);
  assert.match(generatedReason('iptables-nft', 1000), /run up to 1000 Services in iptables-nft .*quadratic/);
});
