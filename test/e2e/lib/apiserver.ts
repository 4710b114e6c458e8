// A real control plane for the e2e tests: etcd and kube-apiserver, built from
// the Go module proxy by hack/k8s/k8s.mk, started inside a network namespace
// (the "control-plane host" of a test fabric).
//
//   etcd            127.0.0.1:2379 inside the namespace, data under workDir
//   kube-apiserver  https://<listenIp>:6443, binds and advertises listenIp
//   forwarder       a UNIX socket in workDir -> listenIp:6443, run inside the
//                   namespace, plus a TCP listener on 127.0.0.1:<ephemeral> in
//                   this process: how the test process (in its own namespace)
//                   reaches the apiserver without routes into the fabric
//
// Two kubeconfigs, both admin (client certificate in system:masters, CA
// embedded): kubeconfigPath points at https://<listenIp>:6443 for processes
// on the fabric (agents, kubelets); hostKubeconfigPath points at the forwarder
// for this process (the test's assertions).
//
// Every process is started as `setpriv --pdeathsig KILL nsenter --net=... bin`
// (setpriv and nsenter exec, so the pid held is the binary's), logs to
// <workDir>/<name>.log, is stopped by that pid only, and dies with the test
// process if that is killed.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { request } from 'node:https';
import { createConnection, createServer, isIPv4, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Address4 } from 'ip-address';
import { pino, type Logger } from 'pino';
import { createControlPlanePki, writeKubeconfig, type ControlPlanePki } from './pki.ts';
import { formatArgv, makeTarget, run } from './proc.ts';

export const APISERVER_PORT = 6443;
export const ETCD_CLIENT_URL = 'http://127.0.0.1:2379';
export const DEFAULT_SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/12';
const NETNS_DIR = '/run/netns';
const NETNS_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const UNIX_PATH_MAX = 107;

/** The repository root, from this file's location (test/e2e/lib/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export type ControlPlaneErrorCode =
  | 'E_CP_INVALID' // an option has a bad value (the message names it)
  | 'E_CP_BINARIES' // the binaries are missing and could not be built
  | 'E_CP_EXITED' // a process exited while starting or while we waited for it
  | 'E_CP_TIMEOUT' // a process did not become ready in time
  | 'E_CP_ETCDCTL' // an etcdctl call failed
  | 'E_CP_STOPPED'; // the control plane was stopped

export class ControlPlaneError extends Error {
  readonly code: ControlPlaneErrorCode;
  constructor(code: ControlPlaneErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlPlaneError';
    this.code = code;
  }
}

export function isControlPlaneError(err: unknown, code?: ControlPlaneErrorCode): err is ControlPlaneError {
  return err instanceof ControlPlaneError && (code === undefined || err.code === code);
}

// ---------------------------------------------------------------- binaries

export interface K8sBinaries {
  kubernetesVersion: string;
  etcdVersion: string;
  kubeApiserver: string;
  etcd: string;
  etcdctl: string;
  kubelet: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  kubeProxy: string;
  /** Not part of k8s-bins (`make e2e-network-test`); may not exist. */
  e2eNetworkTest: string;
  ginkgo: string;
}

function parseKeyValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}

/**
 * The Kubernetes and etcd binaries, at the versioned cache paths the Makefile
 * defines (`make k8s-versions`). When one is missing and `build` is true (the
 * default) this runs `make k8s-bins` first, with its progress on stderr: the
 * first build takes many minutes. KUBE_APISERVER, ETCD and ETCDCTL in the
 * environment (exported by `make test-k8s`) override the paths.
 */
