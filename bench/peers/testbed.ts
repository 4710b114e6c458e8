// Network-namespace topology for loading peer rulesets and pushing traffic through
// them: client --veth-- node (holds the rules, forwards) --veth-- server1..N.
// Everything lives in namespaces this module creates under a caller-chosen unique
// prefix; nothing touches the root namespace's devices, routes or firewall. Effects
// only (processes, namespaces); the rules themselves come from the pure generators.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export type TestbedErrorCode = 'ECOMMAND' | 'ETOOLREADY';

export class TestbedError extends Error {
  readonly code: TestbedErrorCode;
  readonly command: string;
  readonly stderr: string;
  constructor(code: TestbedErrorCode, command: string, message: string, stderr = '') {
    super(`${command}: ${message}${stderr === '' ? '' : `: ${stderr.trim().slice(0, 2000)}`}`);
    this.name = 'TestbedError';
    this.code = code;
    this.command = command;
    this.stderr = stderr;
  }
}

export function isTestbedError(err: unknown): err is TestbedError {
  return err instanceof TestbedError;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Wall time of the command, spawn included, in milliseconds. */
  ms: number;
}

export interface RunOptions {
  netns?: string;
  input?: string;
  /** Extra environment variables (added to this process's environment). */
  env?: Record<string, string>;
}

/** Run a command (inside `netns` via nsenter when given), feeding `input` on stdin. */
export async function run(cmd: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = o.netns === undefined ? [cmd, [...args]] : ['nsenter', [`--net=/run/netns/${o.netns}`, '--', cmd, ...args]];
  const shown = [cmd, ...args].join(' ') + (o.netns === undefined ? '' : ` (in ${o.netns})`);
  const start = performance.now();
  const env = o.env === undefined ? process.env : { ...process.env, ...o.env };
  const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.on('error', () => {}); // a command that exits early closes its stdin; the exit code tells
  child.stdin.end(o.input ?? '');
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  const ms = performance.now() - start;
  const stdout = Buffer.concat(out).toString();
  const stderr = Buffer.concat(err).toString();
  if (code !== 0) {
    throw new TestbedError('ECOMMAND', shown, signal !== null ? `killed by ${signal}` : `exit status ${code}`, stderr);
  }
  return { stdout, stderr, ms };
}

/** A long-running tool (acceptd) inside a namespace that printed a JSON ready line. */
export interface Daemon {
  pid: number;
  /** SIGTERM, wait, and return the JSON lines it printed after the ready line. */
  stop(): Promise<unknown[]>;
  /** SIGKILL without waiting for output (cleanup path). */
  kill(): void;
}

export async function startDaemon(netns: string, cmd: string, args: readonly string[], readyMs = 5000): Promise<Daemon> {
  const shown = [cmd, ...args].join(' ') + ` (in ${netns})`;
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const rl = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit');
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TestbedError('ETOOLREADY', shown, `no ready line within ${readyMs} ms`, stderr)), readyMs);
    rl.on('line', (line) => {
      if (line.includes('"ready":true')) {
        clearTimeout(timer);
        resolve();
      } else {
        lines.push(line);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new TestbedError('ETOOLREADY', shown, `exited with status ${code} before it was ready`, stderr));
    });
  });
  try {
    await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const pid = child.pid!;
  return {
    pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await new Promise((r) => setImmediate(r));
      return lines.map((l) => JSON.parse(l) as unknown);
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export interface Topology {
  client: string;
  node: string;
  servers: string[];
  clientIP: string;
  /** The node's address on the client link (the client's gateway). */
  nodeIP: string;
  serverIPs: string[];
  /** Remove the namespaces (processes started in them must be stopped first). */
  destroy(): Promise<void>;
}

export interface TopologyOptions {
  /** Unique per run and per topology, e.g. `hyp${process.pid}-ipt-`. */
  prefix: string;
  servers: number;
}

/**
 * client 10.244.1.2/24 (default via 10.244.1.1) -- node -- serverK 10.244.(10+K).2/24.
 * All inside 10.244.0.0/16, the cluster CIDR the tests give the peers, so
 * client-to-service traffic is pod-to-service traffic and is not masqueraded.
 */
export async function createTopology(o: TopologyOptions): Promise<Topology> {
  const client = `${o.prefix}cl`;
  const node = `${o.prefix}node`;
  const servers = Array.from({ length: o.servers }, (_, k) => `${o.prefix}s${k + 1}`);
  const created: string[] = [];
  const destroy = async () => {
    for (const ns of created.reverse()) {
      await run('ip', ['netns', 'del', ns]).catch(() => {});
    }
    created.length = 0;
  };
  try {
    for (const ns of [node, client, ...servers]) {
      await run('ip', ['netns', 'add', ns]);
      created.push(ns);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const sysctl = (ns: string, kv: string) => run('sysctl', ['-q', '-w', kv], { netns: ns });
    await sysctl(node, 'net.ipv4.ip_forward=1');
    // kube-proxy's iptables mode sets this for localhost NodePorts.
    await sysctl(node, 'net.ipv4.conf.all.route_localnet=1');
    await sysctl(client, 'net.ipv4.ip_local_port_range=1024 65535');
    // The veths are created inside the namespaces: `ip -n node link add ... peer ... netns X`.
    await run('ip', ['-n', node, 'link', 'add', 'tocl', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
    await run('ip', ['-n', node, 'addr', 'add', '10.244.1.1/24', 'dev', 'tocl']);
    await run('ip', ['-n', node, 'link', 'set', 'tocl', 'up']);
    await run('ip', ['-n', client, 'addr', 'add', '10.244.1.2/24', 'dev', 'eth0']);
    await run('ip', ['-n', client, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', client, 'route', 'add', 'default', 'via', '10.244.1.1']);
    const serverIPs: string[] = [];
    for (const [k, ns] of servers.entries()) {
      const net = `10.244.${10 + k + 1}`;
      const dev = `tos${k + 1}`;
      await run('ip', ['-n', node, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await run('ip', ['-n', node, 'addr', 'add', `${net}.1/24`, 'dev', dev]);
      await run('ip', ['-n', node, 'link', 'set', dev, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${net}.2/24`, 'dev', 'eth0']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', `${net}.1`]);
      await sysctl(ns, 'net.core.somaxconn=65535');
      serverIPs.push(`${net}.2`);
    }
    return { client, node, servers, clientIP: '10.244.1.2', nodeIP: '10.244.1.1', serverIPs, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/**
 * Environment for iptables commands in a private namespace: iptables 1.8 serialises
 * every iptables-restore on the host through one /run/xtables.lock, although the
 * tables it protects are per namespace; a loading 1 000-service ruleset would hold it
 * for seconds and fail or stall unrelated iptables users. A lock file per namespace
 * keeps the serialisation that matters (within the namespace) and nothing else.
 */
export function xtablesLockEnv(dir: string, netns: string): Record<string, string> {
  return { XTABLES_LOCKFILE: `${dir}/${netns}.xtables.lock` };
}

/** Namespaces whose name starts with `prefix` (to check that none are left behind). */
export async function listNetns(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}
