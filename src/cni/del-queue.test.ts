import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { CniError } from './errors.ts';
import { FakeHandler } from './fake-handler.ts';
import { delQueueFileName, type WireRequest } from './protocol.ts';
import { replayDelQueue } from './del-queue.ts';

const log = pino({ level: process.env.HYPHA_TEST_LOG ?? 'silent' });
let dir: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hypha-del-queue-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const queued = (containerId: string, ifname = 'eth0', extra: Partial<WireRequest> = {}): WireRequest & { queuedAt: number } => ({
  command: 'DEL', containerId, netns: '/run/netns/gone', ifname, args: 'IgnoreUnknown=1;K8S_POD_NAME=p', path: '/opt/cni/bin', pid: 4242,
  config: { cniVersion: '1.0.0', name: 'hypha', type: 'hypha', prevResult: { ips: [{ address: '10.244.0.7/32' }] } },
  queuedAt: Date.now(), ...extra,
});

function put(q: string, req: { containerId: string; ifname: string; command?: string }): string {
  mkdirSync(q, { recursive: true });
  const file = path.join(q, delQueueFileName(req.containerId, req.ifname));
  writeFileSync(file, JSON.stringify(req));
  return file;
}

test('queue file names: containerId, then the ifname with everything but [A-Za-z0-9_-] percent-encoded', () => {
  assert.equal(delQueueFileName('abc123', 'eth0'), 'abc123.eth0.json');
  assert.equal(delQueueFileName('a.b', 'net.1'), 'a.b.net%2E1.json');
  assert.equal(delQueueFileName('c', 'é'), 'c.%C3%A9.json');
  assert.equal(delQueueFileName('c', 'a%b'), 'c.a%25b.json');
});

test('a missing queue directory is an empty queue', async () => {
  assert.deepEqual(await replayDelQueue(path.join(dir, 'none'), new FakeHandler(), log), { done: 0, failed: 0 });
});

test('each queued DEL reaches handler.del, parsed, without the dead shim pid; delivered files are removed', async () => {
  const q = path.join(dir, 'ok');
  put(q, queued('c1'));
  put(q, queued('c2', 'net1'));
  const handler = new FakeHandler();
  assert.deepEqual(await replayDelQueue(q, handler, log), { done: 2, failed: 0 });
  assert.deepEqual(handler.calls.map((c) => [c.command, c.containerId, c.ifname]).sort(), [['DEL', 'c1', 'eth0'], ['DEL', 'c2', 'net1']]);
  const c1 = handler.calls.find((c) => c.containerId === 'c1');
  assert.equal(c1?.pid, undefined);
  assert.equal(c1?.netns, '/run/netns/gone');
  assert.deepEqual(c1?.args, { IgnoreUnknown: '1', K8S_POD_NAME: 'p' });
  assert.deepEqual(c1?.config.prevResult, { interfaces: [], ips: [{ address: '10.244.0.7/32' }], routes: [] });
  assert.deepEqual(readdirSync(q), []);
});

test('a retriable failure keeps the file for the next replay; a final one removes it', async () => {
  const q = path.join(dir, 'fail');
  const keep = put(q, queued('fail-11-agent-busy'));
  const drop = put(q, queued('fail-103-kernel'));
  const handler = new FakeHandler();
  assert.deepEqual(await replayDelQueue(q, handler, log), { done: 0, failed: 2 });
  assert.ok(existsSync(keep), 'code 11 is retried later');
  assert.ok(!existsSync(drop), 'code 103 is final');
  // Next time the handler copes.
  const better = new FakeHandler();
  better.del = async () => undefined;
  assert.deepEqual(await replayDelQueue(q, better, log), { done: 1, failed: 0 });
  assert.ok(!existsSync(keep));
});

test('a transient errno failure (EBUSY) is retriable too', async () => {
  const q = path.join(dir, 'busy');
  const file = put(q, queued('c-busy'));
  const handler = new FakeHandler();
  handler.del = async () => {
    throw new CniError(103, 'netlink busy', '', { cause: Object.assign(new Error('busy'), { code: 'EBUSY' }) });
  };
  assert.deepEqual(await replayDelQueue(q, handler, log), { done: 0, failed: 1 });
  assert.ok(existsSync(file));
});

test('files that are not valid queued DELs are set aside as .invalid, never delivered', async () => {
  const q = path.join(dir, 'invalid');
  mkdirSync(q, { recursive: true });
  writeFileSync(path.join(q, 'junk.eth0.json'), '{not json');
  put(q, { ...queued('add-not-del'), command: 'ADD' });
  put(q, queued('bad-conf', 'eth0', { config: { cniVersion: '9.9.9', name: 'x', type: 'hypha' } }));
  writeFileSync(path.join(q, 'README'), 'ignored: not .json');
  const handler = new FakeHandler();
  assert.deepEqual(await replayDelQueue(q, handler, log), { done: 0, failed: 3 });
  assert.equal(handler.calls.length, 0);
  assert.deepEqual(readdirSync(q).sort(), ['README', 'add-not-del.eth0.json.invalid', 'bad-conf.eth0.json.invalid', 'junk.eth0.json.invalid']);
});

test("a shim's temporary file is left alone while fresh, removed when old", async () => {
  const q = path.join(dir, 'tmp');
  mkdirSync(q, { recursive: true });
  const fresh = path.join(q, '.c1.eth0.json.tmp.123');
  const old = path.join(q, '.c2.eth0.json.tmp.456');
  writeFileSync(fresh, '{');
  writeFileSync(old, '{');
  const longAgo = (Date.now() - 3600_000) / 1000;
  utimesSync(old, longAgo, longAgo);
  assert.deepEqual(await replayDelQueue(q, new FakeHandler(), log), { done: 0, failed: 0 });
  assert.ok(existsSync(fresh));
  assert.ok(!existsSync(old));
});
