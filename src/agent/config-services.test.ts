// The services section of the agent's configuration: services.externalIPs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from './config.ts';

const base = { node: { name: 'n1' }, services: { files: ['svc'] }, ipam: { podCIDRs: ['10.244.1.0/24'] } };

test('services.externalIPs.allowedCIDRs: unset means any; a list limits them; a bad prefix is named', () => {
  assert.equal(parseConfig(base, '/etc/hypha').services.externalIPs.allowedCIDRs, undefined);
  const cfg = parseConfig({ ...base, services: { ...base.services, externalIPs: { allowedCIDRs: ['198.51.100.0/24'] } } }, '/etc/hypha');
  assert.deepEqual(cfg.services.externalIPs.allowedCIDRs, ['198.51.100.0/24']);
  assert.deepEqual(parseConfig({ ...base, services: { ...base.services, externalIPs: { allowedCIDRs: [] } } }).services.externalIPs.allowedCIDRs, []);
  assert.throws(() => parseConfig({ ...base, services: { ...base.services, externalIPs: { allowedCIDRs: ['198.51.100.0/33'] } } }),
    (err: Error) => err instanceof ConfigError && err.message === 'config: services.externalIPs.allowedCIDRs.0: "198.51.100.0/33" is not an IPv4 prefix (a.b.c.d/n)');
  assert.throws(() => parseConfig({ ...base, services: { ...base.services, externalIPs: { allowed: [] } } }), /services\.externalIPs\.allowed: is not a known setting/);
});
