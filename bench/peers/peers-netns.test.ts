// The peer rulesets in a real kernel: each dataplane (iptables-nft, iptables-legacy,
// nftables) is loaded into fresh network namespaces (legacy and nft iptables must not
// share one), at 3 services x 3 endpoints and at 1 000 x 10 (load and one-change times
// are reported), and TCP to a ClusterIP must reach both server pods behind the node
// namespace holding the rules. The C tools (bench/build/acceptd, connrate) carry the
// traffic; the connection rates measured are reported as test diagnostics.
//
// The namespaces come from the e2e harness (test/e2e/lib/topology.ts): a fresh
// topology per test, each with its run prefix, destroyed when the test ends (and on
// any exit of the process); loads without traffic go into scratch namespaces. The
// traffic path is client pod --veth-- node (rules, forwarding) --veth-- server pod.
//
// Root only.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lastJsonObject } from '../../test/e2e/lib/proc.ts';
import { type Node, type Pod, type Proc, Topology, type Where, listNetns } from '../../test/e2e/lib/topology.ts';
import { IPTABLES_RESTORE_ARGS, IPTABLES_SAVE_NAT_ARGS, iptablesOneChange, iptablesRestoreInput, xtablesLockEnv } from './kube-proxy-iptables.ts';
import { NFT_LIST_ARGS, NFT_RUN_ARGS, nftInput, nftOneChange } from './kube-proxy-nftables.ts';
import { iptSepChain, iptSvcChain, nftServiceBase } from './kube-proxy-names.ts';
import type { EndpointChange, PeerOptions, PeerService } from './peer-service.ts';

const BUILD = fileURLToPath(new URL('../build/', import.meta.url));
const ACCEPTD = join(BUILD, 'acceptd');
const CONNRATE = join(BUILD, 'connrate');
const SECONDS = Number(process.env['HYPHA_PEERS_SECONDS'] ?? '3');
const CONCURRENCY = Number(process.env['HYPHA_PEERS_CONCURRENCY'] ?? '64');
const SERVER_PORTS = [8080, 8081, 8082, 8083, 8084];
/** Loads of 1 000 services take seconds; no tool here should take this long. */
const TOOL_TIMEOUT_MS = 600_000;
const isRoot = process.getuid?.() === 0;

// Inside the cluster CIDR the peers are given, so client-to-service traffic is
// pod-to-service traffic and is not masqueraded.
const CLIENT_IP = '10.244.1.2';
const SERVER_IPS = ['10.244.11.2', '10.244.12.2'];

