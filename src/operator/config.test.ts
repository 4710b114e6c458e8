import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isOperatorConfigError, loadOperatorConfig, parseOperatorConfig } from './config.ts';

const pool = { mode: 'cluster-pool', clusterPool: { cidrs: ['10.244.0.0/16'] } };

describe('operator config', () => {
  test('defaults', () => {
    const cfg = parseOperatorConfig({ ipam: pool }, { defaultIdentity: 'op-1', baseDir: '/etc/hypha' });
    assert.deepEqual(cfg, {
      ipam: { mode: 'cluster-pool', clusterPool: { cidrs: ['10.244.0.0/16'], maskSize: 24 } },
      kubernetes: { silenceSeconds: 90, resyncSeconds: 600 },
      leaderElection: { namespace: 'kube-system', name: 'hypha-operator', identity: 'op-1', leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 },
      sync: { resyncSeconds: 300 },
      identity: { gc: { graceSeconds: 900, intervalSeconds: 60 } },
      listen: { address: '0.0.0.0', port: 9891 },
      log: { level: 'info' },
    });
    assert.match(parseOperatorConfig({ ipam: { mode: 'kubernetes' } }).leaderElection.identity, /^.+_[0-9a-f]{8}$/);
    assert.equal(parseOperatorConfig({ ipam: pool, kubernetes: { kubeconfig: 'admin.kubeconfig' } }, { baseDir: '/etc/hypha' }).kubernetes.kubeconfig, '/etc/hypha/admin.kubeconfig');
  });

  test('bad values are refused naming the field and the value', () => {
    const cases: [unknown, RegExp][] = [
      [{}, /^config: ipam: is required$/],
      [{ ipam: { mode: 'magic' } }, /^config: ipam\.mode: "magic" is not one of "cluster-pool", "kubernetes"$/],
      [{ ipam: { mode: 'cluster-pool' } }, /^config: ipam\.clusterPool: is required when ipam\.mode is "cluster-pool"$/],
      [{ ipam: { mode: 'kubernetes', clusterPool: { cidrs: ['10.0.0.0/8'] } } }, /^config: ipam\.clusterPool: is set, but ipam\.mode is "kubernetes"/],
      [{ ipam: { ...pool, clusterPool: { cidrs: ['10.244.0.1/16'] } } }, /^config: ipam\.clusterPool\.cidrs\[0\]: "10\.244\.0\.1\/16" has host bits set \(the network is 10\.244\.0\.0\/16\)$/],
      [{ ipam: { ...pool, clusterPool: { cidrs: ['10.244.0.0/16', 'fd00::/64'] } } }, /^config: ipam\.clusterPool\.cidrs\[1\]: "fd00::\/64" is not an IPv4 network prefix$/],
      [{ ipam: { ...pool, clusterPool: { cidrs: ['10.244.0.0/16'], maskSize: 12 } } }, /^config: ipam\.clusterPool\.maskSize: 12 is not an integer in 16\.\.30/],
      [{ ipam: { ...pool, clusterPool: { cidrs: [] } } }, /^config: ipam\.clusterPool\.cidrs: \[\] must NOT have fewer than 1 items$/],
      [{ ipam: { ...pool, clusterPool: { cidrs: ['10.244.0.0/16'], maskSize: '24' } } }, /^config: ipam\.clusterPool\.maskSize: "24" must be integer$/],
      [{ ipam: pool, leaderElection: { leaseDurationSeconds: 10 } }, /^config: leaderElection\.renewDeadlineSeconds 10 must be shorter than leaseDurationSeconds 10$/],
      [{ ipam: pool, leaderElection: { namespace: 'Kube_System' } }, /^config: leaderElection\.namespace: "Kube_System" is not a valid Kubernetes name/],
      [{ ipam: pool, listen: { port: 70000 } }, /^config: listen\.port: 70000 must be <= 65535$/],
      [{ ipam: pool, leaderelection: {} }, /^config: leaderelection: is not a known setting$/],
      [{ ipam: pool, identity: { gc: { graceSeconds: 0 } } }, /^config: identity\.gc\.graceSeconds: 0 must be >= 1$/],
    ];
    for (const [data, message] of cases) {
      assert.throws(() => parseOperatorConfig(data), (err: unknown) => {
        assert.ok(isOperatorConfigError(err), String(err));
        assert.equal(err.code, 'ECONFIG');
        assert.match(err.message, message);
        return true;
      }, JSON.stringify(data));
    }
  });

  test('loadOperatorConfig names the file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hypha-opcfg-'));
    try {
      const file = path.join(dir, 'operator.yaml');
      writeFileSync(file, 'ipam:\n  mode: cluster-pool\n  clusterPool:\n    cidrs: [10.244.0.0/33]\n');
      assert.throws(() => loadOperatorConfig(file), new RegExp(`^OperatorConfigError: config ${file}: ipam\\.clusterPool\\.cidrs\\[0\\]: "10\\.244\\.0\\.0/33" is not an IPv4 network prefix$`));
      writeFileSync(file, 'ipam: [\n');
      assert.throws(() => loadOperatorConfig(file), /is not valid YAML/);
      assert.throws(() => loadOperatorConfig(path.join(dir, 'missing.yaml')), /missing\.yaml: cannot be read: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
