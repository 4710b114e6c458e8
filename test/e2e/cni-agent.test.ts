// The CNI plugin against the real agent (one node, standalone): every command
// in every config version checked against the spec's schemas; bad input gets
// the spec's code and leaves nothing behind; 30 ADDs at once and their DELs
// leak nothing; an agent killed in the middle of an ADD, and a DEL while the
// agent is down.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { HYPHA_BIN, TestAgent, eventually } from './lib/agent.ts';
import type { CniOutcome } from './lib/cni.ts';
import { type Node, Topology } from './lib/topology.ts';

const SCHEMAS = fileURLToPath(new URL('../cni-schemas/', import.meta.url));
const ajv = new Ajv({ allErrors: true, strict: true });
const compiled = new Map<string, ValidateFunction>();
const schema = (name: string): ValidateFunction => {
  let v = compiled.get(name);
  if (!v) compiled.set(name, (v = ajv.compile(JSON.parse(readFileSync(path.join(SCHEMAS, `${name}.json`), 'utf8')) as object)));
  return v;
};
const VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

function valid(name: string, value: unknown, what: string): void {
  const v = schema(name);
  assert.ok(v(value), `${what} does not match ${name}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value)}`);
}

function failsWith(r: CniOutcome, code: number, msg: RegExp, what: string): void {
  assert.equal(r.exitCode, 1, `${what}: exit code (${r.stdout})`);
  valid('error', r.json, what);
  assert.equal(r.json?.code, code, `${what}: ${r.stdout}`);
  assert.match(`${String(r.json?.msg)} ${String(r.json?.details ?? '')}`, msg, what);
}

