// The agent's CNI socket with a fake handler, spoken to the way the shim does
// (one JSON request, shutdown, one JSON response), in a scratch directory.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { CNI_ERR } from './errors.ts';
import { FakeHandler, type FakeCall } from './fake-handler.ts';
import { delQueueFileName, type AgentResponse, type WireRequest } from './protocol.ts';
import { startCniServer, type CniServer } from './server.ts';

const log = pino({ level: process.env.HYPHA_TEST_LOG ?? 'silent' });

/** Send raw bytes as one request (then shutdown) and read the whole answer. */
function send(socketPath: string, body: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    s.on('connect', () => s.end(body));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('error', reject);
  });
}

async function ask(socketPath: string, req: Partial<WireRequest> & { config: unknown }): Promise<AgentResponse> {
  return JSON.parse(await send(socketPath, JSON.stringify(req))) as AgentResponse;
}

const conf = (v = '1.1.0', extra: Record<string, unknown> = {}) => ({ cniVersion: v, name: 'hypha', type: 'hypha', ...extra });
const addReq = (containerId: string, extra: Partial<WireRequest> = {}): WireRequest => ({
  command: 'ADD', containerId, netns: '/run/netns/x', ifname: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p', path: '/opt/cni/bin', pid: process.pid, config: conf(), ...extra,
});

function errorOf(r: AgentResponse): { code: number; msg: string; details?: string } {
  assert.equal(r.ok, false, `expected an error, got ${JSON.stringify(r)}`);
  return (r as Extract<AgentResponse, { ok: false }>).error;
}

