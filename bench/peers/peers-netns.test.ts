// The peer rulesets in a real kernel: each dataplane (iptables-nft, iptables-legacy,
// nftables) is loaded into fresh network namespaces (legacy and nft iptables must not
// share one), at 3 services x 3 endpoints and at 1 000 x 10 (load and one-change times
// are reported), and TCP to a ClusterIP must reach both server namespaces behind the
// "node" namespace holding the rules. The C tools (bench/build/acceptd, connrate) carry
// the traffic; the connection rates measured are reported as test diagnostics.
//
// Root only. Namespaces are named hyp<pid>-… and removed in after hooks.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { IPTABLES_RESTORE_ARGS, IPTABLES_SAVE_NAT_ARGS, iptablesOneChange, iptablesRestoreInput } from './kube-proxy-iptables.ts';
import { NFT_LIST_ARGS, NFT_RUN_ARGS, nftInput, nftOneChange } from './kube-proxy-nftables.ts';
import { iptSepChain, iptSvcChain, nftServiceBase } from './kube-proxy-names.ts';
import type { EndpointChange, PeerOptions, PeerService } from './peer-service.ts';
import { type Daemon, type Topology, createTopology, listNetns, run, startDaemon, xtablesLockEnv } from './testbed.ts';

const PREFIX = `hyp${process.pid}-`;
const BUILD = fileURLToPath(new URL('../build/', import.meta.url));
const ACCEPTD = join(BUILD, 'acceptd');
const CONNRATE = join(BUILD, 'connrate');
const SECONDS = Number(process.env['HYPHA_PEERS_SECONDS'] ?? '3');
const CONCURRENCY = Number(process.env['HYPHA_PEERS_CONCURRENCY'] ?? '64');
const SERVER_PORTS = [8080, 8081, 8082, 8083, 8084];
const isRoot = process.getuid?.() === 0;

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
  load(netns: string, text: string): Promise<number>;
  /** The read kube-proxy does before a sync (iptables-save -t nat / nft list table); ms. */
  preSyncRead(netns: string): Promise<number>;
  inspect(netns: string): Promise<Loaded>;
  /** Does the changed service now DNAT to `to`? */
  hasChange(netns: string, services: PeerService[], change: EndpointChange): Promise<boolean>;
}