export async function k8sBinaries(opts: { build?: boolean; log?: Logger } = {}): Promise<K8sBinaries> {
  const make = ['make', '-s', '--no-print-directory', '-C', REPO_ROOT];
  // Under `make test` the parent's flags (jobserver fds, -k, ...) must not leak in.
  const { MAKEFLAGS: _flags, MFLAGS: _mflags, MAKELEVEL: _level, ...env } = process.env;
  const read = async (): Promise<K8sBinaries> => {
    const r = await run([...make, 'k8s-versions'], { timeoutMs: 60_000, env, context: 'listing k8s binaries' });
    const kv = parseKeyValues(r.stdout);
    const pick = (key: string): string => {
      const v = process.env[key] || kv.get(key);
      if (v === undefined || v === '') {
        throw new ControlPlaneError('E_CP_BINARIES', `make k8s-versions printed no ${key} (is hack/k8s/k8s.mk included?): ${r.stdout.trim()}`);
      }
      return v;
    };
    return {
      kubernetesVersion: pick('K8S_VERSION'),
      etcdVersion: pick('ETCD_VERSION'),
      kubeApiserver: pick('KUBE_APISERVER'),
      etcd: pick('ETCD'),
      etcdctl: pick('ETCDCTL'),
      kubelet: pick('KUBELET'),
      kubeControllerManager: pick('KUBE_CONTROLLER_MANAGER'),
      kubeScheduler: pick('KUBE_SCHEDULER'),
      kubectl: pick('KUBECTL'),
      kubeProxy: pick('KUBE_PROXY'),
      e2eNetworkTest: pick('E2E_NETWORK_TEST'),
      ginkgo: pick('GINKGO'),
    };
  };
  const missing = (b: K8sBinaries) => [b.kubeApiserver, b.etcd, b.etcdctl, b.kubelet, b.kubeControllerManager, b.kubeScheduler, b.kubectl, b.kubeProxy].filter((p) => !existsSync(p));
  const bins = await read();
  if (missing(bins).length === 0) return bins;
  if (opts.build === false) {
    throw new ControlPlaneError('E_CP_BINARIES', `missing ${missing(bins).join(', ')}; run \`make k8s-bins\``);
  }
  opts.log?.info({ missing: missing(bins) }, 'building Kubernetes binaries (make k8s-bins); the first build takes many minutes');
  // Progress goes to our stderr: under `node --test` stdout belongs to the runner.
  const code = await makeTarget(make, 'k8s-bins', env);
  const after = await read();
  if (code !== 0 || missing(after).length > 0) {
    throw new ControlPlaneError('E_CP_BINARIES', `make k8s-bins exited with ${code}; still missing: ${missing(after).join(', ') || 'nothing'}`);
  }
  return after;
}

// ---------------------------------------------------------------- processes

