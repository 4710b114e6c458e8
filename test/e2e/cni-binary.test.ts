// The built CNI shim (src/cni/build/hypha-cni) invoked exactly as a container
// runtime invokes it (CNI_* environment, the network configuration on stdin,
// CNI_NETNS a scratch network namespace) against the agent's socket server
// (startCniServer) with a fake endpoint handler. Every output is checked
// against a JSON schema of that version's result, error or VERSION object
// (test/cni-schemas/).
//
//   node --test test/e2e/cni-binary.test.ts        (as root)
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { pino } from 'pino';
import { FakeHandler } from '../../src/cni/fake-handler.ts';
import { delQueueFileName } from '../../src/cni/protocol.ts';
import { replayDelQueue, startCniServer, type CniServer } from '../../src/cni/server.ts';
import { CNI_VERSIONS, type CniVersion } from '../../src/cni/spec.ts';
import { Topology } from './lib/topology.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SHIM = path.join(REPO, 'src/cni/build/hypha-cni');
const SCHEMAS = path.join(REPO, 'test/cni-schemas');
const log = pino({ level: process.env.HYPHA_E2E_LOG ?? 'silent' });

// ---------------------------------------------------------------------------
// Schemas

const ajv = new Ajv({ allErrors: true, strict: true });
const schema = (name: string): ValidateFunction => ajv.compile(JSON.parse(readFileSync(path.join(SCHEMAS, `${name}.json`), 'utf8')) as object);
const resultSchema = Object.fromEntries(CNI_VERSIONS.map((v) => [v, schema(`result-${v}`)])) as Record<CniVersion, ValidateFunction>;
const errorSchema = schema('error');
const versionSchema = schema('version');

