import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CONFLIST_NAME, buildConflist, findBuiltShim, installCni, uninstallCni, writeFileAtomic } from './install.ts';
import { parseNetConf } from './spec.ts';

let dir: string;
let shim: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hypha-cni-install-'));
  shim = path.join(dir, 'hypha-cni');
  writeFileSync(shim, '#!/bin/sh\necho fake shim v1\n', { mode: 0o600 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('the conflist: cniVersion 1.1.0, every version, one hypha plugin with the socket and the queue', () => {
  assert.deepEqual(buildConflist(), {
    cniVersion: '1.1.0',
    cniVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    name: 'hypha',
    plugins: [{ type: 'hypha', agentSocket: '/var/run/hypha/cni.sock', delQueueDir: '/var/lib/hypha/cni-del-queue' }],
  });
  const custom = buildConflist({ agentSocket: '/run/h/cni.sock', delQueueDir: '/var/q', agentTimeoutSeconds: 30 });
  assert.deepEqual(custom.plugins, [{ type: 'hypha', agentSocket: '/run/h/cni.sock', delQueueDir: '/var/q', agentTimeoutSeconds: 30 }]);
  // What a runtime derives for the plugin passes Hypha's own validation.
  const [plugin] = custom.plugins as Record<string, unknown>[];
  assert.doesNotThrow(() => parseNetConf({ cniVersion: '1.1.0', name: 'hypha', ...plugin }));
});

test('install: binary 0755 and conflist 0644, written atomically; again with the same binary changes nothing', async () => {
  const binDir = path.join(dir, 'opt/cni/bin');
  const confDir = path.join(dir, 'etc/cni/net.d');
  const first = await installCni({ shimPath: shim, binDir, confDir, agentSocket: '/run/h.sock' });
  assert.equal(first.binary, path.join(binDir, 'hypha'));
  assert.equal(first.conflist, path.join(confDir, CONFLIST_NAME));
  assert.equal(first.binaryChanged, true);
  assert.equal(statSync(first.binary).mode & 0o777, 0o755);
  assert.equal(readFileSync(first.binary, 'utf8'), readFileSync(shim, 'utf8'));
  assert.equal(statSync(first.conflist).mode & 0o777, 0o644);
  const conflist = JSON.parse(readFileSync(first.conflist, 'utf8')) as { plugins: { agentSocket: string }[] };
  assert.equal(conflist.plugins[0]?.agentSocket, '/run/h.sock');
  assert.deepEqual(readdirSync(binDir), ['hypha'], 'no temporary file left');
  assert.deepEqual(readdirSync(confDir), [CONFLIST_NAME]);

  const again = await installCni({ shimPath: shim, binDir, confDir });
  assert.equal(again.binaryChanged, false);
  writeFileSync(shim, '#!/bin/sh\necho fake shim v2\n');
  const upgraded = await installCni({ shimPath: shim, binDir, confDir });
  assert.equal(upgraded.binaryChanged, true);
  assert.match(readFileSync(upgraded.binary, 'utf8'), /v2/);
});

test('install fails clearly when the shim is missing, and leaves nothing behind', async () => {
  const binDir = path.join(dir, 'bin-missing');
  await assert.rejects(installCni({ shimPath: path.join(dir, 'nope'), binDir, confDir: path.join(dir, 'conf-missing') }), /ENOENT/);
  assert.deepEqual(readdirSync(binDir), []);
});

test('uninstall removes the conflist and keeps the binary (DEL must keep working)', async () => {
  const binDir = path.join(dir, 'u/bin');
  const confDir = path.join(dir, 'u/conf');
  await installCni({ shimPath: shim, binDir, confDir });
  assert.equal(await uninstallCni({ confDir }), true);
  assert.ok(!existsSync(path.join(confDir, CONFLIST_NAME)));
  assert.ok(existsSync(path.join(binDir, 'hypha')));
  assert.equal(await uninstallCni({ confDir }), false, 'nothing to remove the second time');
});

test('writeFileAtomic replaces the file whole', async () => {
  const target = path.join(dir, 'atomic.json');
  await writeFileAtomic(target, 'one', 0o640);
  await writeFileAtomic(target, 'two', 0o640);
  assert.equal(readFileSync(target, 'utf8'), 'two');
  assert.equal(statSync(target).mode & 0o777, 0o640);
});

test('findBuiltShim walks up to the checkout that has src/cni/build/hypha-cni', () => {
  const root = path.join(dir, 'checkout');
  mkdirSync(path.join(root, 'src/cni/build'), { recursive: true });
  mkdirSync(path.join(root, '.cache/js/src/cni'), { recursive: true });
  writeFileSync(path.join(root, 'src/cni/build/hypha-cni'), '');
  assert.equal(findBuiltShim(path.join(root, 'src/cni')), path.join(root, 'src/cni/build/hypha-cni'));
  assert.equal(findBuiltShim(path.join(root, '.cache/js/src/cni')), path.join(root, 'src/cni/build/hypha-cni'), 'from the stripped tree too');
  assert.equal(findBuiltShim(path.join(dir, 'elsewhere')), undefined);
});

test('a portmap plugin beside the shim (Hypha\'s image) is installed as hypha-portmap, never over a node\'s portmap, and chained after hypha for hostPort', async () => {
  const img = path.join(dir, 'image');
  mkdirSync(img);
  writeFileSync(path.join(img, 'hypha-cni'), 'shim\n');
  writeFileSync(path.join(img, 'hypha-portmap'), 'portmap v1.9.1\n');
  const binDir = path.join(dir, 'pm/bin');
  const confDir = path.join(dir, 'pm/net.d');
  mkdirSync(binDir, { recursive: true });
  writeFileSync(path.join(binDir, 'portmap'), 'the node\'s own\n');
  await installCni({ shimPath: path.join(img, 'hypha-cni'), binDir, confDir });
  assert.deepEqual(readdirSync(binDir).sort(), ['hypha', 'hypha-portmap', 'portmap']);
  assert.equal(readFileSync(path.join(binDir, 'portmap'), 'utf8'), 'the node\'s own\n');
  assert.equal(statSync(path.join(binDir, 'hypha-portmap')).mode & 0o777, 0o755);
  const list = JSON.parse(readFileSync(path.join(confDir, CONFLIST_NAME), 'utf8')) as { plugins: { type: string; capabilities?: Record<string, boolean> }[] };
  assert.deepEqual(list.plugins.map((p) => p.type), ['hypha', 'hypha-portmap']);
  assert.deepEqual(list.plugins[1]!.capabilities, { portMappings: true });
  // Without one (a checkout), the conflist has Hypha's plugin alone.
  const bare = path.join(dir, 'bare');
  await installCni({ shimPath: shim, binDir: path.join(bare, 'bin'), confDir: path.join(bare, 'net.d') });
  assert.deepEqual((JSON.parse(readFileSync(path.join(bare, 'net.d', CONFLIST_NAME), 'utf8')) as { plugins: unknown[] }).plugins.length, 1);
});