/** The last `lines` lines of a log file (read whole: test logs are small). */
export function logTail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running process inside a namespace, its output in a log file. */
class NetnsProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly exited: Promise<ExitStatus>;
  readonly #child: ChildProcess;
  #status: ExitStatus | undefined;

  private constructor(name: string, child: ChildProcess, logPath: string) {
    if (child.pid === undefined) throw new Error(`${name} has no pid`);
    this.name = name;
    this.pid = child.pid;
    this.logPath = logPath;
    this.#child = child;
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.#status = { code, signal };
        resolve(this.#status);
      });
    });
  }

  static start(name: string, netns: string, argv: readonly string[], logPath: string): NetnsProcess {
    const full = ['setpriv', '--pdeathsig', 'KILL', 'nsenter', `--net=${NETNS_DIR}/${netns}`, '--', ...argv];
    const fd = openSync(logPath, 'a');
    try {
      const child = spawn(full[0] ?? 'setpriv', full.slice(1), { stdio: ['ignore', fd, fd] });
      child.on('error', () => {}); // no pid (checked below) or an exit status
      if (child.pid === undefined) {
        throw new ControlPlaneError('E_CP_EXITED', `cannot start ${name}: ${formatArgv(full)}`);
      }
      return new NetnsProcess(name, child, logPath);
    } finally {
      closeSync(fd);
    }
  }

  get running(): boolean {
    return this.#status === undefined;
  }

  get status(): ExitStatus | undefined {
    return this.#status;
  }

  describeExit(): string {
    const st = this.#status;
    const how = st === undefined ? 'is running' : st.code !== null ? `exited with code ${st.code}` : `was killed by ${st.signal}`;
    return `${this.name} (pid ${this.pid}) ${how}; last lines of ${this.logPath}:\n${logTail(this.logPath)}`;
  }

  /** SIGTERM, then SIGKILL after graceMs; only this pid. Never throws. */
  async stop(graceMs: number): Promise<ExitStatus> {
    if (this.#status !== undefined) return this.#status;
    this.#child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, graceMs, undefined);
    });
    const st = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (st !== undefined) return st;
    this.#child.kill('SIGKILL');
    return this.exited;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` every intervalMs until it returns true. Fails fast with the
 * process's log tail if `proc` exits, or after timeoutMs with `lastProblem`.
 */
async function waitUntil(
  what: string,
  proc: NetnsProcess,
  timeoutMs: number,
  probe: () => Promise<{ ok: boolean; detail: string }>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not probed yet';
  for (;;) {
    if (!proc.running) {
      throw new ControlPlaneError('E_CP_EXITED', `${what}: ${proc.describeExit()}`);
    }
    const r = await probe().catch((err: unknown) => ({ ok: false, detail: err instanceof Error ? err.message : String(err) }));
    if (r.ok) return;
    last = r.detail;
    if (Date.now() > deadline) {
      throw new ControlPlaneError('E_CP_TIMEOUT', `${what}: not ready after ${timeoutMs} ms (last probe: ${last.trim().slice(0, 2000)}); ${proc.describeExit()}`);
    }
    await sleep(250);
  }
}

// ---------------------------------------------------------------- forwarding

/** A TCP listener on 127.0.0.1 in this process, forwarding into a namespace. */
interface Bridge {
  readonly port: number;
  readonly forwarder: NetnsProcess;
  close(): Promise<void>;
}

const FORWARDER = fileURLToPath(new URL('./netns-forwarder.ts', import.meta.url));

async function bridgeIntoNetns(opts: {
  netns: string;
  host: string;
  port: number;
  socketPath: string;
  logPath: string;
  timeoutMs: number;
}): Promise<Bridge> {
  const forwarder = NetnsProcess.start('netns-forwarder', opts.netns,
    [process.execPath, FORWARDER, opts.socketPath, opts.host, String(opts.port)], opts.logPath);
  try {
    await waitUntil('netns-forwarder', forwarder, opts.timeoutMs, () => new Promise((resolve) => {
      const s = createConnection(opts.socketPath);
      s.on('connect', () => { s.destroy(); resolve({ ok: true, detail: '' }); });
      s.on('error', (err) => resolve({ ok: false, detail: err.message }));
    }));
  } catch (err) {
    await forwarder.stop(1000);
    throw err;
  }
  const sockets = new Set<Socket>();
  // No Nagle on the TCP side: relayed exchanges would stall on delayed ACKs (40 ms).
  const server: Server = createServer({ noDelay: true }, (client) => {
    const upstream = createConnection(opts.socketPath);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
  } catch (err) {
    await forwarder.stop(1000);
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  let closing: Promise<void> | undefined;
  return {
    port,
    forwarder,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await closed;
        await forwarder.stop(2000);
      })();
      return closing;
    },
  };
}

// ---------------------------------------------------------------- control plane

export interface ControlPlaneOptions {
  /** Network namespace (a name under /run/netns) to run in; it must exist. */
  netns: string;
  /** IPv4 address in that namespace the apiserver binds to and advertises. */
  listenIp: string;
  /** Directory for certificates, etcd data and logs (created if missing). */
  workDir: string;
  /** Service ClusterIP range (default 10.96.0.0/12). */
  serviceClusterIpRange?: string;
  log?: Logger;
  /** How long etcd plus the apiserver may take to get ready (default 120 s). */
  startTimeoutMs?: number;
  /** Appended to the kube-apiserver command line (a later flag wins). */
  extraApiServerArgs?: readonly string[];
  /**
   * A cluster with kubelets and a controller manager (kube-cluster.ts):
   * Node and RBAC authorization (every component with only its rights), the
   * default admission plugins (ServiceAccount, NodeRestriction), and the admin
   * certificate as the client the API server shows kubelets (logs, exec).
   */
  withKubelets?: boolean;
  /** Binaries to use instead of k8sBinaries(). */
  binaries?: K8sBinaries;
  /**
   * How Services get their ClusterIPs. 'ipaddress' (the default): Kubernetes
   * 1.36's own allocator, an IPAddress object per ClusterIP. 'bitmap': the
   * allocator of releases before 1.33, one bitmap under /registry/ranges in
   * etcd, for a store seeded with many Services (bench/control-plane.ts).
   *
   * Why: after every allocation the 1.36 allocator (ipallocator.go,
   * createIPAddress) sets its metrics from Used() and Free(), each a scan of
   * every IPAddress in its informer, so creating a Service costs O(Services)
   * and seeding N costs O(N^2). Profiled at 14 000 Services: 85 % of the
   * apiserver's CPU in Allocator.Used, Services created at 43 a second and
   * falling (EndpointSlices at 870 a second); at ~1.1 us per IPAddress per
   * scan, 100 000 would take about 3 CPU-hours. The gate is locked on in 1.36,
   * so the apiserver emulates 1.33 (the oldest it can), where it can be turned
   * off: 100 000 Services and their slices in 410 s, flat. Objects and the
   * list/watch paths agents use are the same (bench-control at 1 000 Services
   * gave the agent's and kube-proxy's figures of before); the store holds no
   * IPAddress objects.
   */
  clusterIpAllocator?: 'ipaddress' | 'bitmap';
}

export interface ControlPlanePids {
  etcd?: number;
  apiserver?: number;
  forwarder?: number;
}

export interface ControlPlane {
  /** https://<listenIp>:6443, reachable from the fabric. */
  readonly url: string;
  /** Admin kubeconfig for `url`. */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port>, reachable from this (the test's) process. */
  readonly hostUrl: string;
  /** Admin kubeconfig for `hostUrl`. */
  readonly hostKubeconfigPath: string;
  readonly caPath: string;
  readonly pki: ControlPlanePki;
  readonly serviceClusterIpRange: string;
  readonly binaries: K8sBinaries;
  /** The log files, by process name. */
  readonly logs: { etcd: string; apiserver: string; forwarder: string };
  /** Stop everything this control plane started. Safe to call twice. */
  stop(): Promise<void>;
  /** Stop and start the apiserver (same etcd, same certificates). */
  restart(): Promise<void>;
  stopApiServer(): Promise<void>;
  /** Start the apiserver (if not running) and wait for /readyz. */
  startApiServer(): Promise<void>;
  /**
   * Compact etcd past every resourceVersion handed out so far; returns the
   * compaction revision. Requests the apiserver sends to etcd for an older
   * resourceVersion (a watch of a resource with no watch cache, an exact list
   * it cannot serve from the cache) are then answered with 410 Gone. The watch
   * cache keeps its own window: a cached resource answers 410 only for
   * versions older than that window, e.g. from before an apiserver restart.
   * `--watch-cache-sizes=<resource>#0` in extraApiServerArgs turns it off for
   * one resource.
   */
  compactEtcd(): Promise<number>;
  /** Pids of the processes running now. */
  pids(): ControlPlanePids;
}

