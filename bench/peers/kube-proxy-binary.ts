// The real kube-proxy as a benchmark peer: the binary hack/k8s builds from the
// same Kubernetes module as the API server (`make k8s-versions`: KUBE_PROXY),
// run inside a node namespace of the e2e Topology, never in the root one,
// against a real kube-apiserver, in its iptables mode (through iptables-nft or
// iptables-legacy) or its nftables mode.
//
// Everything kube-proxy writes goes into the namespace it runs in: its rules,
// and the sysctls it sets there (net.ipv4.conf.all.route_localnet in iptables
// mode, a per-namespace value). The conntrack settings it would change
// (pkg/proxy/conntrack/sysctls.go) are all turned off: nf_conntrack_max and the
// module's hashsize are global (maxPerCore 0 leaves them), and the TCP and UDP
// timeouts and be_liberal are left as they are (0 / false), so the namespace's
// conntrack is the kernel's as in bench-ct. oomScoreAdj 0: the process keeps
// the OOM killer's default. Metrics and healthz listen on the namespace's
// 127.0.0.1.
//
// Timing comes from kube-proxy's own log (JSON, -v=2): every sync of a family
// ends with "SyncProxyRules complete" stamped with the wall clock in ms after
// the restore (iptables-restore or nft -f) returned, i.e. with the rules in the
// kernel. The IPv4 proxier's lines are the ones that count (kube-proxy runs an
// IPv6 proxier next to it, as on any node with IPv6 enabled).
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { Node, Proc, Topology } from '../../test/e2e/lib/topology.ts';
import { xtablesLockEnv } from './kube-proxy-iptables.ts';
import { iptSepChain, nftServiceBase } from './kube-proxy-names.ts';

/** The `peer` field of the rows this peer produces. */
export const BINARY_PEER = 'kube-proxy-binary';

export type BinaryDataplane = 'iptables-nft' | 'iptables-legacy' | 'nftables';
export const BINARY_DATAPLANES = ['iptables-nft', 'iptables-legacy', 'nftables'] as const satisfies readonly BinaryDataplane[];

/** --binary-max 'iptables-nft=1000,nftables=25000': the largest Service count
 *  the binary is started with, per dataplane (one not named: never). */
export function parseBinaryMax(text: string): (dp: BinaryDataplane) => number {
  const max = new Map(text.split(',').filter(Boolean).map((kv) => {
    const [k, v] = kv.split('=');
    if (!BINARY_DATAPLANES.includes(k as BinaryDataplane) || v === undefined || v === '' || !Number.isInteger(Number(v))) {
      throw new Error(`--binary-max entry ${JSON.stringify(kv)} is not <iptables-nft|iptables-legacy|nftables>=<count>`);
    }
    return [k as BinaryDataplane, Number(v)];
  }));
  return (dp) => max.get(dp) ?? -1;
}

/** Why a row measures kube-proxy's generated ruleset, not the binary. */
export function generatedReason(dp: BinaryDataplane, binaryMax: number): string {
  const limit = binaryMax < 0 ? `the kube-proxy binary is not run in ${dp} (--binary-max)` : `the kube-proxy binary is run up to ${binaryMax} Services in ${dp} (--binary-max)`;
  return `${limit}${dp === 'iptables-nft' ? ': its full sync is one iptables-nft-restore of the whole ruleset, quadratic in iptables 1.8.9 (5.9 s at 1 000 Services, over 18 minutes at 10 000)' : ''}`;
}

export interface KubeProxyOptions {
  /** The kube-proxy binary (KUBE_PROXY of `make k8s-versions`). */
  binary: string;
  /** An admin kubeconfig whose server the node namespace reaches. */
  kubeconfig: string;
  /** --hostname-override: the Node object kube-proxy reads its node IP from. */
  nodeName: string;
  dataplane: BinaryDataplane;
  /** --cluster-cidr (detect-local-mode ClusterCIDR). */
  clusterCIDR: string;
  /** Config, iptables shims and lock files go here. */
  workDir: string;
}

/** The KubeProxyConfiguration the peer runs with (defaults for everything not named). */
export function kubeProxyConfig(opts: Pick<KubeProxyOptions, 'kubeconfig' | 'nodeName' | 'dataplane' | 'clusterCIDR'>): Record<string, unknown> {
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: opts.dataplane === 'nftables' ? 'nftables' : 'iptables',
    hostnameOverride: opts.nodeName,
    clientConnection: { kubeconfig: opts.kubeconfig },
    clusterCIDR: opts.clusterCIDR,
    detectLocalMode: 'ClusterCIDR',
    conntrack: {
      maxPerCore: 0, min: 0, tcpBeLiberal: false,
      tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s', udpTimeout: '0s', udpStreamTimeout: '0s',
    },
    metricsBindAddress: '127.0.0.1:10249',
    healthzBindAddress: '127.0.0.1:10256',
    oomScoreAdj: 0,
    logging: { format: 'json', verbosity: 2 },
  };
}

