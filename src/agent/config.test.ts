import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfig } from './config.ts';

const base = { node: { name: 'n1' }, services: { files: ['svc'] } };

function rejects(data: unknown, message: RegExp): void {
  assert.throws(() => parseConfig(data, '/etc/hypha'), (e: unknown) => e instanceof ConfigError && message.test(e.message), `expected ${message}`);
}

test('defaults are filled in and relative paths resolve against the file', () => {
  const cfg = parseConfig(base, '/etc/hypha');
  assert.deepEqual(cfg.services.files, ['/etc/hypha/svc']);
  assert.equal(cfg.bpf.pinRoot, '/sys/fs/bpf/hypha');
  assert.equal(cfg.bpf.hostRouting, true);
  assert.equal(cfg.devices.externalMode, 'auto');
  assert.deepEqual(cfg.devices.pods, ['lxc*']);
  assert.equal(cfg.listen.port, 9890);
  assert.equal(cfg.sync.conntrackGcMaxSeconds, 60);
  const k = parseConfig({ node: { name: 'n1' }, kubernetes: { kubeconfig: 'kc' } }, '/etc/hypha');
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
});

test('several errors are reported together', () => {
  rejects({ ...base, bpf: { mapSizes: { ct: 0, services: -1 } } }, /bpf\.mapSizes\.services: -1 must be >= 1; bpf\.mapSizes\.ct: 0 must be >= 1/);
});

test('exactly one source of Services', () => {
  rejects({ node: { name: 'n1' } }, /no source of Services/);
  rejects({ ...base, kubernetes: {} }, /services\.files and kubernetes are both set/);
});

test('loadConfig names the file, and says what is wrong with it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hypha-config-'));
  try {
    const file = path.join(dir, 'agent.yaml');
    assert.throws(() => loadConfig(path.join(dir, 'missing.yaml')), /config .*missing\.yaml: cannot be read: ENOENT/);
    writeFileSync(file, 'node: {name: n1\n  bpf: [');
    assert.throws(() => loadConfig(file), /config .*agent\.yaml: is not valid YAML/);
    writeFileSync(file, 'node: {name: n1}\nservices: {files: [svc]}\nbpf: {mapSizes: {ct: 0}}\n');
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof ConfigError && e.message === `config ${file}: bpf.mapSizes.ct: 0 must be >= 1`);
    writeFileSync(file, 'node: {name: n1}\nservices: {files: [svc]}\n');
    assert.deepEqual(loadConfig(file).services.files, [path.join(dir, 'svc')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