function validate(opts: ControlPlaneOptions): { range: string; firstServiceIp: string } {
  if (!NETNS_NAME_RE.test(opts.netns)) {
    throw new ControlPlaneError('E_CP_INVALID', `netns ${JSON.stringify(opts.netns)} is not a valid namespace name`);
  }
  if (!existsSync(join(NETNS_DIR, opts.netns))) {
    throw new ControlPlaneError('E_CP_INVALID', `netns ${JSON.stringify(opts.netns)} does not exist (no ${NETNS_DIR}/${opts.netns})`);
  }
  if (!isIPv4(opts.listenIp)) {
    throw new ControlPlaneError('E_CP_INVALID', `listenIp ${JSON.stringify(opts.listenIp)} is not an IPv4 address`);
  }
  if (opts.workDir === '') {
    throw new ControlPlaneError('E_CP_INVALID', 'workDir "" is empty');
  }
  const socketPath = join(opts.workDir, 'apiserver.sock');
  if (Buffer.byteLength(socketPath) > UNIX_PATH_MAX) {
    throw new ControlPlaneError('E_CP_INVALID', `workDir ${JSON.stringify(opts.workDir)} is too long for a UNIX socket path inside it (${socketPath})`);
  }
  const range = opts.serviceClusterIpRange ?? DEFAULT_SERVICE_CLUSTER_IP_RANGE;
  let net: Address4;
  try {
    net = new Address4(range);
  } catch (err) {
    throw new ControlPlaneError('E_CP_INVALID', `serviceClusterIpRange ${JSON.stringify(range)} is not a valid IPv4 prefix`, { cause: err });
  }
  if (!range.includes('/') || net.subnetMask > 30 || net.startAddress().correctForm() !== net.correctForm()) {
    throw new ControlPlaneError('E_CP_INVALID', `serviceClusterIpRange ${JSON.stringify(range)} is not an IPv4 network prefix of length /30 or shorter (like 10.96.0.0/12)`);
  }
  return { range, firstServiceIp: net.startAddressExclusive().correctForm() };
}