/** `lockDir` is where the per-namespace xtables lock files go (see xtablesLockEnv). */
function iptables(variant: 'nft' | 'legacy', lockDir: () => string): Dataplane {
  const env = (netns: string) => xtablesLockEnv(lockDir(), netns);
  return {
    name: `iptables-${variant}`,
    short: variant === 'nft' ? 'ipn' : 'ipl',
    full: (s) => iptablesRestoreInput(s, OPTS),
    one: (s, c) => iptablesOneChange(s, OPTS, c),
    async load(netns, text) {
      return (await run(`iptables-${variant}-restore`, IPTABLES_RESTORE_ARGS, { netns, input: text, env: env(netns) })).ms;
    },
    async preSyncRead(netns) {
      return (await run(`iptables-${variant}-save`, IPTABLES_SAVE_NAT_ARGS, { netns, env: env(netns) })).ms;
    },
    async inspect(netns) {
      const { stdout } = await run(`iptables-${variant}-save`, ['-t', 'nat'], { netns, env: env(netns) });
      const lines = stdout.split('\n');
      return {
        services: lines.filter((l) => l.startsWith(':KUBE-SVC-')).length,
        endpoints: lines.filter((l) => l.startsWith('-A KUBE-SEP-') && l.includes('-j DNAT')).length,
      };
    },
    async hasChange(netns, services, c) {
      const s = services[c.service]!;
      const name = `${s.namespace}/${s.name}:${s.portName}`;
      const { stdout } = await run(`iptables-${variant}-save`, ['-t', 'nat'], { netns, env: env(netns) });
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
  async load(netns, text) {
    return (await run('nft', NFT_RUN_ARGS, { netns, input: text })).ms;
  },
  async preSyncRead(netns) {
    return (await run('nft', NFT_LIST_ARGS, { netns })).ms;
  },
  async inspect(netns) {
    const map = await run('nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips'], { netns });
    const chains = await run('nft', ['list', 'table', 'ip', 'kube-proxy'], { netns });
    return {
      services: (map.stdout.match(/: goto service-/g) ?? []).length,
      endpoints: [...chains.stdout.matchAll(/numgen random mod (\d+) map/g)].reduce((n, m) => n + Number(m[1]), 0),
    };
  },
  async hasChange(netns, services, c) {
    const s = services[c.service]!;
    const chain = `service-${nftServiceBase(s.namespace, s.name, 'tcp', s.portName)}`;
    const { stdout } = await run('nft', ['list', 'chain', 'ip', 'kube-proxy', chain], { netns });
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

async function connrate(netns: string, args: string[]): Promise<ConnrateResult> {
  const { stdout } = await run(CONNRATE, args, { netns });
  return JSON.parse(stdout) as ConnrateResult;
}

describe('kube-proxy peers in the kernel', { skip: isRoot ? false : 'needs root (network namespaces)' }, () => {
  const daemons: Daemon[] = [];
  const topologies: Topology[] = [];
  const scratchNamespaces: string[] = [];
  // This run's scratch directory (targets files, xtables lock files), made in before().
  const dirs = { scratch: '' };
  const dataplanes: Dataplane[] = [iptables('nft', () => dirs.scratch), iptables('legacy', () => dirs.scratch), nftables];

  before(async () => {
    assert.ok(existsSync(ACCEPTD) && existsSync(CONNRATE), `${ACCEPTD} and ${CONNRATE} missing: run make bench-tools`);
    dirs.scratch = await mkdtemp(join(tmpdir(), `${PREFIX}`));
  });

  after(async () => {
    for (const d of daemons) d.kill();
    for (const t of topologies) await t.destroy();
    for (const ns of scratchNamespaces) await run('ip', ['netns', 'del', ns]).catch(() => {});
    for (const ns of await listNetns(PREFIX)) await run('ip', ['netns', 'del', ns]).catch(() => {});
    if (dirs.scratch !== '') await rm(dirs.scratch, { recursive: true, force: true });
    assert.deepEqual(await listNetns(PREFIX), [], 'namespaces left behind');
  });

  async function scratchNetns(name: string): Promise<string> {
    const ns = `${PREFIX}${name}`;
    await run('ip', ['netns', 'add', ns]);
    scratchNamespaces.push(ns);
    return ns;
  }

  async function topology(name: string): Promise<Topology> {
    const t = await createTopology({ prefix: `${PREFIX}${name}-`, servers: 2 });
    topologies.push(t);
    return t;
  }

  async function servers(t: Topology): Promise<Daemon[]> {
    const ds = await Promise.all(
      t.servers.map((ns, k) => startDaemon(ns, ACCEPTD, ['--ports', SERVER_PORTS.join(','), '--udp', '--reply-byte', String.fromCharCode(97 + k)])),
    );
    daemons.push(...ds);
    return ds;
  }

  async function accepted(ds: Daemon[]): Promise<number[]> {
    const out: number[] = [];
    for (const d of ds) {
      const lines = (await d.stop()) as { accepted: number }[];
      out.push(lines.at(-1)?.accepted ?? -1);
    }
    return out;
  }

  function report(t: TestContext, what: string, r: ConnrateResult): void {
    t.diagnostic(
      `${what}: ${Math.round(r.conns_per_s)} conn/s (${r.conns} in ${r.seconds}s, failed ${r.failed} ${JSON.stringify(r.errors)}, p50 ${r.p50_us} us, p99 ${r.p99_us} us, concurrency ${CONCURRENCY})`,
    );
  }

  const small = makeServices(3, 3, ['10.244.11.2', '10.244.12.2']);
  const large = makeServices(1000, 10, ['10.244.11.2', '10.244.12.2']);

  test('direct (no rules): the tools reach both servers, TCP and UDP; baseline connection rate', async (t) => {
    const topo = await topology('dir');
    const ds = await servers(topo);
    const udp = await run('nc', ['-u', '-w1', topo.serverIPs[1]!, '8080'], { netns: topo.client, input: 'ping\n' });
    assert.equal(udp.stdout, 'b');
    const targets = join(dirs.scratch, 'direct.txt');
    await writeFile(targets, topo.serverIPs.flatMap((ip) => SERVER_PORTS.map((p) => `${ip}:${p}`)).join('\n') + '\n');
    const r = await connrate(topo.client, ['--targets', targets, '--duration', String(SECONDS), '--warmup', '1', '--concurrency', String(CONCURRENCY)]);
    report(t, 'direct, 10 server endpoints', r);
    assert.ok(r.conns > 0);
    assert.ok(r.failed <= r.conns / 1000, `failed ${r.failed}: ${JSON.stringify(r.errors)}`);
    const [a, b] = await accepted(ds);
    assert.ok(a! > 0 && b! > 0, `accepted ${a} and ${b}`);
  });

  for (const dp of dataplanes) {
    describe(dp.name, () => {
      test('loads 3 services x 3 endpoints', async (t) => {
        const ns = await scratchNetns(`${dp.short}-s`);
        const ms = await dp.load(ns, dp.full(small));
        t.diagnostic(`${dp.name}: 3 x 3 loaded in ${ms.toFixed(1)} ms`);
        assert.deepEqual(await dp.inspect(ns), { services: 3, endpoints: 9 });
      });

      test('loads 1 000 services x 10 endpoints, then one endpoint change', async (t) => {
        const ns = await scratchNetns(`${dp.short}-l`);
        const text = dp.full(large);
        const ms = await dp.load(ns, text);
        assert.deepEqual(await dp.inspect(ns), { services: 1000, endpoints: 10000 });
        const change: EndpointChange = { service: 500, endpoint: 3, to: { ip: '10.244.99.99', port: 9999 } };
        const partial = dp.one(large, change);
        const readMs = await dp.preSyncRead(ns);
        const oneMs = await dp.load(ns, partial);
        assert.ok(await dp.hasChange(ns, large, change), 'changed endpoint not in the kernel');
        assert.equal((await dp.inspect(ns)).services, 1000);
        t.diagnostic(
          `${dp.name}: 1000 x 10 loaded in ${ms.toFixed(0)} ms (${(text.length / 1e6).toFixed(2)} MB input); ` +
            `one endpoint change in ${oneMs.toFixed(0)} ms (${(partial.length / 1e3).toFixed(1)} kB input; ` +
            `kube-proxy's read before a sync, ${dp.name.startsWith('iptables') ? 'iptables-save -t nat' : 'nft list table'}: ${readMs.toFixed(0)} ms)`,
        );
      });

      test('TCP to a ClusterIP reaches both servers (50 connections)', async () => {
        const topo = await topology(`${dp.short}-t`);
        const ds = await servers(topo);
        await dp.load(topo.node, dp.full(small));
        const vip = `${small[0]!.clusterIP}:${small[0]!.port}`;
        const r = await connrate(topo.client, ['--target', vip, '--count', '50', '--duration', '10', '--concurrency', '4']);
        assert.equal(r.conns, 50, JSON.stringify(r));
        assert.equal(r.failed, 0, JSON.stringify(r.errors));
        const [a, b] = await accepted(ds);
        assert.ok(a! > 0 && b! > 0, `server 1 accepted ${a}, server 2 ${b}`);
        assert.equal(a! + b!, 50);
      });

      test('connection rate through 1 000 services', async (t) => {
        const topo = await topology(`${dp.short}-r`);
        const ds = await servers(topo);
        await dp.load(topo.node, dp.full(large));
        const targets = join(dirs.scratch, `${dp.short}-vips.txt`);
        await writeFile(targets, large.map((s) => `${s.clusterIP}:${s.port}`).join('\n') + '\n');
        const r = await connrate(topo.client, ['--targets', targets, '--duration', String(SECONDS), '--warmup', '1', '--concurrency', String(CONCURRENCY)]);
        report(t, `${dp.name}, 1000 services x 10 endpoints`, r);
        assert.ok(r.conns > 0);
        assert.ok(r.failed <= r.conns / 1000, `failed ${r.failed}: ${JSON.stringify(r.errors)}`);
        const [a, b] = await accepted(ds);
        assert.ok(a! > 0 && b! > 0);
      });
    });
  }
});