const OPTS: PeerOptions = { clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16' };

/** n ClusterIP services in 10.96/16, endpoints spread over the servers' ports. */
function makeServices(n: number, perService: number, serverIPs: readonly string[]): PeerService[] {
  return Array.from({ length: n }, (_, i) => ({
    namespace: 'bench',
    name: `svc-${i}`,
    portName: 'http',
    protocol: 'TCP' as const,
    clusterIP: `10.96.${(i + 1) >> 8}.${(i + 1) & 255}`,
    port: 80,
    endpoints: Array.from({ length: perService }, (_, j) => ({
      ip: serverIPs[j % serverIPs.length]!,
      port: SERVER_PORTS[Math.floor(j / serverIPs.length)]!,
    })),
  }));
}

interface Loaded {
  /** Chains (iptables) or map elements (nftables) that prove the services are in. */
  services: number;
  endpoints: number;
}

interface Dataplane {
  name: string;
  short: string;
  full(services: PeerService[]): string;
  one(services: PeerService[], change: EndpointChange): string;
  /** Load a ruleset; wall time of the load tool (spawn included), ms. */
  load(t: Topology, at: Where, text: string): Promise<number>;
  /** The read kube-proxy does before a sync (iptables-save -t nat / nft list table); ms. */
  preSyncRead(t: Topology, at: Where): Promise<number>;
  inspect(t: Topology, at: Where): Promise<Loaded>;
  /** Does the changed service now DNAT to `to`? */
  hasChange(t: Topology, at: Where, services: PeerService[], change: EndpointChange): Promise<boolean>;
}

/** Run a tool inside `at`, and its wall time from spawn to exit. */
async function timed(t: Topology, at: Where, argv: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<{ stdout: string; ms: number }> {
  const t0 = performance.now();
  const r = await t.exec(at, argv, {
    timeoutMs: TOOL_TIMEOUT_MS,
    ...(opts.input === undefined ? {} : { input: opts.input }),
    ...(opts.env === undefined ? {} : { env: { ...process.env, ...opts.env } }),
  });
  return { stdout: r.stdout, ms: performance.now() - t0 };
}

function netnsOf(at: Where): string {
  return typeof at === 'string' ? at : at.netns;
}

/** `lockDir` is where the per-namespace xtables lock files go (see xtablesLockEnv). */
function iptables(variant: 'nft' | 'legacy', lockDir: () => string): Dataplane {
  const env = (at: Where) => xtablesLockEnv(lockDir(), netnsOf(at));
  const save = (t: Topology, at: Where, args: readonly string[]) => timed(t, at, [`iptables-${variant}-save`, ...args], { env: env(at) });
  return {
    name: `iptables-${variant}`,
    short: variant === 'nft' ? 'ipn' : 'ipl',
    full: (s) => iptablesRestoreInput(s, OPTS),
    one: (s, c) => iptablesOneChange(s, OPTS, c),
    async load(t, at, text) {
      return (await timed(t, at, [`iptables-${variant}-restore`, ...IPTABLES_RESTORE_ARGS], { input: text, env: env(at) })).ms;
    },
    async preSyncRead(t, at) {
      return (await save(t, at, IPTABLES_SAVE_NAT_ARGS)).ms;
    },
    async inspect(t, at) {
      const { stdout } = await save(t, at, ['-t', 'nat']);
      const lines = stdout.split('\n');
      return {
        services: lines.filter((l) => l.startsWith(':KUBE-SVC-')).length,
        endpoints: lines.filter((l) => l.startsWith('-A KUBE-SEP-') && l.includes('-j DNAT')).length,
      };
    },
    async hasChange(t, at, services, c) {
      const s = services[c.service]!;
      const name = `${s.namespace}/${s.name}:${s.portName}`;
      const { stdout } = await save(t, at, ['-t', 'nat']);
      const sep = iptSepChain(name, 'tcp', `${c.to.ip}:${c.to.port}`);
      return stdout.includes(`-A ${iptSvcChain(name, 'tcp')} -j ${sep}`) && stdout.includes(`--to-destination ${c.to.ip}:${c.to.port}`);
    },
  };
}

const nftables: Dataplane = {
  name: 'nftables',
  short: 'nft',
  full: (s) => nftInput(s, OPTS),
  one: (s, c) => nftOneChange(s, OPTS, c),
  async load(t, at, text) {
    return (await timed(t, at, ['nft', ...NFT_RUN_ARGS], { input: text })).ms;
  },
  async preSyncRead(t, at) {
    return (await timed(t, at, ['nft', ...NFT_LIST_ARGS])).ms;
  },
  async inspect(t, at) {
    const map = await timed(t, at, ['nft', 'list', 'map', 'ip', 'kube-proxy', 'service-ips']);
    const chains = await timed(t, at, ['nft', 'list', 'table', 'ip', 'kube-proxy']);
    return {
      services: (map.stdout.match(/: goto service-/g) ?? []).length,
      endpoints: [...chains.stdout.matchAll(/numgen random mod (\d+) map/g)].reduce((n, m) => n + Number(m[1]), 0),
    };
  },
  async hasChange(t, at, services, c) {
    const s = services[c.service]!;
    const chain = `service-${nftServiceBase(s.namespace, s.name, 'tcp', s.portName)}`;
    const { stdout } = await timed(t, at, ['nft', 'list', 'chain', 'ip', 'kube-proxy', chain]);
    return stdout.includes(`${c.to.ip} . ${c.to.port}`);
  },
};

interface ConnrateResult {
  conns: number;
  failed: number;
  errors: Record<string, number>;
  seconds: number;
  conns_per_s: number;
  p50_us: number;
  p99_us: number;
}

async function connrate(t: Topology, client: Pod, args: string[]): Promise<ConnrateResult> {
  // Runs at most max(SECONDS, 10) s after 1 s of warm-up.
  return t.execJson<ConnrateResult>(client, [CONNRATE, ...args], { timeoutMs: (Math.max(SECONDS, 10) + 1) * 1000 + 60_000 });
}

/** client pod --veth-- node (where the rules go; forwards) --veth-- server pods. */
interface Bed {
  topo: Topology;
  node: Node;
  client: Pod;
  servers: Pod[];
}

describe('kube-proxy peers in the kernel', { skip: isRoot ? false : 'needs root (network namespaces)' }, () => {
  const topologies: Topology[] = [];
  // This run's scratch directory (targets files, xtables lock files), made in before().
  const dirs = { scratch: '' };
  const dataplanes: Dataplane[] = [iptables('nft', () => dirs.scratch), iptables('legacy', () => dirs.scratch), nftables];

  before(async () => {
    assert.ok(existsSync(ACCEPTD) && existsSync(CONNRATE), `${ACCEPTD} and ${CONNRATE} missing: run make bench-tools`);
    Topology.sweepStale();
    dirs.scratch = await mkdtemp(join(tmpdir(), 'hypha-peers-'));
  });

  after(async () => {
    for (const t of topologies) await t.destroy();
    if (dirs.scratch !== '') await rm(dirs.scratch, { recursive: true, force: true });
    const left = listNetns().filter((n) => topologies.some((t) => n.startsWith(t.prefix)));
    assert.deepEqual(left, [], 'namespaces left behind');
  });

  /** A topology for one test: destroyed when `fn` ends, however it ends. */
  async function withTopology<T>(name: string, fn: (t: Topology) => Promise<T>): Promise<T> {
    const t = await Topology.create({ name: `peers-${name}` });
    topologies.push(t);
    try {
      return await fn(t);
    } finally {
      await t.destroy();
    }
  }

  async function bed(t: Topology): Promise<Bed> {
    // The node's pod CIDR is the whole cluster CIDR, so the client and both
    // servers (in 10.244.1/24, 10.244.11/24, 10.244.12/24) are its pods.
    const node = await t.addNode('node', { podCidr: '10.244.0.0/16' });
    // kube-proxy's iptables mode sets this for localhost NodePorts.
    await t.exec(node, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.route_localnet=1']);
    const client = await t.addPod(node, 'client', { ip: CLIENT_IP });
    await t.exec(client, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
    const servers = await Promise.all(SERVER_IPS.map((ip, k) => t.addPod(node, `s${k + 1}`, { ip })));
    for (const s of servers) await t.exec(s, ['sysctl', '-q', '-w', 'net.core.somaxconn=65535']);
    return { topo: t, node, client, servers };
  }

  /** acceptd in each server pod, answering with 'a', 'b', ... */
  function serve(b: Bed): Promise<Proc[]> {
    return Promise.all(
      b.servers.map((s, k) => b.topo.spawnReady(s, [ACCEPTD, '--ports', SERVER_PORTS.join(','), '--udp', '--reply-byte', String.fromCharCode(97 + k)])),
    );
  }

  /** Stop the servers; the connections each accepted (from the counters acceptd prints on exit). */
  async function accepted(ds: Proc[]): Promise<number[]> {
    const out: number[] = [];
    for (const d of ds) {
      await d.stop();
      const n = lastJsonObject(d.lines.join('\n'))?.['accepted'];
      out.push(typeof n === 'number' ? n : -1);
    }
    return out;
  }

  function report(t: TestContext, what: string, r: ConnrateResult): void {
    t.diagnostic(
      `${what}: ${Math.round(r.conns_per_s)} conn/s (${r.conns} in ${r.seconds}s, failed ${r.failed} ${JSON.stringify(r.errors)}, p50 ${r.p50_us} us, p99 ${r.p99_us} us, concurrency ${CONCURRENCY})`,
    );
  }

  const small = makeServices(3, 3, SERVER_IPS);
  const large = makeServices(1000, 10, SERVER_IPS);

  test('direct (no rules): the tools reach both servers, TCP and UDP; baseline connection rate', (t) =>
    withTopology('dir', async (topo) => {
      const b = await bed(topo);
      const ds = await serve(b);
      const udp = await topo.exec(b.client, ['nc', '-u', '-w1', b.servers[1]!.ip, '8080'], { input: 'ping\n' });
      assert.equal(udp.stdout, 'b');
      const targets = join(dirs.scratch, 'direct.txt');
      await writeFile(targets, b.servers.flatMap((s) => SERVER_PORTS.map((p) => `${s.ip}:${p}`)).join('\n') + '\n');
      const r = await connrate(topo, b.client, ['--targets', targets, '--duration', String(SECONDS), '--warmup', '1', '--concurrency', String(CONCURRENCY)]);
      report(t, 'direct, 10 server endpoints', r);
      assert.ok(r.conns > 0);
      assert.ok(r.failed <= r.conns / 1000, `failed ${r.failed}: ${JSON.stringify(r.errors)}`);
      const [a, c] = await accepted(ds);
      assert.ok(a! > 0 && c! > 0, `accepted ${a} and ${c}`);
    }));

  for (const dp of dataplanes) {
    describe(dp.name, () => {
      test('loads 3 services x 3 endpoints', (t) =>
        withTopology(`${dp.short}-s`, async (topo) => {
          const ns = await topo.addScratch('rules');
          const ms = await dp.load(topo, ns, dp.full(small));
          t.diagnostic(`${dp.name}: 3 x 3 loaded in ${ms.toFixed(1)} ms`);
          assert.deepEqual(await dp.inspect(topo, ns), { services: 3, endpoints: 9 });
        }));

      test('loads 1 000 services x 10 endpoints, then one endpoint change', (t) =>
        withTopology(`${dp.short}-l`, async (topo) => {
          const ns = await topo.addScratch('rules');
          const text = dp.full(large);
          const ms = await dp.load(topo, ns, text);
          assert.deepEqual(await dp.inspect(topo, ns), { services: 1000, endpoints: 10000 });
          const change: EndpointChange = { service: 500, endpoint: 3, to: { ip: '10.244.99.99', port: 9999 } };
          const partial = dp.one(large, change);
          const readMs = await dp.preSyncRead(topo, ns);
          const oneMs = await dp.load(topo, ns, partial);
          assert.ok(await dp.hasChange(topo, ns, large, change), 'changed endpoint not in the kernel');
          assert.equal((await dp.inspect(topo, ns)).services, 1000);
          t.diagnostic(
            `${dp.name}: 1000 x 10 loaded in ${ms.toFixed(0)} ms (${(text.length / 1e6).toFixed(2)} MB input); ` +
              `one endpoint change in ${oneMs.toFixed(0)} ms (${(partial.length / 1e3).toFixed(1)} kB input; ` +
              `kube-proxy's read before a sync, ${dp.name.startsWith('iptables') ? 'iptables-save -t nat' : 'nft list table'}: ${readMs.toFixed(0)} ms)`,
          );
        }));

      test('TCP to a ClusterIP reaches both servers (50 connections)', () =>
        withTopology(`${dp.short}-t`, async (topo) => {
          const b = await bed(topo);
          const ds = await serve(b);
          await dp.load(topo, b.node, dp.full(small));
          const vip = `${small[0]!.clusterIP}:${small[0]!.port}`;
          const r = await connrate(topo, b.client, ['--target', vip, '--count', '50', '--duration', '10', '--concurrency', '4']);
          assert.equal(r.conns, 50, JSON.stringify(r));
          assert.equal(r.failed, 0, JSON.stringify(r.errors));
          const [a, c] = await accepted(ds);
          assert.ok(a! > 0 && c! > 0, `server 1 accepted ${a}, server 2 ${c}`);
          assert.equal(a! + c!, 50);
        }));

      test('connection rate through 1 000 services', (t) =>
        withTopology(`${dp.short}-r`, async (topo) => {
          const b = await bed(topo);
          const ds = await serve(b);
          await dp.load(topo, b.node, dp.full(large));
          const targets = join(dirs.scratch, `${dp.short}-vips.txt`);
          await writeFile(targets, large.map((s) => `${s.clusterIP}:${s.port}`).join('\n') + '\n');
          const r = await connrate(topo, b.client, ['--targets', targets, '--duration', String(SECONDS), '--warmup', '1', '--concurrency', String(CONCURRENCY)]);
          report(t, `${dp.name}, 1000 services x 10 endpoints`, r);
          assert.ok(r.conns > 0);
          assert.ok(r.failed <= r.conns / 1000, `failed ${r.failed}: ${JSON.stringify(r.errors)}`);
          const [a, c] = await accepted(ds);
          assert.ok(a! > 0 && c! > 0);
        }));
    });
  }
});
