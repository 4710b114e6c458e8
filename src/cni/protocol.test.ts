import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CniError } from './errors.ts';
import { errorResponse, okResponse, parseAgentRequest } from './protocol.ts';

const config = { cniVersion: '1.1.0', name: 'hypha', type: 'hypha' };

test('ADD: environment fields and the config become a CniRequest', () => {
  const r = parseAgentRequest({
    command: 'ADD', containerId: 'c1', netns: '/run/netns/p', ifname: 'eth0',
    args: 'K8S_POD_NAMESPACE=a;K8S_POD_NAME=b', path: '/opt/cni/bin:/usr/lib/cni', pid: 77, config,
  });
  assert.deepEqual(r, {
    command: 'ADD', cniVersion: '1.1.0',
    req: { containerId: 'c1', netns: '/run/netns/p', ifname: 'eth0', args: { K8S_POD_NAMESPACE: 'a', K8S_POD_NAME: 'b' }, path: ['/opt/cni/bin', '/usr/lib/cni'], pid: 77, config },
  });
});

test("DEL may come without a netns; pid is optional; args and path default to empty", () => {
  const r = parseAgentRequest({ command: 'DEL', containerId: 'c1', netns: '', ifname: 'eth0', config });
  assert.equal(r.command, 'DEL');
  assert.deepEqual(r.command === 'DEL' && r.req, { containerId: 'c1', netns: '', ifname: 'eth0', args: {}, path: [], config });
});

test('GC carries the valid attachments; STATUS only the config; VERSION echoes the version', () => {
  const gc = parseAgentRequest({ command: 'GC', config: { ...config, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] } });
  assert.deepEqual(gc.command === 'GC' && gc.gc.validAttachments, [{ containerId: 'c1', ifname: 'eth0' }]);
  const st = parseAgentRequest({ command: 'STATUS', config });
  assert.deepEqual(st, { command: 'STATUS', cniVersion: '1.1.0', config });
  assert.deepEqual(parseAgentRequest({ command: 'VERSION', config: { cniVersion: '0.3.1' } }), { command: 'VERSION', cniVersion: '0.3.1' });
});

test('a field of the wrong type names the environment variable', () => {
  assert.throws(() => parseAgentRequest({ command: 'ADD', containerId: 5, netns: '/x', ifname: 'eth0', config }), (e: unknown) => {
    assert.ok(e instanceof CniError);
    assert.equal(e.code, 4);
    assert.match(e.message, /CNI_CONTAINERID: request field containerId must be a string, got number/);
    return true;
  });
  assert.throws(() => parseAgentRequest(null), /not a JSON object/);
});

test('responses', () => {
  assert.deepEqual(okResponse(), { ok: true });
  assert.deepEqual(okResponse({ cniVersion: '1.1.0' }), { ok: true, result: { cniVersion: '1.1.0' } });
  assert.deepEqual(errorResponse(new CniError(102, 'attached')), { ok: false, error: { code: 102, msg: 'attached' } });
  assert.deepEqual(errorResponse(new CniError(104, 'differs', 'mac')), { ok: false, error: { code: 104, msg: 'differs', details: 'mac' } });
});