describe('the CNI plugin against a real agent', () => {
  let topo: Topology;
  let node: Node;
  let agent: TestAgent;
  let work: string;
  let netnsSeq = 0;

  /** A fresh pod namespace (what a runtime would have made). */
  const podNetns = async (): Promise<string> => (await topo.addScratch(`p${++netnsSeq}`)).netns;
  const nsPath = (ns: string) => `/run/netns/${ns}`;
  /** What the node and the agent hold: veths, map entries, records, routes. */
  const holdings = async () => {
    const links = JSON.parse((await topo.exec(node, ['ip', '-j', 'link', 'show', 'type', 'veth'])).stdout) as { ifname: string }[];
    const routes = (await topo.exec(node, ['ip', 'route', 'show', 'proto', '72'])).stdout.trim();
    const records = existsSync(path.join(agent.cniDirs.stateDir, 'endpoints')) ? readdirSync(path.join(agent.cniDirs.stateDir, 'endpoints')).length : 0;
    return { veths: links.filter((l) => l.ifname.startsWith('lxc')).length, map: agent.endpoints().size, records, routes: routes === '' ? 0 : routes.split('\n').length };
  };
  const add = (containerId: string, netns: string, extra: Parameters<TestAgent['plugin']['invoke']>[1] = {}) =>
    agent.plugin.invoke('ADD', { containerId, netns: nsPath(netns), args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: containerId }, ...extra });
  const del = (containerId: string, netns: string | undefined, extra: Parameters<TestAgent['plugin']['invoke']>[1] = {}) =>
    agent.plugin.invoke('DEL', { containerId, ...(netns ? { netns: nsPath(netns) } : {}), ...extra });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-cniagent-'));
    topo = await Topology.create({ name: 'cniag' });
    // A /26: 62 addresses, enough for 30 at once, few enough to exhaust.
    node = await topo.addNode('n1', { podCidr: '10.244.1.0/26' });
    mkdirSync(path.join(work, 'services'), { recursive: true });
    agent = new TestAgent(topo, node, { pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: path.join(work, 'services'), workDir: work, env: { HYPHA_TEST_ADD_PAUSE_FILE: path.join(work, 'pause') } });
    await agent.start();
  });

  after(async () => {
    await agent?.stop();
    await topo?.destroy();
    agent?.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('VERSION in every version, answered by the plugin', async () => {
    for (const v of VERSIONS) {
      const r = await agent.plugin.invoke('VERSION', { cniVersion: v });
      assert.equal(r.exitCode, 0, r.stdout);
      valid('version', r.json, `VERSION ${v}`);
      assert.equal(r.json?.cniVersion, v);
      assert.deepEqual(r.json?.supportedVersions, [...VERSIONS]);
    }
  });

  test('ADD, CHECK and DEL in every config version; each result is the version\'s schema; GC and STATUS in 1.1.0', async () => {
    for (const v of VERSIONS) {
      const ns = await podNetns();
      const id = `ver${v.replace(/\./g, '')}`;
      const r = await add(id, ns, { cniVersion: v });
      assert.equal(r.exitCode, 0, r.stdout);
      valid(`result-${v}`, r.json, `ADD ${v}`);
      assert.equal(r.json?.cniVersion, v);
      const chk = await agent.plugin.invoke('CHECK', { containerId: id, netns: nsPath(ns), cniVersion: v, prevResult: r.json });
      if (v === '0.3.1') failsWith(chk, 1, /CHECK/, 'CHECK 0.3.1 is not in that version');
      else assert.equal(chk.exitCode, 0, `CHECK ${v}: ${chk.stdout}`);
      const d = await del(id, ns, { cniVersion: v, prevResult: r.json });
      assert.equal(d.exitCode, 0, `DEL ${v}: ${d.stdout}`);
    }
    const status = await agent.plugin.invoke('STATUS', { cniVersion: '1.1.0' });
    assert.equal(status.exitCode, 0, status.stdout);
    const gc = await agent.plugin.invoke('GC', { cniVersion: '1.1.0', extra: { 'cni.dev/valid-attachments': [] } });
    assert.equal(gc.exitCode, 0, gc.stdout);
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
  });

  test('bad input: the spec\'s code, a message naming the problem, nothing left behind, the first attachment intact', async () => {
    const ns = await podNetns();
    const first = await add('first', ns);
    assert.equal(first.exitCode, 0, first.stdout);
    const before = await holdings();
    const other = await podNetns();
    failsWith(await add('x1', other, { stdin: '{"cniVersion": "1.1.0", "name": ' }), 6, /JSON|decode/i, 'malformed JSON');
    failsWith(await add('x2', other, { cniVersion: '9.9.9' }), 1, /9\.9\.9/, 'unknown cniVersion');
    failsWith(await agent.plugin.invoke('ADD', { containerId: 'x3', without: ['CNI_NETNS'] }), 4, /CNI_NETNS/, 'missing CNI_NETNS');
    failsWith(await agent.plugin.invoke('ADD', { netns: nsPath(other), without: ['CNI_CONTAINERID'] }), 4, /CNI_CONTAINERID/, 'missing CNI_CONTAINERID');
    failsWith(await agent.plugin.invoke('ADD', { containerId: 'x4', netns: '/run/netns/no-such-netns' }), 101, /\/run\/netns\/no-such-netns/, 'a netns that does not exist');
    failsWith(await add('first', ns), 102, /container first interface eth0 is already attached/, 'the same container added twice');
    failsWith(await agent.plugin.invoke('ADD', { containerId: 'x5', netns: nsPath(other), ifname: 'a/b' }), 4, /CNI_IFNAME/, 'a bad interface name');
    assert.deepEqual(await holdings(), before, 'nothing added by the failures');
    const chk = await agent.plugin.invoke('CHECK', { containerId: 'first', netns: nsPath(ns), prevResult: first.json });
    assert.equal(chk.exitCode, 0, `the first attachment is intact: ${chk.stdout}`);
    assert.equal((await del('first', ns)).exitCode, 0);
  });

  test('DEL succeeds with nothing to delete: unknown container, no netns, a netns that is gone', async () => {
    assert.equal((await del('never-added', undefined)).exitCode, 0);
    assert.equal((await del('never-added', 'no-such-netns')).exitCode, 0);
    const ns = await podNetns();
    assert.equal((await add('gone', ns)).exitCode, 0);
    await topo.removeScratch(topo.scratches.find((s) => s.netns === ns)!);
    assert.equal((await del('gone', ns)).exitCode, 0, 'DEL after the namespace was deleted');
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
  });

  test('an exhausted pod CIDR: 100 naming it, and nothing left behind', async () => {
    const ids: [string, string][] = [];
    for (let i = 0; i < 62; i++) {
      const ns = await podNetns();
      const r = await add(`fill${i}`, ns);
      assert.equal(r.exitCode, 0, r.stdout);
      ids.push([`fill${i}`, ns]);
    }
    const before = await holdings();
    const ns = await podNetns();
    failsWith(await add('one-too-many', ns), 100, /10\.244\.1\.0\/26/, 'no free address');
    assert.deepEqual(await holdings(), before);
    await Promise.all(ids.map(([id, n]) => del(id, n)));
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
  });

  test('30 ADDs at once get 30 addresses; DEL of all leaves no address, veth, map entry, record or route', async () => {
    const nss = await Promise.all(Array.from({ length: 30 }, () => podNetns()));
    const results = await Promise.all(nss.map((ns, i) => add(`conc${i}`, ns)));
    for (const r of results) assert.equal(r.exitCode, 0, r.stdout);
    const ips = results.map((r) => (r.json?.ips as { address: string }[])[0]?.address);
    assert.equal(new Set(ips).size, 30);
    assert.deepEqual(await holdings(), { veths: 30, map: 30, records: 30, routes: 30 });
    const dels = await Promise.all(nss.map((ns, i) => del(`conc${i}`, ns)));
    for (const d of dels) assert.equal(d.exitCode, 0, d.stdout);
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
    const st = JSON.parse((await agent.http('/status')).body) as { pods: { addresses: { used: number } } };
    assert.equal(st.pods.addresses.used, 0, 'every address is free again');
  });

  test('the agent killed in the middle of an ADD: the ADD fails with 11, the retry after the restart succeeds, nothing leaks', async () => {
    const ns = await podNetns();
    const pause = path.join(work, 'pause');
    writeFileSync(pause, '');
    const pending = add('crash', ns);
    // The agent has made the veth and waits: kill it there.
    await eventually('the half-made veth', async () => (await holdings()).veths === 1);
    await agent.kill9();
    rmSync(pause, { force: true });
    failsWith(await pending, 11, /agent/i, 'ADD interrupted by the agent dying');
    await agent.start();
    // The restart removed the half-made veth; the runtime's retry works.
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
    const retry = await add('crash', ns);
    assert.equal(retry.exitCode, 0, retry.stdout);
    assert.equal((await del('crash', ns)).exitCode, 0);
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
  });

  test('DEL while the agent is down is queued; the agent finishes it when it starts', async () => {
    const ns = await podNetns();
    assert.equal((await add('queued', ns)).exitCode, 0);
    await agent.stop();
    assert.ok(existsSync(path.join(agent.cniDirs.confDir, '05-hypha.conflist')), 'a stopped agent leaves its conflist (a restart is not an uninstall)');
    const d = await del('queued', ns);
    assert.equal(d.exitCode, 0, 'DEL succeeds with the agent down');
    assert.equal(readdirSync(agent.cniDirs.delQueueDir).length, 1, 'one DEL queued on disk');
    failsWith(await add('while-down', ns), 11, /agent/i, 'ADD with the agent down');
    await agent.start();
    await eventually('the queued DEL done', () => readdirSync(agent.cniDirs.delQueueDir).length === 0);
    assert.deepEqual(await holdings(), { veths: 0, map: 0, records: 0, routes: 0 });
  });

  test('hypha cni uninstall removes the conflist and keeps the plugin (DELs still work)', async () => {
    // A runtime keeps the configuration a pod was added with (libcni's cache) for its DEL.
    const conf = JSON.stringify(agent.plugin.netConf());
    const r = await topo.exec(node, [HYPHA_BIN, 'cni', 'uninstall', '--conf-dir', agent.cniDirs.confDir]);
    assert.match(r.stdout, /removed the Hypha conflist/);
    assert.equal(existsSync(path.join(agent.cniDirs.confDir, '05-hypha.conflist')), false);
    assert.ok(existsSync(agent.plugin.binary));
    assert.equal((await del('after-uninstall', undefined, { stdin: conf })).exitCode, 0);
  });
});