/** GET https://127.0.0.1:port/path with the admin certificate. */
function httpsGet(port: number, path: string, pki: ControlPlanePki): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      method: 'GET',
      ca: readFileSync(pki.caCert),
      cert: readFileSync(pki.adminCert),
      key: readFileSync(pki.adminKey),
      timeout: 5000,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

class LocalControlPlane implements ControlPlane {
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly caPath: string;
  readonly serviceClusterIpRange: string;
  readonly logs: { etcd: string; apiserver: string; forwarder: string };
  readonly #opts: ControlPlaneOptions;
  readonly #firstServiceIp: string;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  #pki: ControlPlanePki | undefined;
  #binaries: K8sBinaries | undefined;
  #etcd: NetnsProcess | undefined;
  #apiserver: NetnsProcess | undefined;
  #bridge: Bridge | undefined;
  #hostKubeconfigPath: string | undefined;
  #stopping: Promise<void> | undefined;

  constructor(opts: ControlPlaneOptions) {
    const { range, firstServiceIp } = validate(opts);
    this.#opts = opts;
    this.#firstServiceIp = firstServiceIp;
    this.#log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'control-plane', netns: opts.netns });
    this.#timeoutMs = opts.startTimeoutMs ?? 120_000;
    this.serviceClusterIpRange = range;
    this.url = `https://${opts.listenIp}:${APISERVER_PORT}`;
    this.kubeconfigPath = join(opts.workDir, 'admin.kubeconfig');
    this.caPath = join(opts.workDir, 'pki', 'ca.crt');
    this.logs = {
      etcd: join(opts.workDir, 'etcd.log'),
      apiserver: join(opts.workDir, 'kube-apiserver.log'),
      forwarder: join(opts.workDir, 'netns-forwarder.log'),
    };
  }

