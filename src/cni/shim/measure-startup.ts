// What a runtime pays to run the CNI plugin: the C shim next to a Node script
// doing the same work, and /bin/true as the floor of fork+exec.
//
//   VERSION   answered by the plugin alone (read stdin, print JSON)
//   ADD       a round trip to a trivial agent socket that answers a fixed
//             result (stdin parsed, CNI_NETNS opened, one request, answer printed);
//             and the C shim against the real server (startCniServer: validation,
//             rendering) with the fake handler
//
//   node src/cni/shim/measure-startup.ts [--version-runs 1000] [--add-runs 300]   (root: makes a scratch netns)
//
// Runs are sequential; each is timed from spawn to exit in this process.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { FakeHandler } from '../fake-handler.ts';
import { startCniServer } from '../server.ts';

const { values } = parseArgs({ options: { 'version-runs': { type: 'string', default: '1000' }, 'add-runs': { type: 'string', default: '300' } } });
const VERSION_RUNS = Number(values['version-runs']);
const ADD_RUNS = Number(values['add-runs']);
const SHIM = fileURLToPath(new URL('../build/hypha-cni', import.meta.url));

// The same two jobs in Node, as plainly as Node does them.
const NODE_PLUGIN = `
import { connect } from 'node:net';
import { openSync, closeSync } from 'node:fs';
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const conf = JSON.parse(Buffer.concat(chunks).toString() || '{}');
const cmd = process.env.CNI_COMMAND;
if (cmd === 'VERSION') {
  process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion ?? '1.1.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] }) + '\\n');
} else {
  closeSync(openSync(process.env.CNI_NETNS, 'r'));
  const req = { command: cmd, containerId: process.env.CNI_CONTAINERID, netns: process.env.CNI_NETNS, ifname: process.env.CNI_IFNAME,
    args: process.env.CNI_ARGS ?? '', path: process.env.CNI_PATH ?? '', pid: process.pid, config: conf };
  const s = connect(conf.agentSocket);
  let body = '';
  s.on('connect', () => s.end(JSON.stringify(req)));
  s.on('data', (d) => (body += d));
  s.on('end', () => {
    const r = JSON.parse(body);
    if (r.ok) process.stdout.write(JSON.stringify(r.result) + '\\n');
    else { process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, ...r.error }) + '\\n'); process.exitCode = 1; }
  });
}
`;

const RESULT = {
  ok: true,
  result: {
    cniVersion: '1.1.0',
    interfaces: [{ name: 'lxc0a', mac: '02:00:00:00:01:0a' }, { name: 'eth0', mac: '02:00:00:00:02:0a', sandbox: '/run/netns/x' }],
    ips: [{ address: '10.244.0.10/32', gateway: '169.254.1.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
  },
};

function runOnce(argv: string[], env: Record<string, string>, input: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0] as string, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0 && argv[0] !== '/bin/true') reject(new Error(`${argv.join(' ')} exited ${code}: ${out}`));
      else resolve(ms);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

interface Stats { runs: number; mean: number; p50: number; p99: number; min: number }

async function measure(argv: string[], env: Record<string, string>, input: string, runs: number): Promise<Stats> {
  await runOnce(argv, env, input); // warm the page cache
  const t: number[] = [];
  for (let i = 0; i < runs; i++) t.push(await runOnce(argv, env, input));
  t.sort((a, b) => a - b);
  const at = (q: number): number => t[Math.min(t.length - 1, Math.floor(q * t.length))] as number;
  const round = (x: number): number => Math.round(x * 100) / 100;
  return { runs, mean: round(t.reduce((a, b) => a + b, 0) / t.length), p50: round(at(0.5)), p99: round(at(0.99)), min: round(t[0] as number) };
}

const work = mkdtempSync(path.join(tmpdir(), 'hypha-cni-startup-'));
const netnsName = `hycnistart-${process.pid}`;
const server = createServer({ allowHalfOpen: true }, (s) => {
  s.on('data', () => undefined);
  s.on('end', () => s.end(JSON.stringify(RESULT)));
  s.on('error', () => undefined);
});
try {
  const made = spawnSync('ip', ['netns', 'add', netnsName], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`ip netns add ${netnsName}: ${made.stderr}`);
  const nodePlugin = path.join(work, 'plugin.mjs');
  writeFileSync(nodePlugin, NODE_PLUGIN);
  const socket = path.join(work, 'agent.sock');
  await new Promise<void>((r) => server.listen(socket, r));
  const conf = JSON.stringify({ cniVersion: '1.1.0', name: 'hypha', type: 'hypha', agentSocket: socket });
  const realSocket = path.join(work, 'real', 'cni.sock');
  const handler = new FakeHandler();
  handler.add = async (req) => ({ ...structuredClone(RESULT.result), interfaces: [{ name: 'lxc0a' }, { name: req.ifname, sandbox: req.netns }] });
  const real = await startCniServer({ socketPath: realSocket, handler, log: pino({ level: 'silent' }) });
  const realConf = JSON.stringify({ cniVersion: '1.1.0', name: 'hypha', type: 'hypha', agentSocket: realSocket });
  const base = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const versionEnv = { ...base, CNI_COMMAND: 'VERSION' };
  const addEnv = {
    ...base, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'bench', CNI_NETNS: `/run/netns/${netnsName}`, CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench', CNI_PATH: '/opt/cni/bin',
  };
  const node = process.execPath;
  const rows = [
    { what: 'fork+exec floor (/bin/true)', stats: await measure(['/bin/true'], base, '', VERSION_RUNS) },
    { what: 'VERSION, hypha-cni (C)', stats: await measure([SHIM], versionEnv, '{"cniVersion":"1.1.0"}', VERSION_RUNS) },
    { what: `VERSION, Node ${process.version} script`, stats: await measure([node, nodePlugin], versionEnv, '{"cniVersion":"1.1.0"}', VERSION_RUNS) },
    { what: 'ADD round trip, hypha-cni (C)', stats: await measure([SHIM], addEnv, conf, ADD_RUNS) },
    { what: `ADD round trip, Node ${process.version} script`, stats: await measure([node, nodePlugin], addEnv, conf, ADD_RUNS) },
    { what: 'ADD, hypha-cni (C) + startCniServer', stats: await measure([SHIM], addEnv, realConf, ADD_RUNS) },
  ];
  await real.close();
  process.stdout.write(`${'case'.padEnd(40)} ${'runs'.padStart(5)} ${'mean ms'.padStart(8)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'min'.padStart(7)}\n`);
  for (const { what, stats: s } of rows) {
    process.stdout.write(`${what.padEnd(40)} ${String(s.runs).padStart(5)} ${s.mean.toFixed(2).padStart(8)} ${s.p50.toFixed(2).padStart(7)} ${s.p99.toFixed(2).padStart(7)} ${s.min.toFixed(2).padStart(7)}\n`);
  }
} finally {
  server.close();
  spawnSync('ip', ['netns', 'del', netnsName]);
  rmSync(work, { recursive: true, force: true });
}