function valid(validate: ValidateFunction, value: unknown, what: string): void {
  assert.ok(validate(value), `${what} does not match its schema: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------
// Running the shim as a runtime does

interface ShimRun {
  status: number | null;
  stdout: string;
  stderr: string;
  pid: number;
  /** stdout as JSON (undefined when empty). */
  json: Record<string, unknown> | undefined;
}

interface ShimCall {
  command: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  /** The network configuration (an object is JSON-encoded; a string goes as is). */
  config: unknown;
  /** Extra environment (HYPHA_CNI_LOG ...). */
  env?: Record<string, string>;
  /** Leave these variables out entirely. */
  unset?: string[];
}

function runShim(call: ShimCall): Promise<ShimRun> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId ?? '',
    CNI_NETNS: call.netns ?? '',
    CNI_IFNAME: call.ifname ?? 'eth0',
    CNI_ARGS: call.args ?? 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x',
    CNI_PATH: call.path ?? '/opt/cni/bin',
    ...call.env,
  };
  for (const k of call.unset ?? []) delete env[k];
  for (const [k, v] of Object.entries(env)) if (v === '' && k !== 'CNI_ARGS') delete env[k];
  const input = typeof call.config === 'string' ? call.config : JSON.stringify(call.config);
  return new Promise((resolve, reject) => {
    const child = spawn(SHIM, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => {
      let json: Record<string, unknown> | undefined;
      if (stdout.trim() !== '') json = JSON.parse(stdout) as Record<string, unknown>;
      resolve({ status, stdout, stderr, pid: child.pid ?? 0, json });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** The CNI error object printed, checked against the schema; exit status 1. */
function cniError(r: ShimRun, version: string): { code: number; msg: string; details?: string } {
  assert.equal(r.status, 1, `expected exit 1, got ${r.status}: ${r.stdout} ${r.stderr}`);
  valid(errorSchema, r.json, 'error');
  assert.equal(r.json?.cniVersion, version);
  return r.json as { code: number; msg: string; details?: string };
}

function success(r: ShimRun, what: string): void {
  assert.equal(r.status, 0, `${what}: exit ${r.status}: ${r.stdout} ${r.stderr}`);
}

const netconf = (v: string, socket: string, queue: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: v, name: 'hypha', type: 'hypha', agentSocket: socket, delQueueDir: queue, ...extra,
});

/** Lines of pino-shaped JSON on stderr. */
function logLines(stderr: string): Record<string, unknown>[] {
  return stderr.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

// ---------------------------------------------------------------------------

describe('the CNI shim as a runtime runs it', () => {
  let topo: Topology;
  let netns: string; // a scratch network namespace for CNI_NETNS
  let work: string;
  let socket: string;
  let queue: string;
  let handler: FakeHandler;
  let server: CniServer;

  before(async () => {
    const made = spawnSync('make', ['-s', '-C', REPO, 'cni-shim'], { encoding: 'utf8' });
    assert.equal(made.status, 0, `make cni-shim failed: ${made.stderr}`);
    Topology.sweepStale();
    topo = await Topology.create({ name: 'cni-binary' });
    netns = topo.netnsPath(topo.fabric);
    work = mkdtempSync(path.join(tmpdir(), 'hypha-cni-e2e-'));
    socket = path.join(work, 'run', 'cni.sock');
    queue = path.join(work, 'queue');
    handler = new FakeHandler();
    server = await startCniServer({ socketPath: socket, handler, log, delQueueDir: queue });
  });

  after(async () => {
    await server?.close();
    await topo?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const v of CNI_VERSIONS) {
    test(`cniVersion ${v}: ADD, CHECK, GC, STATUS, DEL, VERSION`, async () => {
      const id = `pod-${v.replace(/\./g, '')}`;
      const conf = netconf(v, socket, queue);
      const atLeast = (min: CniVersion): boolean => CNI_VERSIONS.indexOf(v) >= CNI_VERSIONS.indexOf(min);

      const add = await runShim({ command: 'ADD', containerId: id, netns, config: conf });
      success(add, 'ADD');
      assert.equal(add.stderr, '', 'quiet when all is well');
      valid(resultSchema[v], add.json, `ADD result ${v}`);
      const result = add.json as { interfaces: { name: string; sandbox?: string }[]; ips: Record<string, unknown>[] };
      assert.equal(result.interfaces[1]?.name, 'eth0');
      assert.equal(result.interfaces[1]?.sandbox, netns);
      const call = handler.calls.find((c) => c.command === 'ADD' && c.containerId === id);
      assert.ok(call, 'the handler got the ADD');
      assert.equal(call.pid, add.pid, "the request carries the shim's pid");
      assert.equal(call.netns, netns);
      assert.deepEqual(call.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0', K8S_POD_INFRA_CONTAINER_ID: 'x' });

      const check = await runShim({ command: 'CHECK', containerId: id, netns, config: { ...conf, prevResult: add.json } });
      if (atLeast('0.4.0')) {
        success(check, 'CHECK');
        assert.equal(check.stdout, '');
        const seen = handler.calls.find((c) => c.command === 'CHECK' && c.containerId === id);
        assert.deepEqual(seen?.config.prevResult?.ips.map((i) => i.address), result.ips.map((i) => i.address), 'prevResult converted from this version');
      } else {
        const e = cniError(check, v);
        assert.equal(e.code, 1);
        assert.match(e.msg, /CHECK needs cniVersion 0\.4\.0/);
      }

      const gc = await runShim({ command: 'GC', config: { ...conf, 'cni.dev/valid-attachments': [{ containerID: id, ifname: 'eth0' }] }, unset: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS', 'CNI_ARGS'] });
      const status = await runShim({ command: 'STATUS', config: conf, unset: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS', 'CNI_ARGS'] });
      for (const [name, r] of [['GC', gc], ['STATUS', status]] as const) {
        if (atLeast('1.1.0')) {
          success(r, name);
          assert.equal(r.stdout, '');
        } else {
          const e = cniError(r, v);
          assert.equal(e.code, 1);
          assert.match(e.msg, new RegExp(`${name} needs cniVersion 1\\.1\\.0`));
        }
      }
      if (atLeast('1.1.0')) assert.ok(handler.attachments.has(`${id}/eth0`), 'GC kept the valid attachment');

      const del = await runShim({ command: 'DEL', containerId: id, netns, config: { ...conf, prevResult: add.json } });
      success(del, 'DEL');
      assert.equal(del.stdout, '');
      assert.ok(!handler.attachments.has(`${id}/eth0`));
      const delAgain = await runShim({ command: 'DEL', containerId: id, config: conf, unset: ['CNI_NETNS'] });
      success(delAgain, 'a second DEL, without CNI_NETNS');

      const version = await runShim({ command: 'VERSION', config: { cniVersion: v }, unset: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS'] });
      success(version, 'VERSION');
      valid(versionSchema, version.json, 'VERSION');
      assert.deepEqual(version.json, { cniVersion: v, supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    });
  }

  test('HYPHA_CNI_LOG=debug logs pino-shaped lines on stderr; stdout stays the result', async () => {
    const r = await runShim({ command: 'ADD', containerId: 'debug-1', netns, config: netconf('1.1.0', socket, queue), env: { HYPHA_CNI_LOG: 'debug' } });
    success(r, 'ADD');
    valid(resultSchema['1.1.0'], r.json, 'ADD result');
    const lines = logLines(r.stderr);
    assert.ok(lines.length > 0);
    for (const l of lines) {
      assert.equal(typeof l.level, 'number');
      assert.equal(typeof l.time, 'number');
      assert.equal(typeof l.msg, 'string');
      assert.equal(l.pid, r.pid);
      assert.equal(l.name, 'hypha-cni');
    }
    assert.ok(lines.some((l) => l.level === 20 && l.command === 'ADD' && l.containerId === 'debug-1'));
  });

  describe('bad input is refused before the agent is asked', () => {
    const before0 = (): number => handler.calls.length;

    test('malformed JSON is 6; not an object is 6', async () => {
      const n = before0();
      const r = await runShim({ command: 'ADD', containerId: 'bad-json', netns, config: '{"cniVersion": "1.0.0",' });
      const e = cniError(r, '1.1.0');
      assert.equal(e.code, 6);
      assert.match(e.msg, /not JSON/);
      const arr = cniError(await runShim({ command: 'ADD', containerId: 'bad-json', netns, config: '[1,2]' }), '1.1.0');
      assert.equal(arr.code, 6);
      assert.match(arr.msg, /not a JSON object/);
      const empty = cniError(await runShim({ command: 'DEL', containerId: 'bad-json', config: '' }), '1.1.0');
      assert.equal(empty.code, 6);
      assert.match(empty.msg, /stdin is empty/);
      assert.equal(handler.calls.length, n);
      const line = logLines(r.stderr).find((l) => l.level === 50);
      assert.equal(line?.code, 6, 'a failure is logged on stderr');
    });

    test('an unknown or missing cniVersion is 1, naming it', async () => {
      for (const [config, pattern] of [
        [{ ...netconf('0.2.0', socket, queue) }, /cniVersion "0\.2\.0" is not supported/],
        [{ ...netconf('2.0.0', socket, queue) }, /"2\.0\.0"/],
        [{ name: 'hypha', type: 'hypha', agentSocket: socket }, /cniVersion is missing/],
      ] as const) {
        const r = await runShim({ command: 'ADD', containerId: 'bad-version', netns, config });
        const e = cniError(r, typeof (config as { cniVersion?: string }).cniVersion === 'string' ? (config as { cniVersion: string }).cniVersion : '1.1.0');
        assert.equal(e.code, 1);
        assert.match(e.msg, pattern);
      }
    });

    test('an unknown command or missing variables are 4, naming the variable', async () => {
      const conf = netconf('1.0.0', socket, queue);
      const cases: [ShimCall, RegExp][] = [
        [{ command: 'ADD', containerId: 'x', config: conf, unset: ['CNI_NETNS'] }, /CNI_NETNS is not set/],
        [{ command: 'CHECK', containerId: 'x', config: conf, unset: ['CNI_NETNS'] }, /CNI_NETNS is not set/],
        [{ command: 'ADD', netns, config: conf, unset: ['CNI_CONTAINERID'] }, /CNI_CONTAINERID is not set/],
        [{ command: 'DEL', config: conf, unset: ['CNI_CONTAINERID'] }, /CNI_CONTAINERID is not set/],
        [{ command: 'DEL', containerId: 'x', config: conf, unset: ['CNI_IFNAME'] }, /CNI_IFNAME is not set/],
        [{ command: 'ADD', containerId: '-x', netns, config: conf }, /CNI_CONTAINERID "-x" must start with a letter or digit/],
        [{ command: 'ADD', containerId: 'x', ifname: 'way-too-long-ifname', netns, config: conf }, /CNI_IFNAME "way-too-long-ifname" is longer than 15 bytes/],
        [{ command: 'ADD', containerId: 'x', ifname: 'a/b', netns, config: conf }, /CNI_IFNAME "a\/b"/],
        [{ command: 'FROB', containerId: 'x', netns, config: conf }, /CNI_COMMAND "FROB" is not one of ADD, DEL, CHECK, GC, STATUS, VERSION/],
      ];
      for (const [call, pattern] of cases) {
        const e = cniError(await runShim(call), '1.0.0');
        assert.equal(e.code, 4, `${JSON.stringify(call.unset)} ${call.command}: ${e.msg}`);
        assert.match(e.msg, pattern);
      }
      // Without a command the shim does not read stdin (it may be a terminal), so it answers in the latest version.
      const noCommand = cniError(await runShim({ command: '', containerId: 'x', netns, config: conf, unset: ['CNI_COMMAND'] }), '1.1.0');
      assert.equal(noCommand.code, 4);
      assert.match(noCommand.msg, /CNI_COMMAND is not set/);
    });

    test('ADD and CHECK with a netns that does not exist, or is not a network namespace, are 101 naming the path', async () => {
      const conf = netconf('1.0.0', socket, queue);
      const missing = path.join(work, 'no-such-netns');
      for (const command of ['ADD', 'CHECK']) {
        const e = cniError(await runShim({ command, containerId: 'nonetns', netns: missing, config: conf }), '1.0.0');
        assert.equal(e.code, 101);
        assert.ok(e.msg.includes(`CNI_NETNS "${missing}" does not exist`), e.msg);
      }
      const plain = path.join(work, 'plain-file');
      writeFileSync(plain, '');
      const notNs = cniError(await runShim({ command: 'ADD', containerId: 'nonetns', netns: plain, config: conf }), '1.0.0');
      assert.equal(notNs.code, 101);
      assert.match(notNs.msg, /is not a namespace/);
      const own = cniError(await runShim({ command: 'ADD', containerId: 'nonetns', netns: '/proc/self/ns/net', config: conf }), '1.0.0');
      assert.equal(own.code, 101);
      assert.match(own.msg, /the plugin's own network namespace/);
      const uts = cniError(await runShim({ command: 'ADD', containerId: 'nonetns', netns: '/proc/self/ns/uts', config: conf }), '1.0.0');
      assert.equal(uts.code, 101);
      assert.match(uts.msg, /is a uts namespace, not a network namespace/);
      assert.ok(!handler.calls.some((c) => c.containerId === 'nonetns'));
      // DEL does not look at the netns: cleanup must work once it is gone.
      success(await runShim({ command: 'DEL', containerId: 'nonetns', netns: missing, config: conf }), 'DEL with a gone netns');
    });

    test('bad plugin fields are 7 naming field and value', async () => {
      const base = netconf('1.0.0', socket, queue);
      for (const [extra, pattern] of [
        [{ agentSocket: 'relative.sock' }, /agentSocket: "relative\.sock" must be an absolute path/],
        [{ agentTimeoutSeconds: 0 }, /agentTimeoutSeconds: 0 must be a number of seconds above 0/],
        [{ delQueueDir: 5 }, /delQueueDir: "5" must be an absolute path/],
      ] as const) {
        const e = cniError(await runShim({ command: 'ADD', containerId: 'badfield', netns, config: { ...base, ...extra } }), '1.0.0');
        assert.equal(e.code, 7);
        assert.match(e.msg, pattern);
      }
      // Fields the shim does not read are validated by the agent, with the same code.
      const e = cniError(await runShim({ command: 'ADD', containerId: 'badfield', netns, config: { ...base, name: 'bad name' } }), '1.0.0');
      assert.equal(e.code, 7);
      assert.match(e.msg, /name: "bad name" must start with a letter or digit/);
    });
  });

  test('handler errors reach the runtime with their codes', async () => {
    const conf = netconf('0.4.0', socket, queue);
    for (const code of [3, 11, 100, 102, 103]) {
      const e = cniError(await runShim({ command: 'ADD', containerId: `fail-${code}-pod`, netns, config: conf }), '0.4.0');
      assert.equal(e.code, code);
      assert.match(e.msg, new RegExp(`fake failure ${code}`));
      assert.match(e.details ?? '', /asked for by containerId/);
    }
    const again = await runShim({ command: 'ADD', containerId: 'twice', netns, config: conf });
    success(again, 'first ADD');
    const twice = cniError(await runShim({ command: 'ADD', containerId: 'twice', netns, config: conf }), '0.4.0');
    assert.equal(twice.code, 102);
    const mismatch = cniError(
      await runShim({ command: 'CHECK', containerId: 'twice', netns, config: { ...conf, prevResult: { ips: [{ version: '4', address: '10.9.9.9/32' }] } } }),
      '0.4.0',
    );
    assert.equal(mismatch.code, 104);
    assert.match(mismatch.details ?? '', /want 10\.9\.9\.9\/32/);
    const plain = cniError(await runShim({ command: 'ADD', containerId: 'throw-plain-x', netns, config: conf }), '0.4.0');
    assert.equal(plain.code, 5);
    const errno = cniError(await runShim({ command: 'ADD', containerId: 'throw-errno-x', netns, config: conf }), '0.4.0');
    assert.equal(errno.code, 103);
    assert.equal(errno.details, 'step veth_create failed with EPERM');
    handler.statusError = 50;
    const st = cniError(await runShim({ command: 'STATUS', config: netconf('1.1.0', socket, queue) }), '1.1.0');
    assert.equal(st.code, 50);
    handler.statusError = undefined;
  });

  describe('the agent is not running', () => {
    let deadSocket: string;
    let deadQueue: string;
    before(() => {
      deadSocket = path.join(work, 'dead', 'cni.sock');
      deadQueue = path.join(work, 'dead-queue');
    });

    test('ADD, CHECK and GC are 11 naming the socket; STATUS is 50; VERSION still answers', async () => {
      const conf = netconf('1.1.0', deadSocket, deadQueue);
      for (const command of ['ADD', 'CHECK']) {
        const e = cniError(await runShim({ command, containerId: 'down-1', netns, config: conf }), '1.1.0');
        assert.equal(e.code, 11);
        assert.ok(e.msg.includes(`agent at ${deadSocket}`), e.msg);
        assert.match(e.msg, /No such file or directory/);
      }
      const gc = cniError(await runShim({ command: 'GC', config: { ...conf, 'cni.dev/valid-attachments': [] } }), '1.1.0');
      assert.equal(gc.code, 11);
      const st = cniError(await runShim({ command: 'STATUS', config: conf }), '1.1.0');
      assert.equal(st.code, 50);
      assert.ok(st.msg.includes(deadSocket));
      const ver = await runShim({ command: 'VERSION', config: { cniVersion: '1.0.0' } });
      success(ver, 'VERSION');
      valid(versionSchema, ver.json, 'VERSION');
    });

    test('a socket file with nobody listening (ECONNREFUSED) is 11 too', async () => {
      const stale = path.join(work, 'stale.sock');
      const s = createServer();
      await new Promise<void>((r) => s.listen(path.join(work, 'stale-tmp.sock'), r));
      renameSync(path.join(work, 'stale-tmp.sock'), stale);
      await new Promise<void>((r) => s.close(() => r()));
      const e = cniError(await runShim({ command: 'ADD', containerId: 'down-2', netns, config: netconf('1.0.0', stale, deadQueue) }), '1.0.0');
      assert.equal(e.code, 11);
      assert.match(e.msg, /Connection refused/);
    });

    test('DEL is queued on disk and succeeds; replayDelQueue delivers it to the handler and removes the file', async () => {
      const conf = netconf('1.0.0', deadSocket, deadQueue);
      const del = await runShim({ command: 'DEL', containerId: 'queued-1', ifname: 'net.1', netns: '/run/netns/long-gone', config: { ...conf, prevResult: { ips: [{ address: '10.244.0.77/32' }] } } });
      success(del, 'DEL with the agent down');
      assert.equal(del.stdout, '');
      const warn = logLines(del.stderr).find((l) => l.level === 40);
      assert.match(String(warn?.msg), /DEL queued/);
      const noNetns = await runShim({ command: 'DEL', containerId: 'queued-2', config: conf, unset: ['CNI_NETNS'] });
      success(noNetns, 'DEL without CNI_NETNS, agent down');
      const files = readdirSync(deadQueue).sort();
      assert.deepEqual(files, [delQueueFileName('queued-1', 'net.1'), delQueueFileName('queued-2', 'eth0')].sort(), 'one file per attachment, named as the agent expects');
      assert.deepEqual(files, ['queued-1.net%2E1.json', 'queued-2.eth0.json']);
      // A second DEL of the same attachment replaces the first, it does not add one.
      success(await runShim({ command: 'DEL', containerId: 'queued-2', config: conf, unset: ['CNI_NETNS'] }), 'DEL again');
      assert.equal(readdirSync(deadQueue).length, 2);

      const replayer = new FakeHandler();
      assert.deepEqual(await replayDelQueue(deadQueue, replayer, log), { done: 2, failed: 0 });
      const got = replayer.calls.map((c) => [c.command, c.containerId, c.ifname, c.netns]).sort();
      assert.deepEqual(got, [['DEL', 'queued-1', 'net.1', '/run/netns/long-gone'], ['DEL', 'queued-2', 'eth0', '']]);
      const first = replayer.calls.find((c) => c.containerId === 'queued-1');
      assert.deepEqual(first?.config.prevResult?.ips, [{ address: '10.244.0.77/32' }]);
      assert.deepEqual(first?.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0', K8S_POD_INFRA_CONTAINER_ID: 'x' });
      assert.deepEqual(readdirSync(deadQueue), []);
    });
  });

  describe('the agent goes away mid-request', () => {
    let raw: Server;
    let rawSocket: string;
    let mode: 'close' | 'silent' | 'half' | 'garbage' = 'close';
    let received!: (body: string) => void;
    let requestIn: Promise<string>;
    const held: Socket[] = [];
    const arm = (): void => {
      requestIn = new Promise((r) => (received = r));
    };

    before(async () => {
      rawSocket = path.join(work, 'raw.sock');
      raw = createServer({ allowHalfOpen: true }, (sock) => {
        let body = '';
        sock.on('data', (d: Buffer) => (body += d.toString()));
        sock.on('error', () => undefined);
        sock.on('end', () => {
          received(body);
          if (mode === 'close') sock.destroy();
          else if (mode === 'half') sock.end('{"ok":true,"res');
          else if (mode === 'garbage') sock.end('hello\n');
          else held.push(sock); // silent: never answers
        });
      });
      await new Promise<void>((r) => raw.listen(rawSocket, r));
    });
    after(async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => raw.close(() => r()));
    });

    test('the agent closes without answering: ADD is 11, DEL is queued', async () => {
      mode = 'close';
      arm();
      const add = runShim({ command: 'ADD', containerId: 'mid-1', netns, config: netconf('1.0.0', rawSocket, path.join(work, 'mid-queue')) });
      const body = JSON.parse(await requestIn) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body).sort(), ['args', 'command', 'config', 'containerId', 'ifname', 'netns', 'path', 'pid']);
      const e = cniError(await add, '1.0.0');
      assert.equal(e.code, 11);
      assert.match(e.msg, /closed the connection without answering/);
      arm();
      const del = await runShim({ command: 'DEL', containerId: 'mid-1', netns, config: netconf('1.0.0', rawSocket, path.join(work, 'mid-queue')) });
      success(del, 'DEL');
      assert.ok(existsSync(path.join(work, 'mid-queue', 'mid-1.eth0.json')));
    });

    test('the agent dies while writing its answer: 11; an answer that is not a response: 5', async () => {
      mode = 'half';
      arm();
      const e = cniError(await runShim({ command: 'ADD', containerId: 'mid-2', netns, config: netconf('1.0.0', rawSocket, queue) }), '1.0.0');
      assert.equal(e.code, 11);
      assert.match(e.msg, /closed the connection mid-answer/);
      mode = 'garbage';
      arm();
      const g = cniError(await runShim({ command: 'ADD', containerId: 'mid-3', netns, config: netconf('1.0.0', rawSocket, queue) }), '1.0.0');
      assert.equal(g.code, 5);
      assert.match(g.msg, /not a response/);
    });

    test('no answer within agentTimeoutSeconds: ADD is 11, DEL is queued', async () => {
      mode = 'silent';
      arm();
      const conf = netconf('1.0.0', rawSocket, path.join(work, 'timeout-queue'), { agentTimeoutSeconds: 0.2 });
      const e = cniError(await runShim({ command: 'ADD', containerId: 'slow-1', netns, config: conf }), '1.0.0');
      assert.equal(e.code, 11);
      assert.match(e.msg, /no answer within 0\.2 s/);
      arm();
      success(await runShim({ command: 'DEL', containerId: 'slow-1', netns, config: conf }), 'DEL');
      assert.deepEqual(readdirSync(path.join(work, 'timeout-queue')), ['slow-1.eth0.json']);
    });

    test('an agent process killed while it handles the request: 11', async () => {
      const agentSocket = path.join(work, 'killed', 'cni.sock');
      const serverUrl = new URL('../../src/cni/server.ts', import.meta.url).href;
      const script = `
        import { startCniServer } from ${JSON.stringify(serverUrl)};
        import { pino } from 'pino';
        const handler = {
          add: async () => { process.stdout.write('in-handler\\n'); return new Promise(() => {}); },
          del: async () => {}, check: async () => {}, gc: async () => {}, status: async () => {},
        };
        await startCniServer({ socketPath: ${JSON.stringify(agentSocket)}, handler, log: pino({ level: 'silent' }) });
        process.stdout.write('listening\\n');
      `;
      const agent: ChildProcess = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        const lines = createInterface({ input: agent.stdout! });
        const next = (want: string): Promise<void> =>
          new Promise((resolve, reject) => {
            const onLine = (l: string): void => {
              if (l === want) {
                lines.off('line', onLine);
                resolve();
              }
            };
            lines.on('line', onLine);
            agent.once('exit', (code) => reject(new Error(`agent exited (${code}) before "${want}"`)));
          });
        await next('listening');
        const inHandler = next('in-handler');
        const add = runShim({ command: 'ADD', containerId: 'killed-1', netns, config: netconf('1.1.0', agentSocket, queue) });
        await inHandler;
        agent.kill('SIGKILL');
        const e = cniError(await add, '1.1.0');
        assert.equal(e.code, 11);
        assert.ok(e.msg.includes(agentSocket));
      } finally {
        if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
      }
    });
  });
});