export interface SyncLine {
  /** Wall clock, ms since the epoch, when the sync finished. */
  ts: number;
  family: string;
  /** kube-proxy's own measure of the sync ("1.234s"), in seconds. */
  elapsedSeconds: number;
}

/** Go's time.Duration String() ("1.5s", "850ms", "12.3µs", "1m2.5s") in seconds. */
export function parseGoDuration(s: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, 'µs': 1e-6, 'μs': 1e-6, ns: 1e-9 };
  let total = 0;
  let matched = '';
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|μs|ns)/g)) {
    total += Number(m[1]) * (units[m[2]!] ?? NaN);
    matched += m[0];
  }
  if (matched !== s || s === '') throw new Error(`duration ${JSON.stringify(s)} is not a Go duration`);
  return total;
}

/** A "SyncProxyRules complete" line of kube-proxy's JSON log, or undefined. */
export function parseSyncLine(line: string): SyncLine | undefined {
  if (!line.includes('SyncProxyRules complete')) return undefined;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (v['msg'] !== 'SyncProxyRules complete' || typeof v['ts'] !== 'number') return undefined;
  return { ts: v['ts'], family: String(v['ipFamily'] ?? ''), elapsedSeconds: parseGoDuration(String(v['elapsed'] ?? '')) };
}

const wallMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Which iptables binaries `iptables` etc. name for kube-proxy (it runs them from PATH). */
const IPTABLES_NAMES = ['iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore'];

export class KubeProxyBinary {
  readonly topo: Topology;
  readonly node: Node;
  readonly opts: KubeProxyOptions;
  readonly configPath: string;
  readonly env: NodeJS.ProcessEnv;
  proc: Proc | undefined;
  /** Wall clock (ms) just before the process was started. */
  startedAt = 0;
  #cursor = 0;
  readonly #syncs: SyncLine[] = [];

  constructor(topo: Topology, node: Node, opts: KubeProxyOptions) {
    this.topo = topo;
    this.node = node;
    this.opts = opts;
    mkdirSync(opts.workDir, { recursive: true });
    this.configPath = path.join(opts.workDir, 'kube-proxy.yaml');
    writeFileSync(this.configPath, stringify(kubeProxyConfig(opts)));
    // iptables mode runs `iptables`, `iptables-restore` ... from PATH (the
    // official image picks the variant with a wrapper): a directory of links
    // to the variant measured, first in PATH, decides it explicitly.
    const shims = path.join(opts.workDir, 'bin');
    mkdirSync(shims, { recursive: true });
    if (opts.dataplane !== 'nftables') {
      const variant = opts.dataplane === 'iptables-legacy' ? 'legacy' : 'nft';
      for (const name of IPTABLES_NAMES) {
        const [family, ...rest] = name.split('-');
        symlinkSync(`/usr/sbin/${[`${family}-${variant}`, ...rest].join('-')}`, path.join(shims, name));
      }
    }
    this.env = { ...process.env, PATH: `${shims}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, ...xtablesLockEnv(opts.workDir, node.netns) };
  }

  start(): void {
    this.startedAt = wallMs();
    // klog writes to stderr; the Proc keeps stdout line by line (sh execs
    // kube-proxy, so the pid held is kube-proxy's).
    this.proc = this.topo.spawn(this.node, ['sh', '-c', 'exec "$0" "$@" 2>&1', this.opts.binary, '--config', this.configPath], {
      env: this.env, maxLines: 1_000_000, context: `kube-proxy (${this.opts.dataplane}) on ${this.node.name}`,
    });
  }

  #scan(): void {
    const lines = this.proc?.lines ?? [];
    for (; this.#cursor < lines.length; this.#cursor++) {
      const s = parseSyncLine(lines[this.#cursor]!);
      if (s && s.family === 'IPv4') this.#syncs.push(s);
    }
  }

  /** The IPv4 syncs finished so far. */
  syncs(): readonly SyncLine[] {
    this.#scan();
    return this.#syncs;
  }

  /** The first IPv4 sync that finished after wall-clock `afterMs`. */
  async waitForSync(afterMs: number, timeoutMs: number): Promise<SyncLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.syncs().find((x) => x.ts > afterMs);
      if (s) return s;
      if (this.proc?.status) throw new Error(`kube-proxy exited (${JSON.stringify(this.proc.status)}): ${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`kube-proxy (${this.opts.dataplane}) finished no sync within ${timeoutMs} ms: ${this.logTail()}`);
      await sleep(5);
    }
  }

  logTail(n = 15): string {
    return [...(this.proc?.lines ?? []).slice(-n), this.proc?.stderr ?? ''].join('\n').slice(-4000);
  }