  get pki(): ControlPlanePki {
    if (this.#pki === undefined) throw new ControlPlaneError('E_CP_STOPPED', 'control plane was not started');
    return this.#pki;
  }

  get binaries(): K8sBinaries {
    if (this.#binaries === undefined) throw new ControlPlaneError('E_CP_STOPPED', 'control plane was not started');
    return this.#binaries;
  }

  get hostUrl(): string {
    if (this.#bridge === undefined) throw new ControlPlaneError('E_CP_STOPPED', 'control plane is not running');
    return `https://127.0.0.1:${this.#bridge.port}`;
  }

  get hostKubeconfigPath(): string {
    if (this.#hostKubeconfigPath === undefined) throw new ControlPlaneError('E_CP_STOPPED', 'control plane is not running');
    return this.#hostKubeconfigPath;
  }

  #checkNotStopped(): void {
    if (this.#stopping !== undefined) throw new ControlPlaneError('E_CP_STOPPED', `control plane in netns ${this.#opts.netns} was stopped`);
  }

  async start(): Promise<void> {
    const { workDir, netns, listenIp } = this.#opts;
    await mkdir(workDir, { recursive: true });
    this.#binaries = this.#opts.binaries ?? await k8sBinaries({ log: this.#log });
    this.#checkNotStopped();
    this.#pki = await createControlPlanePki({
      dir: join(workDir, 'pki'),
      serverIps: [...new Set([listenIp, '127.0.0.1', this.#firstServiceIp])],
      serverDnsNames: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'],
    });
    await writeKubeconfig({
      path: this.kubeconfigPath,
      server: this.url,
      caCert: this.#pki.caCert,
      clientCert: this.#pki.adminCert,
      clientKey: this.#pki.adminKey,
    });
    // etcd listens on the namespace's loopback, which a new namespace has down.
    await run(['ip', '-n', netns, 'link', 'set', 'lo', 'up'], { timeoutMs: 10_000 });
    this.#checkNotStopped();
    await this.#startEtcd();
    this.#checkNotStopped();
    this.#bridge = await bridgeIntoNetns({
      netns,
      host: listenIp,
      port: APISERVER_PORT,
      socketPath: join(workDir, 'apiserver.sock'),
      logPath: this.logs.forwarder,
      timeoutMs: 30_000,
    });
    this.#hostKubeconfigPath = await writeKubeconfig({
      path: join(workDir, 'host-admin.kubeconfig'),
      server: `https://127.0.0.1:${this.#bridge.port}`,
      caCert: this.#pki.caCert,
      clientCert: this.#pki.adminCert,
      clientKey: this.#pki.adminKey,
    });
    await this.startApiServer();
  }

  async #etcdctl(args: readonly string[]): Promise<string> {
    const argv = ['nsenter', `--net=${NETNS_DIR}/${this.#opts.netns}`, '--',
      this.binaries.etcdctl, `--endpoints=${ETCD_CLIENT_URL}`, '--dial-timeout=2s', '--command-timeout=10s', ...args];
    try {
      return (await run(argv, { timeoutMs: 30_000, context: `etcdctl in netns ${this.#opts.netns}` })).stdout;
    } catch (err) {
      throw new ControlPlaneError('E_CP_ETCDCTL', `etcdctl ${args.join(' ')} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  async #startEtcd(): Promise<void> {
    const { workDir, netns } = this.#opts;
    const peer = 'http://127.0.0.1:2380';
    const argv = [
      this.binaries.etcd,
      '--name=hypha-test',
      `--data-dir=${join(workDir, 'etcd-data')}`,
      `--listen-client-urls=${ETCD_CLIENT_URL}`,
      `--advertise-client-urls=${ETCD_CLIENT_URL}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=hypha-test=${peer}`,
      '--initial-cluster-state=new',
      // A throwaway test store: no fsync (much faster on a busy disk). etcd
      // itself never compacts; the apiserver does every 5 min, and
      // compactEtcd on demand.
      '--unsafe-no-fsync',
      '--auto-compaction-retention=0',
      '--log-level=warn',
    ];
    this.#etcd = NetnsProcess.start('etcd', netns, argv, this.logs.etcd);
    this.#log.info({ pid: this.#etcd.pid, version: this.binaries.etcdVersion }, 'started etcd');
    await waitUntil('etcd', this.#etcd, this.#timeoutMs, async () => {
      const out = await this.#etcdctl(['endpoint', 'health', '-w', 'json']);
      return { ok: /"health":\s*true/.test(out), detail: out };
    });
    this.#log.info({ pid: this.#etcd.pid }, 'etcd ready');
  }

  #apiserverArgv(): string[] {
    const { listenIp } = this.#opts;
    const pki = this.pki;
    return [
      this.binaries.kubeApiserver,
      `--advertise-address=${listenIp}`,
      `--bind-address=${listenIp}`,
      `--secure-port=${APISERVER_PORT}`,
      `--etcd-servers=${ETCD_CLIENT_URL}`,
      `--client-ca-file=${pki.caCert}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--cert-dir=${join(this.#opts.workDir, 'apiserver-certs')}`,
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      `--service-cluster-ip-range=${this.serviceClusterIpRange}`,
      '--service-node-port-range=30000-32767',
      // No RBAC yet: the admin certificate is in system:masters either way.
      // (AlwaysAllow forces anonymous auth off; saying so keeps the log quiet.)
      '--authorization-mode=AlwaysAllow',
      '--anonymous-auth=false',
      // No controller-manager runs: the ServiceAccount plugin would reject
      // every pod (no token controller, no default service account). (A
      // list flag given twice appends: kubelet clusters must not get it.)
      ...(this.#opts.withKubelets === true ? [] : ['--disable-admission-plugins=ServiceAccount']),
      // Faster start and nothing to tune in a test: no APF, no profiling.
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      '--allow-privileged=true',
      ...(this.#opts.withKubelets === true ? [
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction',
        `--kubelet-client-certificate=${pki.adminCert}`,
        `--kubelet-client-key=${pki.adminKey}`,
        '--kubelet-preferred-address-types=InternalIP',
        '--enable-priority-and-fairness=true',
      ] : []),
      // Emulating 1.33 also takes the list and watch paths back to 1.33's
      // defaults: paginated lists read etcd (ListFromCacheSnapshot, on from
      // 1.34) and watch-list is off (WatchList, off in 1.33 alone). Both are
      // turned back on, so clients list as they would from a 1.36 apiserver.
      ...(this.#opts.clusterIpAllocator === 'bitmap' ? ['--emulated-version=1.33', '--feature-gates=MultiCIDRServiceAllocator=false,ListFromCacheSnapshot=true,WatchList=true'] : []),
      ...(this.#opts.extraApiServerArgs ?? []),
    ];
  }

  async startApiServer(): Promise<void> {
    this.#checkNotStopped();
    if (this.#apiserver?.running === true) return;
    const bridge = this.#bridge;
    if (bridge === undefined || this.#etcd?.running !== true) {
      throw new ControlPlaneError('E_CP_STOPPED', 'cannot start kube-apiserver: etcd is not running');
    }
    const started = Date.now();
    const proc = NetnsProcess.start('kube-apiserver', this.#opts.netns, this.#apiserverArgv(), this.logs.apiserver);
    this.#apiserver = proc;
    this.#log.info({ pid: proc.pid, version: this.binaries.kubernetesVersion, url: this.url }, 'started kube-apiserver');
    await waitUntil('kube-apiserver', proc, this.#timeoutMs, async () => {
      const r = await httpsGet(bridge.port, '/readyz?verbose', this.pki);
      return { ok: r.status === 200, detail: `HTTP ${r.status}: ${r.body.split('\n').filter((l) => l.includes('failed')).join('; ') || r.body}` };
    });
    this.#log.info({ pid: proc.pid, ms: Date.now() - started }, 'kube-apiserver ready');
  }

  async stopApiServer(): Promise<void> {
    const proc = this.#apiserver;
    if (proc === undefined) return;
    const st = await proc.stop(15_000);
    this.#log.info({ pid: proc.pid, ...st }, 'stopped kube-apiserver');
  }

  async restart(): Promise<void> {
    this.#checkNotStopped();
    await this.stopApiServer();
    await this.startApiServer();
  }

  async compactEtcd(): Promise<number> {
    this.#checkNotStopped();
    // etcd keeps the compaction revision itself, and a watch from
    // resourceVersion rv starts at rv+1: compacting at the current revision
    // would leave a watch from the newest rv still valid. Two writes to a key
    // outside the apiserver's /registry prefix move the revision on by two, so
    // every resourceVersion seen before this call is older than the compaction.
    const revisionOf = (out: string): number => {
      const header = (JSON.parse(out) as { header?: { revision?: unknown } }).header;
      if (typeof header?.revision !== 'number') {
        throw new ControlPlaneError('E_CP_ETCDCTL', `etcdctl printed no revision: ${out.trim()}`);
      }
      return header.revision;
    };
    await this.#etcdctl(['put', '/hypha-test/compaction', 'before', '-w', 'json']);
    const revision = revisionOf(await this.#etcdctl(['put', '/hypha-test/compaction', 'at', '-w', 'json']));
    await this.#etcdctl(['compaction', '--physical', String(revision)]);
    this.#log.info({ revision }, 'compacted etcd');
    return revision;
  }

  pids(): ControlPlanePids {
    const out: ControlPlanePids = {};
    if (this.#etcd?.running === true) out.etcd = this.#etcd.pid;
    if (this.#apiserver?.running === true) out.apiserver = this.#apiserver.pid;
    if (this.#bridge?.forwarder.running === true) out.forwarder = this.#bridge.forwarder.pid;
    return out;
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.stopApiServer();
      await this.#bridge?.close();
      if (this.#etcd !== undefined) {
        const st = await this.#etcd.stop(10_000);
        this.#log.info({ pid: this.#etcd.pid, ...st }, 'stopped etcd');
      }
    })();
    return this.#stopping;
  }
}

/**
 * Start etcd and kube-apiserver in `opts.netns` and wait until /readyz is ok.
 * On failure everything started so far is stopped before the error is thrown
 * (its message carries the failing process's log tail).
 */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const cp = new LocalControlPlane(opts);
  try {
    await cp.start();
  } catch (err) {
    await cp.stop();
    throw err;
  }
  return cp;
}