describe('CNI socket server', () => {
  let dir: string;
  let socketPath: string;
  let handler: FakeHandler;
  let server: CniServer;
  let registry: Registry;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hypha-cni-server-'));
    socketPath = path.join(dir, 'run', 'cni.sock');
    handler = new FakeHandler();
    registry = new Registry();
    server = await startCniServer({ socketPath, handler, log, metrics: registry, delQueueDir: path.join(dir, 'queue') });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the socket is 0600 in a 0700 directory', () => {
    assert.equal(server.address, socketPath);
    assert.ok(lstatSync(socketPath).isSocket());
    assert.equal(statSync(socketPath).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(socketPath)).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(path.dirname(socketPath)), ['cni.sock'], 'no temporary socket left behind');
  });

  test('ADD: the request reaches the handler parsed; the result comes back in the request version', async () => {
    for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const r = await ask(socketPath, addReq(`add-${v.replace(/\./g, '')}`, { config: conf(v) }));
      assert.equal(r.ok, true, JSON.stringify(r));
      const result = (r as { result: Record<string, unknown> }).result;
      assert.equal(result.cniVersion, v);
      const ip = (result.ips as Record<string, unknown>[])[0];
      if (v === '0.3.1' || v === '0.4.0') assert.equal(ip?.version, '4');
      else assert.equal(ip?.version, undefined);
      const route = (result.routes as Record<string, unknown>[])[0];
      assert.equal(route?.mtu, v === '1.1.0' ? 1450 : undefined);
    }
    const call = handler.calls.find((c) => c.containerId === 'add-110') as FakeCall;
    assert.deepEqual(call.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p' });
    assert.equal(call.netns, '/run/netns/x');
    assert.equal(call.pid, process.pid);
    assert.equal(call.config.cniVersion, '1.1.0');
  });

  test('DEL, CHECK, GC, STATUS answer ok without a result', async () => {
    await ask(socketPath, addReq('life'));
    const prevResult = { ips: [{ address: '10.244.0.99/32' }] };
    const bad = await ask(socketPath, { ...addReq('life'), command: 'CHECK', config: conf('1.1.0', { prevResult }) });
    assert.equal(errorOf(bad).code, CNI_ERR.CHECK_MISMATCH);
    assert.match(errorOf(bad).details ?? '', /want 10\.244\.0\.99\/32/);
    assert.deepEqual(await ask(socketPath, { ...addReq('life'), command: 'CHECK' }), { ok: true });
    assert.deepEqual(await ask(socketPath, { ...addReq('life'), command: 'DEL', netns: '' }), { ok: true });
    assert.deepEqual(await ask(socketPath, { ...addReq('life'), command: 'DEL' }), { ok: true }, 'DEL is idempotent');
    assert.deepEqual(await ask(socketPath, { command: 'STATUS', config: conf() }), { ok: true });
    await ask(socketPath, addReq('gc-keep'));
    await ask(socketPath, addReq('gc-drop'));
    const gc = await ask(socketPath, { command: 'GC', config: conf('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'gc-keep', ifname: 'eth0' }] }) });
    assert.deepEqual(gc, { ok: true });
    assert.ok(handler.attachments.has('gc-keep/eth0'));
    assert.ok(!handler.attachments.has('gc-drop/eth0'));
  });

  test('handler errors: CniErrors keep their code; a plain exception is 5, an errno one 103; the server survives', async () => {
    for (const code of [3, 11, 100, 102, 103, 104]) {
      const e = errorOf(await ask(socketPath, addReq(`fail-${code}-x`)));
      assert.equal(e.code, code);
      assert.match(e.msg, new RegExp(`fake failure ${code}`));
    }
    const plain = errorOf(await ask(socketPath, addReq('throw-plain-1')));
    assert.equal(plain.code, CNI_ERR.IO);
    assert.match(plain.msg, /fake bug for throw-plain-1/);
    const errno = errorOf(await ask(socketPath, addReq('throw-errno-1')));
    assert.equal(errno.code, CNI_ERR.DATAPATH);
    assert.equal(errno.details, 'step veth_create failed with EPERM');
    handler.statusError = 51;
    assert.equal(errorOf(await ask(socketPath, { command: 'STATUS', config: conf() })).code, 51);
    handler.statusError = undefined;
    assert.equal((await ask(socketPath, addReq('after-errors'))).ok, true);
  });

  test('bad requests get the error code naming the problem', async () => {
    assert.equal(errorOf(JSON.parse(await send(socketPath, 'not json')) as AgentResponse).code, CNI_ERR.DECODE);
    assert.equal(errorOf(JSON.parse(await send(socketPath, '[1]')) as AgentResponse).code, CNI_ERR.IO);
    const cases: [Partial<WireRequest> & { config: unknown }, number, RegExp][] = [
      [{ ...addReq('x'), command: 'PING' }, 4, /CNI_COMMAND "PING"/],
      [{ ...addReq('x'), containerId: '' }, 4, /CNI_CONTAINERID is not set/],
      [{ ...addReq('x'), ifname: 'a/b' }, 4, /CNI_IFNAME "a\/b"/],
      [{ ...addReq('x'), netns: '' }, 4, /CNI_NETNS is not set/],
      [{ ...addReq('x'), command: 'CHECK', netns: '' }, 4, /CNI_NETNS is not set/],
      [{ ...addReq('x'), args: 'FOO=1' }, 4, /CNI_ARGS: unknown key "FOO"/],
      [{ ...addReq('x'), pid: -3 }, 5, /pid: -3/],
      [{ ...addReq('x'), config: conf('0.2.0') }, 1, /"0\.2\.0"/],
      [{ ...addReq('x'), command: 'CHECK', config: conf('0.3.1') }, 1, /CHECK needs cniVersion 0\.4\.0/],
      [{ command: 'GC', config: conf('1.0.0', { 'cni.dev/valid-attachments': [] }) }, 1, /GC needs/],
      [{ command: 'GC', config: conf('1.1.0') }, 7, /cni\.dev\/valid-attachments is required/],
      [{ ...addReq('x'), config: conf('1.0.0', { name: 'a b' }) }, 7, /name: "a b"/],
      [{ ...addReq('x'), config: 'x' }, 6, /not a JSON object/],
    ];
    for (const [req, code, pattern] of cases) {
      const e = errorOf(await ask(socketPath, req));
      assert.equal(e.code, code, `${JSON.stringify(req)}: ${e.msg}`);
      assert.match(e.msg, pattern);
    }
    assert.equal(handler.calls.filter((c) => c.containerId === 'x').length, 0, 'nothing invalid reached the handler');
  });

  test('a request over the size limit is refused', async () => {
    const big = JSON.stringify({ ...addReq('big'), config: conf('1.1.0', { pad: 'x'.repeat(1 << 20) }) });
    const e = errorOf(JSON.parse(await send(socketPath, big)) as AgentResponse);
    assert.equal(e.code, CNI_ERR.IO);
    assert.match(e.msg, /larger than 1048576 bytes/);
  });

  test('VERSION over the socket', async () => {
    assert.deepEqual(await ask(socketPath, { command: 'VERSION', config: { cniVersion: '0.4.0' } }), {
      ok: true,
      result: { cniVersion: '0.4.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] },
    });
  });

  test('many requests in flight at once; the same attachment is serialised', async () => {
    const n = 40;
    let entered = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let allIn!: () => void;
    const allInside = new Promise<void>((r) => (allIn = r));
    let sameKeyInside = 0;
    let sameKeyMax = 0;
    handler.gate = async (call) => {
      if (call.containerId?.startsWith('conc-')) {
        if (++entered === n) allIn();
        await released;
      }
      if (call.containerId === 'serial') {
        sameKeyMax = Math.max(sameKeyMax, ++sameKeyInside);
        await new Promise((r) => setImmediate(r));
        sameKeyInside--;
      }
    };
    const pending = Array.from({ length: n }, (_, i) => ask(socketPath, addReq(`conc-${i}`)));
    await allInside; // every request is inside the handler at the same time
    release();
    const answers = await Promise.all(pending);
    assert.equal(answers.filter((a) => a.ok).length, n);
    const addrs = new Set(answers.map((a) => ((a as unknown as { result: { ips: { address: string }[] } }).result.ips[0]?.address)));
    assert.equal(addrs.size, n, 'each got its own address');
    const serial = await Promise.all([
      ask(socketPath, addReq('serial')),
      ask(socketPath, { ...addReq('serial'), command: 'CHECK' }),
      ask(socketPath, { ...addReq('serial'), command: 'DEL' }),
      ask(socketPath, { ...addReq('serial'), command: 'DEL' }),
    ]);
    assert.equal(serial.length, 4);
    assert.equal(sameKeyMax, 1, 'operations on one attachment never overlap');
    handler.gate = undefined;
  });

  test('metrics: requests by command and code, and durations', async () => {
    const text = await registry.metrics();
    assert.match(text, /hypha_cni_requests_total\{command="ADD",code="0"\} \d+/);
    assert.match(text, /hypha_cni_requests_total\{command="ADD",code="102"\} 1/);
    assert.match(text, /hypha_cni_requests_total\{command="STATUS",code="51"\} 1/);
    assert.match(text, /hypha_cni_request_duration_seconds_count\{command="DEL"\} \d+/);
  });

  test('an ADD after a queued DEL of the same attachment delivers the DEL first; a live DEL removes the queued copy', async () => {
    const queue = path.join(dir, 'queue');
    mkdirSync(queue, { recursive: true });
    await ask(socketPath, addReq('requeued'));
    const file = path.join(queue, delQueueFileName('requeued', 'eth0'));
    writeFileSync(file, JSON.stringify({ ...addReq('requeued'), command: 'DEL', queuedAt: Date.now() }));
    const callsBefore = handler.calls.length;
    const r = await ask(socketPath, addReq('requeued'));
    assert.equal(r.ok, true, 'the old attachment was deleted first, so no 102');
    assert.deepEqual(handler.calls.slice(callsBefore).map((c) => c.command), ['DEL', 'ADD']);
    assert.ok(!existsSync(file));
    writeFileSync(file, JSON.stringify({ ...addReq('requeued'), command: 'DEL' }));
    assert.deepEqual(await ask(socketPath, { ...addReq('requeued'), command: 'DEL' }), { ok: true });
    assert.ok(!existsSync(file), 'delivered live, so not again');
  });
});

describe('CNI socket lifecycle', () => {
  test('a stale socket is replaced; a live one, or a file that is not a socket, is not', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hypha-cni-life-'));
    try {
      const socketPath = path.join(dir, 'cni.sock');
      // A stale socket, as a crashed agent leaves it: bound under another name
      // (so closing does not unlink it), renamed into place, listener gone.
      const stale = createServer();
      await new Promise<void>((r) => stale.listen(path.join(dir, 'dead.sock'), r));
      renameSync(path.join(dir, 'dead.sock'), socketPath);
      await new Promise<void>((r) => stale.close(() => r()));
      assert.ok(lstatSync(socketPath).isSocket());
      await assert.rejects(ask(socketPath, { command: 'STATUS', config: conf() }), /ECONNREFUSED/);
      const server = await startCniServer({ socketPath, handler: new FakeHandler(), log });
      try {
        assert.equal((await ask(socketPath, { command: 'STATUS', config: conf() })).ok, true);
        await assert.rejects(startCniServer({ socketPath, handler: new FakeHandler(), log }), /in use by another process/);
        assert.equal((await ask(socketPath, { command: 'STATUS', config: conf() })).ok, true, 'the live server is untouched');
      } finally {
        await server.close();
      }
      assert.ok(!existsSync(socketPath), 'close removes the socket');
      writeFileSync(socketPath, 'not a socket');
      await assert.rejects(startCniServer({ socketPath, handler: new FakeHandler(), log }), /exists and is not a socket/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('close waits for requests in flight to be answered', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hypha-cni-close-'));
    try {
      const socketPath = path.join(dir, 'cni.sock');
      const handler = new FakeHandler();
      let inside!: () => void;
      const isInside = new Promise<void>((r) => (inside = r));
      let release!: () => void;
      handler.gate = () => {
        inside();
        return new Promise<void>((r) => (release = r));
      };
      const server = await startCniServer({ socketPath, handler, log });
      after(() => server.close());
      const answer = ask(socketPath, addReq('slow'));
      await isInside;
      let closed = false;
      const closing = server.close().then(() => (closed = true));
      await new Promise((r) => setImmediate(r));
      assert.equal(closed, false, 'still waiting for the request');
      release();
      assert.equal((await answer).ok, true);
      await closing;
      assert.equal(closed, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('two servers can share a registry (metrics registered once)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hypha-cni-reg-'));
    try {
      const registry = new Registry();
      const a = await startCniServer({ socketPath: path.join(dir, 'a.sock'), handler: new FakeHandler(), log, metrics: registry });
      const b = await startCniServer({ socketPath: path.join(dir, 'b.sock'), handler: new FakeHandler(), log, metrics: registry });
      try {
        await ask(path.join(dir, 'b.sock'), { command: 'STATUS', config: conf() });
        assert.match(await registry.metrics(), /hypha_cni_requests_total\{command="STATUS",code="0"\} 1/);
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
