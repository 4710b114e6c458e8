import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfig } from './config.ts';

const base = { node: { name: 'n1' }, services: { files: ['svc'] }, ipam: { podCIDRs: ['10.244.1.0/24'] } };

function rejects(data: unknown, message: RegExp): void {
  assert.throws(() => parseConfig(data, '/etc/hypha'), (e: unknown) => e instanceof ConfigError && message.test(e.message), `expected ${message}`);
}

test('defaults are filled in and relative paths resolve against the file', () => {
  const cfg = parseConfig(base, '/etc/hypha');
  assert.deepEqual(cfg.services.files, ['/etc/hypha/svc']);
  assert.equal(cfg.bpf.pinRoot, '/sys/fs/bpf/hypha');
  assert.equal(cfg.bpf.hostRouting, true);
  assert.equal(cfg.devices.externalMode, 'auto');
  assert.equal(cfg.ipam.mode, 'static');
  assert.equal(cfg.cni.socket, '/var/run/hypha/cni.sock');
  assert.equal(cfg.routing.mode, 'native');
  assert.equal(cfg.listen.port, 9890);
  assert.equal(cfg.sync.conntrackGcMaxSeconds, 60);
  assert.equal(cfg.policy.enabled, true);
  assert.equal(parseConfig({ ...base, policy: { enabled: false } }, '/etc/hypha').policy.enabled, false);
  const k = parseConfig({ node: { name: 'n1' }, kubernetes: { kubeconfig: 'kc' } }, '/etc/hypha');
  assert.equal(k.ipam.mode, 'cluster-pool');
  assert.equal(k.kubernetes?.kubeconfig, '/etc/hypha/kc');
  assert.equal(k.kubernetes?.silenceSeconds, 90);
});

test('every bad value is named with its field', () => {
  rejects({ ...base, bpf: { mapSizes: { ct: 0 } } }, /^config: bpf\.mapSizes\.ct: 0 must be >= 1$/);
  rejects({ ...base, node: { name: 'n1', addresses: ['10.0.0.300'] } }, /node\.addresses\.0: "10\.0\.0\.300" is not an IPv4 address/);
  rejects({ ...base, devices: { externalMode: 'fast' } }, /devices\.externalMode: "fast" must be equal to one of the allowed values/);
  rejects({ ...base, bpf: { colour: 'blue' } }, /bpf\.colour: is not a known setting/);
  rejects({ services: { files: ['x'] } }, /node: is required/);
  rejects({ ...base, listen: { port: 70000 } }, /listen\.port: 70000 must be <= 65535/);
  rejects({ ...base, node: { name: '' } }, /node\.name: "" must NOT have fewer than 1 characters/);
  rejects({ ...base, policy: { enabled: 'yes' } }, /^config: policy\.enabled: "yes" must be boolean$/);
  rejects({ ...base, policy: { mode: 'strict' } }, /policy\.mode: is not a known setting/);
  rejects({ ...base, policy: { podStartWaitSeconds: 120 } }, /^config: policy\.podStartWaitSeconds: 120 must be <= 60$/);
  rejects({ ...base, policy: { l7: { proxyPort: 0 } } }, /^config: policy\.l7\.proxyPort: 0 must be >= 1$/);
  rejects({ ...base, policy: { l7: { proxyPort: '15001' } } }, /^config: policy\.l7\.proxyPort: "15001" must be integer$/);
  rejects({ ...base, bpf: { initialMapSizes: { services: 0 } } }, /^config: bpf\.initialMapSizes\.services: 0 must be >= 1$/);
  rejects({ ...base, bpf: { initialMapSizes: { names: 64 } } }, /bpf\.initialMapSizes\.names: is not a known setting/);
  rejects({ ...base, bpf: { mapHighWater: 0 } }, /^config: bpf\.mapHighWater: 0 must be > 0$/);
  rejects({ ...base, bpf: { mapHighWater: 1.5 } }, /^config: bpf\.mapHighWater: 1\.5 must be <= 1$/);
  rejects({ ...base, bpf: { conntrackMemoryRatio: 0.5 } }, /^config: bpf\.conntrackMemoryRatio: 0\.5 must be <= 0\.1$/);
});

test('map sizes: none fixed by default (the agent sizes and grows them), a set one is kept', () => {
  const d = parseConfig(base, '/etc/hypha');
  assert.deepEqual([d.bpf.mapSizes, d.bpf.initialMapSizes, d.bpf.mapHighWater, d.bpf.conntrackMemoryRatio], [{}, {}, 0.8, 0.0025]);
  assert.deepEqual(parseConfig({ ...base, bpf: { mapSizes: { ct: 4096 } } }, '/etc/hypha').bpf.mapSizes, { ct: 4096 });
});

test('several errors are reported together', () => {
  rejects({ ...base, bpf: { mapSizes: { ct: 0, services: -1 } } }, /bpf\.mapSizes\.services: -1 must be >= 1; bpf\.mapSizes\.ct: 0 must be >= 1/);
});