  /** Peak resident set (VmHWM) of the kube-proxy process, MB; its iptables-restore / nft children are not in it. */
  peakRssMb(): number {
    const status = readFileSync(`/proc/${this.proc!.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
  }

  #exec(argv: string[], allowFail = false): Promise<{ code: number | null; stdout: string }> {
    return this.topo.exec(this.node, argv, { env: this.env, allowFail, timeoutMs: 600_000, context: `rules of kube-proxy on ${this.node.name}` });
  }

  /** ClusterIP Service ports with endpoints that have their chain in the IPv4 ruleset. */
  async serviceChains(): Promise<number> {
    if (this.opts.dataplane === 'nftables') {
      // nft 1.0.6 has no `list chains <family> <table>`; -t leaves the sets' elements out.
      const r = await this.#exec(['nft', '-t', 'list', 'table', 'ip', 'kube-proxy']);
      return r.stdout.split('\n').filter((l) => /^\s*chain service-\S*\//.test(l)).length;
    }
    const r = await this.#exec(['iptables-save', '-t', 'nat']);
    return r.stdout.split('\n').filter((l) => l.startsWith(':KUBE-SVC-')).length;
  }

  /** Whether the Service port's rules send traffic to ip:port (the chain kube-proxy writes for that endpoint). */
  async hasEndpoint(svc: { namespace: string; name: string; portName: string }, ip: string, port: number): Promise<boolean> {
    if (this.opts.dataplane === 'nftables') {
      const chain = `service-${nftServiceBase(svc.namespace, svc.name, 'tcp', svc.portName)}`;
      const r = await this.#exec(['nft', 'list', 'chain', 'ip', 'kube-proxy', chain], true);
      return r.code === 0 && r.stdout.includes(`${ip} . ${port}`);
    }
    // The endpoint chain is named after the endpoint; it is written in the
    // same restore as the Service chain's jump to it.
    const sep = iptSepChain(`${svc.namespace}/${svc.name}:${svc.portName}`, 'tcp', `${ip}:${port}`);
    const r = await this.#exec(['iptables', '-w', '5', '-t', 'nat', '-S', sep], true);
    return r.code === 0 && r.stdout.includes(`--to-destination ${ip}:${port}`);
  }

  async stop(): Promise<void> {
    await this.proc?.stop({ graceMs: 5000 });
  }

  /** After stop: empty the namespace's tables (kernel memory held by a large ruleset). */
  async flushRules(): Promise<void> {
    if (this.opts.dataplane === 'iptables-legacy') {
      for (const bin of ['iptables', 'ip6tables']) {
        for (const table of ['nat', 'filter', 'mangle']) {
          await this.#exec([bin, '-w', '5', '-t', table, '-F'], true);
          await this.#exec([bin, '-w', '5', '-t', table, '-X'], true);
        }
      }
    }
    await this.#exec(['nft', 'flush', 'ruleset'], true);
  }
}

export interface ColdStart {
  /** Process start to the end of its first IPv4 sync. */
  seconds: number;
  /** That sync alone, as kube-proxy logs it. */
  syncSeconds: number;
  rssMb: number;
  /** Service chains in the IPv4 ruleset after it. */
  chains: number;
}

/** Start kube-proxy and wait for its first IPv4 sync, which holds every
 *  Service its informers listed; check the ruleset has `expected` Service chains. */
export async function coldStart(kp: KubeProxyBinary, expected: number, timeoutMs: number): Promise<ColdStart> {
  kp.start();
  const s = await kp.waitForSync(0, timeoutMs);
  const rssMb = kp.peakRssMb();
  const chains = await kp.serviceChains();
  if (chains < expected) throw new Error(`kube-proxy (${kp.opts.dataplane}) synced ${chains} Service chains, expected ${expected}: ${kp.logTail()}`);
  return { seconds: (s.ts - kp.startedAt) / 1000, syncSeconds: s.elapsedSeconds, rssMb, chains };
}

/**
 * From a write at `t0` (wall ms) until kube-proxy's IPv4 rules send the Service
 * to ip:port: the first sync after t0 whose result holds the endpoint. Seconds,
 * and that sync's own duration as kube-proxy logs it.
 */
export async function changeToRules(
  kp: KubeProxyBinary, t0: number, svc: { namespace: string; name: string; portName: string }, ip: string, port: number, timeoutMs = 300_000,
): Promise<{ seconds: number; syncSeconds: number }> {
  let after = t0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await kp.waitForSync(after, Math.max(1, deadline - Date.now()));
    if (await kp.hasEndpoint(svc, ip, port)) return { seconds: (s.ts - t0) / 1000, syncSeconds: s.elapsedSeconds };
    after = s.ts;
  }
}

export { wallMs };