test('IPAM: static needs pod CIDRs, the others need an API server', () => {
  rejects({ node: { name: 'n1' }, services: { files: ['svc'] } }, /ipam\.podCIDRs: is required with ipam\.mode static/);
  rejects({ ...base, ipam: { podCIDRs: ['10.244.1.0/33'] } }, /ipam\.podCIDRs\.0: "10\.244\.1\.0\/33" is not an IPv4 prefix/);
  rejects({ ...base, ipam: { mode: 'kubernetes' } }, /ipam\.mode: "kubernetes" needs kubernetes/);
  rejects({ node: { name: 'n1' }, kubernetes: {}, ipam: { podCIDRs: ['10.244.1.0/24'] } }, /ipam\.podCIDRs: is only for ipam\.mode static/);
  assert.equal(parseConfig({ node: { name: 'n1' }, services: { files: ['x'] }, cni: { enabled: false } }).cni.enabled, false);
  rejects({ ...base, routing: { mode: 'geneve' } }, /routing\.mode: "geneve" must be equal to one of the allowed values/);
  rejects({ ...base, routing: { nodes: [{ name: 'n2', addresses: [] }] } }, /routing\.nodes\.0\.addresses: \[\] must NOT have fewer than 1 items/);
});

test('exactly one source of Services', () => {
  rejects({ node: { name: 'n1' }, ipam: { podCIDRs: ['10.244.1.0/24'] } }, /no source of Services/);
  rejects({ ...base, kubernetes: {} }, /services\.files and kubernetes are both set/);
});

test('loadConfig names the file, and says what is wrong with it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hypha-config-'));
  try {
    const file = path.join(dir, 'agent.yaml');
    assert.throws(() => loadConfig(path.join(dir, 'missing.yaml')), /config .*missing\.yaml: cannot be read: ENOENT/);
    writeFileSync(file, 'node: {name: n1\n  bpf: [');
    assert.throws(() => loadConfig(file), /config .*agent\.yaml: is not valid YAML/);
    writeFileSync(file, 'node: {name: n1}\nservices: {files: [svc]}\nipam: {podCIDRs: [10.244.1.0/24]}\nbpf: {mapSizes: {ct: 0}}\n');
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof ConfigError && e.message === `config ${file}: bpf.mapSizes.ct: 0 must be >= 1`);
    writeFileSync(file, 'node: {name: n1}\nservices: {files: [svc]}\nipam: {podCIDRs: [10.244.1.0/24]}\n');
    assert.deepEqual(loadConfig(file).services.files, [path.join(dir, 'svc')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sysctl.manageRpFilter: on unless turned off; a non-boolean is named', () => {
  assert.equal(parseConfig(base, '/etc/hypha').sysctl.manageRpFilter, true);
  assert.equal(parseConfig({ ...base, sysctl: { manageRpFilter: false } }, '/etc/hypha').sysctl.manageRpFilter, false);
  rejects({ ...base, sysctl: { manageRpFilter: 'no' } }, /^config: sysctl\.manageRpFilter: "no" must be boolean$/);
  rejects({ ...base, sysctl: { ipForward: true } }, /sysctl\.ipForward: is not a known setting/);
});

test('bpf.nodePortRange and bpf.mark: defaults, and bad values named with the field', () => {
  const cfg = parseConfig(base, '/etc/hypha');
  assert.deepEqual(cfg.bpf.nodePortRange, { min: 30000, max: 32767 });
  assert.equal(cfg.bpf.mark, 0x00400000);
  rejects({ ...base, bpf: { nodePortRange: { min: 32000, max: 31000 } } }, /bpf\.nodePortRange: min 32000 is above max 31000/);
  rejects({ ...base, bpf: { nodePortRange: { min: 0 } } }, /bpf\.nodePortRange\.min/);
  rejects({ ...base, bpf: { mark: 0x300 } }, /bpf\.mark: 0x300 must be a single bit/);
  rejects({ ...base, bpf: { mark: 0 } }, /bpf\.mark/);
});

test('a DaemonSet pod takes its node name from HYPHA_NODE_NAME when the shared config has none', () => {
  const shared = { kubernetes: {}, log: { level: 'info' } };
  assert.equal(parseConfig(shared, '/etc/hypha', { HYPHA_NODE_NAME: 'node-7' }).node.name, 'node-7');
  assert.equal(parseConfig({ ...shared, node: { addresses: [] } }, '/etc/hypha', { HYPHA_NODE_NAME: 'node-7' }).node.name, 'node-7');
  // A name written in the config wins.
  assert.equal(parseConfig({ ...shared, node: { name: 'n1' } }, '/etc/hypha', { HYPHA_NODE_NAME: 'node-7' }).node.name, 'n1');
  assert.throws(() => parseConfig(shared, '/etc/hypha', {}), /^ConfigError: config: node: is required \(or set HYPHA_NODE_NAME, as the DaemonSet does from spec\.nodeName\)$/);
  assert.throws(() => parseConfig({ ...shared, node: {} }, '/etc/hypha', {}), /node\.name: is required \(or set HYPHA_NODE_NAME/);
  assert.throws(() => parseConfig(shared, '/etc/hypha', { HYPHA_NODE_NAME: '' }), /node\.name: "" must NOT have fewer than 1 characters/);
});
