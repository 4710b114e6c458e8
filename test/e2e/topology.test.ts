// The namespace topology the datapath tests run on: addressing, reachability,
// the traffic tools, and cleanup in every way a run can end.
//
//   node --test test/e2e/topology.test.ts        (as root)

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Proc, isProcError } from './lib/proc.ts';
import {
  NETNS_MARKER,
  POD_GATEWAY,
  Topology,
  fabricIfnameFor,
  hostIfnameFor,
  isTopologyError,
  listNetns,
  pidAlive,
  toolArgv,
  type Host,
  type Node,
  type Pod,
  type Scratch,
} from './lib/topology.ts';
import type { LoopSummary, OnceResult, StreamResult } from './tools/client.ts';

const TOPOLOGY_MODULE = new URL('./lib/topology.ts', import.meta.url).href;

const client = (args: string[]): string[] => toolArgv('client', args);
const echoServer = (name: string, port: number, extra: string[] = []): string[] =>
  toolArgv('echo-server', ['--name', name, '--port', String(port), ...extra]);

function netnsWithPrefix(prefix: string): string[] {
  return listNetns().filter((n) => n.startsWith(prefix));
}

async function until(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function elapsed(t0: number): number {
  return Math.round(performance.now() - t0);
}

describe('a two-node cluster with an external host', () => {
  let topo: Topology;
  let n1: Node;
  let n2: Node;
  let a1: Pod; // on n1
  let a2: Pod; // on n1
  let b1: Pod; // on n2
  let b2: Pod; // on n2
  let ext: Host;

  before(async () => {
    Topology.sweepStale();
    topo = await Topology.create({ name: 'topology-test' });
    let t0 = performance.now();
    n1 = await topo.addNode('n1');
    const nodeMs = elapsed(t0);
    n2 = await topo.addNode('n2');
    await topo.routePodCidrs();
    t0 = performance.now();
    a1 = await topo.addPod(n1, 'a1');
    const podMs = elapsed(t0);
    [a2, b1, b2] = await Promise.all([topo.addPod(n1, 'a2'), topo.addPod(n2, 'b1'), topo.addPod(n2, 'b2')]);
    ext = await topo.addExternalHost('outside');
    assert.ok(nodeMs < 1000, `adding a node took ${nodeMs} ms`);
    assert.ok(podMs < 1000, `adding a pod took ${podMs} ms`);
    // Every pod answers TCP and UDP on 8080 with its own name.
    await Promise.all([a1, a2, b1, b2].map((p) => topo.spawnReady(p, echoServer(p.name, 8080, ['--both']))));
  });

  after(async () => {
    await topo?.destroy();
  });

  test('every namespace carries the run prefix and the cleanup marker', async () => {
    for (const ns of topo.namespaces) assert.ok(ns.startsWith(topo.prefix), ns);
    assert.match(topo.prefix, /^hy[0-9a-z]+-$/);
    assert.equal(topo.prefix.slice(2, -3), process.pid.toString(36));
    const [lo] = JSON.parse((await topo.exec(b2, ['ip', '-j', 'link', 'show', 'lo'])).stdout) as Array<{ ifalias?: string }>;
    assert.equal(lo?.ifalias, NETNS_MARKER);
  });

  test('nodes get their fabric address, pod CIDR, forwarding and rp_filter off', async () => {
    assert.equal(n1.ip, '192.168.77.11');
    assert.equal(n2.ip, '192.168.77.12');
    assert.equal(n1.podCidr, '10.244.1.0/24');
    assert.equal(n2.podCidr, '10.244.2.0/24');
    const sysctl = await topo.exec(n1, [
      'sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.default.rp_filter', 'net.ipv4.conf.eth0.rp_filter',
    ]);
    assert.deepEqual(sysctl.stdout.trim().split('\n'), ['1', '0', '0', '0']);
    const addr = await topo.exec(n1, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    assert.match(addr.stdout, /inet 192\.168\.77\.11\/24 /);
    const routes = await topo.exec(n1, ['ip', 'route', 'show', '10.244.2.0/24']);
    assert.match(routes.stdout, /10\.244\.2\.0\/24 via 192\.168\.77\.12 dev eth0/);
    const bridge = await topo.exec(topo.fabric, ['ip', '-o', 'link', 'show', 'master', 'br0']);
    assert.match(bridge.stdout, new RegExp(n1.fabricIfname));
    assert.match(bridge.stdout, new RegExp(ext.fabricIfname));
  });

  test('pods get IP/32, a default route via the link-local gateway and a permanent neighbour', async () => {
    assert.deepEqual([a1.ip, a2.ip, b1.ip, b2.ip].sort(), ['10.244.1.1', '10.244.1.2', '10.244.2.1', '10.244.2.2']);
    assert.equal(a1.hostIfname, hostIfnameFor('a1'));
    assert.ok(a1.hostIfname.length <= 15 && a1.hostIfname.startsWith('lxc'));
    assert.equal(typeof a1.hostIfindex, 'number');
    const addr = await topo.exec(a1, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    assert.match(addr.stdout, new RegExp(`inet ${a1.ip.replaceAll('.', '\\.')}/32 `));
    const routes = (await topo.exec(a1, ['ip', 'route'])).stdout;
    assert.match(routes, /^default via 169\.254\.1\.1 dev eth0/m);
    assert.match(routes, /^169\.254\.1\.1 dev eth0 scope link/m);
    const neigh = (await topo.exec(a1, ['ip', 'neigh', 'show', POD_GATEWAY])).stdout;
    assert.match(neigh, new RegExp(`lladdr ${a1.hostMac} PERMANENT`));
    const [hostLink] = JSON.parse((await topo.exec(n1, ['ip', '-j', 'link', 'show', 'dev', a1.hostIfname])).stdout) as Array<{
      address: string;
      ifindex: number;
      operstate: string;
    }>;
    assert.equal(hostLink?.address, a1.hostMac);
    assert.equal(hostLink?.ifindex, a1.hostIfindex);
    assert.equal(hostLink?.operstate, 'UP');
    const hostRoute = (await topo.exec(n1, ['ip', 'route', 'show', `${a1.ip}/32`])).stdout;
    assert.match(hostRoute, new RegExp(`dev ${a1.hostIfname} scope link`));
  });

  test('commands in a namespace still see the bpffs at /sys/fs/bpf', async () => {
    const r = await topo.exec(n1, ['stat', '-f', '-c', '%T', '/sys/fs/bpf']);
    assert.equal(r.stdout.trim(), 'bpf_fs');
  });

  test('pod to pod on the same node, TCP and UDP', async () => {
    const tcp = await topo.execJson<OnceResult>(a1, client(['once', '--to', `${a2.ip}:8080`]));
    assert.deepEqual({ ok: tcp.ok, reply: tcp.ok && tcp.reply }, { ok: true, reply: 'a2' });
    const udp = await topo.execJson<OnceResult>(a2, client(['once', '--udp', '--to', `${a1.ip}:8080`]));
    assert.deepEqual({ ok: udp.ok, reply: udp.ok && udp.reply }, { ok: true, reply: 'a1' });
  });

  test('pod to pod across nodes, TCP and UDP', async () => {
    const tcp = await topo.execJson<OnceResult>(a1, client(['once', '--to', `${b1.ip}:8080`]));
    assert.deepEqual({ ok: tcp.ok, reply: tcp.ok && tcp.reply }, { ok: true, reply: 'b1' });
    const udp = await topo.execJson<OnceResult>(b2, client(['once', '--udp', '--to', `${a2.ip}:8080`]));
    assert.deepEqual({ ok: udp.ok, reply: udp.ok && udp.reply }, { ok: true, reply: 'a2' });
  });

  test('a closed port is reported with its errno code, for TCP and UDP', async () => {
    const tcp = await topo.execJson<OnceResult>(a1, client(['once', '--to', `${b1.ip}:9999`]), { allowFail: true });
    assert.deepEqual({ ok: tcp.ok, error: !tcp.ok && tcp.error }, { ok: false, error: 'ECONNREFUSED' });
    const udp = await topo.execJson<OnceResult>(a1, client(['once', '--udp', '--to', `${b1.ip}:9999`]), { allowFail: true });
    assert.deepEqual({ ok: udp.ok, error: !udp.ok && udp.error }, { ok: false, error: 'ECONNREFUSED' });
    const r = await topo.exec(a1, client(['once', '--to', `${b1.ip}:9999`]), { allowFail: true });
    assert.equal(r.code, 1);
  });

  test('a long-lived stream across nodes gets every line echoed', async () => {
    const r = await topo.execJson<StreamResult>(a1, client(['stream', '--to', `${b2.ip}:8080`, '--duration', '0.5']));
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.reply, 'b2');
    assert.ok(r.sent >= 20, `sent ${r.sent}`);
    assert.equal(r.echoed, r.sent);
  });

  test('loop counts replies per backend and failures per error', async () => {
    const ok = await topo.execJson<LoopSummary>(b1, client(['loop', '--to', `${a1.ip}:8080`, '--count', '10']));
    assert.deepEqual([ok.attempts, ok.ok, ok.failed, ok.replies], [10, 10, 0, { a1: 10 }]);
    const refused = await topo.execJson<LoopSummary>(b1, client(['loop', '--udp', '--to', `${a1.ip}:9999`, '--count', '3']));
    assert.deepEqual([refused.failed, refused.errors], [3, { ECONNREFUSED: 3 }]);
  });

  test('the external host reaches a node IP, and a node answers on it', async () => {
    await topo.exec(ext, ['ping', '-c', '1', '-W', '2', n2.ip]);
    const srv = await topo.spawnReady(n1, echoServer('node-n1', 9000));
    const r = await topo.execJson<OnceResult>(ext, client(['once', '--to', `${n1.ip}:9000`]));
    assert.deepEqual({ ok: r.ok, reply: r.ok && r.reply }, { ok: true, reply: 'node-n1' });
    await srv.stop();
    assert.equal(srv.status?.code, 0);
  });

  test('an external host sends complete checksums; node fabric peers receive with GRO', async () => {
    const tx = (await topo.exec(ext, ['ethtool', '-k', 'eth0'])).stdout;
    assert.match(tx, /^tx-checksumming: off/m);
    const gro = (await topo.exec(topo.fabric, ['ethtool', '-k', n1.fabricIfname])).stdout;
    assert.match(gro, /^generic-receive-offload: on/m);
  });

  test('a failed command names the command, the namespace and its stderr', async () => {
    const err = await topo.exec(n1, ['ip', 'link', 'show', 'dev', 'nosuchdev']).then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e,
    );
    assert.ok(isProcError(err, 'COMMAND_FAILED'));
    assert.equal(err.exitCode, 1);
    assert.match(err.message, new RegExp(`in netns ${n1.netns}: .*ip link show dev nosuchdev exited with 1: .*nosuchdev`));
  });

  test('bad input is rejected with the field and the value', async () => {
    await assert.rejects(topo.addNode('n1'), (e) => isTopologyError(e, 'DUPLICATE') && /node name "n1"/.test(e.message));
    await assert.rejects(topo.addNode('Bad_Name'), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /node name "Bad_Name"/.test(e.message));
    await assert.rejects(topo.addNode('n9', { podCidr: '10.244.1.0/25' }), (e) => isTopologyError(e, 'DUPLICATE') && /overlaps node "n1"/.test(e.message));
    await assert.rejects(topo.addNode('n9', { podCidr: '10.0.0.1/24' }), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /podCidr "10\.0\.0\.1\/24" has host bits/.test(e.message));
    await assert.rejects(topo.addNode('n9', { ip: '10.1.1.1' }), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /node ip "10\.1\.1\.1" is not a host address of the fabric/.test(e.message));
    await assert.rejects(topo.addPod(n1, 'p9', { ip: a2.ip }), (e) => isTopologyError(e, 'DUPLICATE') && /pod ip "10\.244\.1\.2"/.test(e.message));
    await assert.rejects(topo.addPod(n1, 'p9', { ip: '10.244.1' }), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /pod ip "10\.244\.1" is not a valid IPv4 address/.test(e.message));
    await assert.rejects(topo.addExternalHost('h9', { routes: [{ to: '10.96.0.0/12', via: 'gateway' }] }), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /routes\[0\]\.via "gateway"/.test(e.message));
    // Nothing half-made is left behind by rejected calls.
    assert.deepEqual(topo.nodes.map((n) => n.name), ['n1', 'n2']);
    assert.equal(netnsWithPrefix(topo.prefix).length, topo.namespaces.length);
  });
});

describe('scratch namespaces', () => {
  test('a scratch namespace has loopback only, is on no network and keeps its tables to itself', async () => {
    const topo = await Topology.create({ name: 'scratch' });
    try {
      const node = await topo.addNode('n1');
      const s: Scratch = await topo.addScratch('rules');
      assert.deepEqual([s.kind, s.name, s.netns], ['scratch', 'rules', `${topo.prefix}rules`]);
      assert.deepEqual(topo.scratches, [s]);
      assert.ok(topo.namespaces.includes(s.netns));
      const links = JSON.parse((await topo.exec(s, ['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string; operstate: string; ifalias?: string }>;
      assert.deepEqual(links.map((l) => [l.ifname, l.ifalias]), [['lo', NETNS_MARKER]]);
      assert.equal((await topo.exec(s, ['ip', '-4', 'route', 'show'])).stdout.trim(), '');
      const ping = await topo.exec(s, ['ping', '-c', '1', '-W', '1', node.ip], { allowFail: true });
      assert.notEqual(ping.code, 0);
      assert.match(ping.stderr, /Network is unreachable/);
      // A table loaded here is not in the node (nor the other way round).
      await topo.exec(s, ['nft', '-f', '-'], { input: 'table ip scratchtest { chain c { type nat hook prerouting priority 0; }; }\n' });
      assert.match((await topo.exec(s, ['nft', 'list', 'tables'])).stdout, /table ip scratchtest/);
      assert.doesNotMatch((await topo.exec(node, ['nft', 'list', 'tables'])).stdout, /scratchtest/);
    } finally {
      await topo.destroy();
    }
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });

  test('removeScratch stops its processes and deletes it; the name is free again', async () => {
    const topo = await Topology.create({ name: 'scratch-rm' });
    try {
      const s = await topo.addScratch('s1');
      const p = topo.spawn(s, ['sh', '-c', 'echo \'{"ready":true}\'; while :; do sleep 0.05; done']);
      await p.waitForLine((l) => l.includes('ready'));
      await topo.removeScratch(s);
      assert.equal(p.status?.signal, 'SIGTERM');
      assert.ok(!listNetns().includes(s.netns));
      assert.deepEqual(topo.scratches, []);
      await assert.rejects(topo.removeScratch(s), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /scratch namespace "s1" is not one of topology "scratch-rm"/.test(e.message));
      const again = await topo.addScratch('s1');
      assert.ok(listNetns().includes(again.netns));
    } finally {
      await topo.destroy();
    }
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });

  test('bad scratch names are rejected with the field and the value; nothing is left half-made', async () => {
    const topo = await Topology.create({ name: 'scratch-bad' });
    try {
      await topo.addNode('n1');
      await assert.rejects(topo.addScratch('n1'), (e) => isTopologyError(e, 'DUPLICATE') && /scratch name "n1" is already used/.test(e.message));
      await assert.rejects(topo.addScratch('fabric'), (e) => isTopologyError(e, 'DUPLICATE') && /scratch name "fabric"/.test(e.message));
      await assert.rejects(topo.addScratch('Bad_Name'), (e) => isTopologyError(e, 'INVALID_ARGUMENT') && /scratch name "Bad_Name" must be/.test(e.message));
      // Its netns name taken by someone else: the step fails and the foreign netns stays.
      const foreign = `${topo.prefix}taken`;
      spawnSync('ip', ['netns', 'add', foreign]);
      await assert.rejects(topo.addScratch('taken'), (e) => isTopologyError(e, 'STEP_FAILED') && /adding scratch namespace "taken" failed/.test(e.message));
      assert.ok(listNetns().includes(foreign));
      assert.deepEqual(topo.scratches, []);
      spawnSync('ip', ['netns', 'del', foreign]);
      assert.equal(netnsWithPrefix(topo.prefix).length, topo.namespaces.length);
    } finally {
      await topo.destroy();
    }
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });
});

describe('scale', () => {
  test('adding 20 pods to a node', async (t) => {
    const topo = await Topology.create({ name: 'scale' });
    try {
      const node = await topo.addNode('n1');
      let t0 = performance.now();
      const pods: Pod[] = [];
      for (let i = 0; i < 20; i++) pods.push(await topo.addPod(node, `p${i}`));
      const sequentialMs = elapsed(t0);
      t0 = performance.now();
      await Promise.all(Array.from({ length: 20 }, (_, i) => topo.addPod(node, `q${i}`)));
      const parallelMs = elapsed(t0);
      t.diagnostic(`20 pods one after another: ${sequentialMs} ms (${(sequentialMs / 20).toFixed(1)} ms/pod); 20 at once: ${parallelMs} ms`);
      assert.equal(new Set(topo.pods.map((p) => p.ip)).size, 40);
      assert.equal(new Set(topo.pods.map((p) => p.hostIfname)).size, 40);
      assert.ok(sequentialMs < 20_000, `20 pods took ${sequentialMs} ms`);
      // The last pod is wired: the node reaches it.
      await topo.exec(node, ['ping', '-c', '1', '-W', '2', pods[19]?.ip ?? '']);
      // Removing a pod frees its address, its veth and its route.
      const gone = pods[3];
      assert.ok(gone !== undefined);
      await topo.removePod(gone);
      assert.ok(!listNetns().includes(gone.netns));
      const route = await topo.exec(node, ['ip', 'route', 'show', `${gone.ip}/32`]);
      assert.equal(route.stdout.trim(), '');
      const again = await topo.addPod(node, 'again');
      assert.equal(again.ip, gone.ip);
    } finally {
      await topo.destroy();
    }
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });
});

describe('cleanup', () => {
  test('destroy stops tracked processes and deletes every namespace; twice is fine', async () => {
    const topo = await Topology.create({ name: 'cleanup' });
    const node = await topo.addNode('n1');
    const pod = await topo.addPod(node, 'p1');
    await topo.addExternalHost('ext');
    const srv = await topo.spawnReady(pod, echoServer('p1', 8080));
    assert.equal(netnsWithPrefix(topo.prefix).length, 4);
    await topo.destroy();
    await topo.destroy();
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
    assert.equal(srv.status?.code, 0); // SIGTERM was enough: a clean exit
    await assert.rejects(topo.addNode('n2'), (e) => isTopologyError(e, 'DESTROYED'));
    assert.throws(() => topo.spawn(node, ['true']), (e) => isTopologyError(e, 'DESTROYED'));
  });

  test('a process that ignores SIGTERM is killed', async () => {
    const topo = await Topology.create({ name: 'stubborn' });
    const node = await topo.addNode('n1');
    const p = topo.spawn(node, ['sh', '-c', 'trap "" TERM; echo \'{"ready":true}\'; while :; do sleep 0.05; done']);
    await p.waitForLine((l) => l.includes('ready'));
    const t0 = performance.now();
    await topo.destroy();
    assert.equal(p.status?.signal, 'SIGKILL');
    assert.ok(elapsed(t0) < 5000);
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });

  test('a pod step failing midway removes what it created; the topology stays usable', async () => {
    const topo = await Topology.create({ name: 'midway' });
    try {
      const node = await topo.addNode('n1');
      // Occupy the host-side name the pod will want: the veth creation fails after
      // the pod netns exists.
      await topo.exec(node, ['ip', 'link', 'add', hostIfnameFor('victim'), 'type', 'bridge']);
      await assert.rejects(
        topo.addPod(node, 'victim'),
        (e) => isTopologyError(e, 'STEP_FAILED') && /adding pod "victim" on node "n1" failed/.test(e.message) && isProcError(e.cause),
      );
      assert.ok(!listNetns().includes(`${topo.prefix}victim`));
      assert.deepEqual(topo.pods, []);
      // The device it collided with is someone else's: still there. The name and
      // address were released.
      await topo.exec(node, ['ip', 'link', 'del', hostIfnameFor('victim')]);
      const pod = await topo.addPod(node, 'victim');
      assert.equal(pod.ip, '10.244.1.1');
      // Same for a node whose fabric-side veth name is taken.
      await topo.exec(topo.fabric, ['ip', 'link', 'add', fabricIfnameFor('node:n2'), 'type', 'bridge']);
      await assert.rejects(topo.addNode('n2'), (e) => isTopologyError(e, 'STEP_FAILED'));
      assert.ok(!listNetns().includes(`${topo.prefix}n2`));
      assert.deepEqual(topo.nodes.map((n) => n.name), ['n1']);
      await topo.exec(topo.fabric, ['ip', 'link', 'show', fabricIfnameFor('node:n2')]); // not ours: kept
      // The failed node gave its number back: the next one gets n2's defaults.
      const n3 = await topo.addNode('n3');
      assert.deepEqual([n3.ip, n3.podCidr], ['192.168.77.12', '10.244.2.0/24']);
    } finally {
      await topo.destroy();
    }
    assert.deepEqual(netnsWithPrefix(topo.prefix), []);
  });

  test('when a test body throws midway, try/finally destroy leaves nothing', async () => {
    let prefix = '';
    await assert.rejects(async () => {
      const topo = await Topology.create({ name: 'throws' });
      prefix = topo.prefix;
      try {
        const node = await topo.addNode('n1');
        await topo.addPod(node, 'p1');
        topo.spawn(node, echoServer('x', 8080));
        throw new Error('simulated failure');
      } finally {
        await topo.destroy();
      }
    }, /simulated failure/);
    assert.notEqual(prefix, '');
    assert.deepEqual(netnsWithPrefix(prefix), []);
  });

  // A child Node process builds a topology with a server in a pod, then ends in the given way.
  async function childRun(ending: 'sigterm' | 'sigint' | 'throw' | 'sigkill'): Promise<{ prefix: string; serverPid: number; child: Proc }> {
    const script = `
      import { Topology, toolArgv } from ${JSON.stringify(TOPOLOGY_MODULE)};
      const topo = await Topology.create({ name: 'child' });
      const node = await topo.addNode('n1');
      const pod = await topo.addPod(node, 'p1');
      const srv = await topo.spawnReady(pod, toolArgv('echo-server', ['--name', 'p1', '--port', '8080']));
      console.log(JSON.stringify({ prefix: topo.prefix, serverPid: srv.pid }));
      if (${JSON.stringify(ending)} === 'throw') setTimeout(() => { throw new Error('boom'); }, 10);
      else setInterval(() => {}, 1000);
    `;
    const child = Proc.start([process.execPath, '--input-type=module', '-e', script]);
    const line = await child.waitForLine((l) => l.startsWith('{'), { timeoutMs: 15_000 });
    const info = JSON.parse(line) as { prefix: string; serverPid: number };
    assert.equal(netnsWithPrefix(info.prefix).length, 3);
    assert.ok(pidAlive(info.serverPid));
    return { ...info, child };
  }

  for (const ending of ['sigterm', 'sigint', 'throw'] as const) {
    test(`a process ended by ${ending} cleans up its namespaces and processes`, async () => {
      const { prefix, serverPid, child } = await childRun(ending);
      try {
        if (ending === 'sigterm') child.kill('SIGTERM');
        if (ending === 'sigint') child.kill('SIGINT');
        const st = await child.exited;
        if (ending === 'throw') assert.equal(st.code, 1);
        else assert.equal(st.signal, ending === 'sigterm' ? 'SIGTERM' : 'SIGINT');
        if (ending === 'throw') assert.match(child.stderr, /boom/);
        assert.deepEqual(netnsWithPrefix(prefix), []);
        await until(`server pid ${serverPid} to end`, () => !pidAlive(serverPid));
      } finally {
        await child.stop();
        Topology.sweepStale();
      }
    });
  }

  test('a SIGKILLed run: its processes die with it and sweepStale removes its namespaces', async (t) => {
    const { prefix, serverPid, child } = await childRun('sigkill');
    child.kill('SIGKILL');
    await child.exited;
    await until(`server pid ${serverPid} to end`, () => !pidAlive(serverPid));
    // Nothing could clean up after SIGKILL. (Another test run sweeping at the same
    // moment may get there first: what is left is what we must remove.)
    const left = netnsWithPrefix(prefix);
    if (left.length < 3) t.diagnostic(`a concurrent sweep removed ${3 - left.length} of ${prefix}*`);
    const swept = Topology.sweepStale();
    for (const n of left) assert.ok(swept.removed.includes(n) || !listNetns().includes(n), n);
    assert.deepEqual(netnsWithPrefix(prefix), []);
  });

  test('sweepStale removes only marked namespaces of dead pids', () => {
    const r = spawnSync('true');
    const deadPid = r.pid;
    assert.ok(deadPid !== undefined && !pidAlive(deadPid));
    const dead = `hy${deadPid.toString(36)}zz-`;
    const live = `hy${process.ppid.toString(36)}zz-`; // the test runner: alive
    const fakes = {
      deadMarked: `${dead}stale`, // what a crashed run leaves
      deadMarkedBusy: `${dead}busy`,
      deadUnmarked: `${dead}foreign`, // a look-alike name of someone else's
      liveMarked: `${live}running`,
    };
    const ip = (...args: string[]): void => {
      const res = spawnSync('ip', args, { encoding: 'utf8' });
      assert.equal(res.status, 0, `ip ${args.join(' ')}: ${res.stderr}`);
    };
    try {
      for (const n of Object.values(fakes)) ip('netns', 'add', n);
      for (const n of [fakes.deadMarked, fakes.deadMarkedBusy, fakes.liveMarked]) {
        ip('-n', n, 'link', 'set', 'dev', 'lo', 'up', 'alias', NETNS_MARKER);
      }
      ip('-n', fakes.deadMarkedBusy, 'link', 'add', 'br9', 'type', 'bridge');
      const swept = Topology.sweepStale();
      // (A concurrent run's sweep may remove the dead ones before ours does.)
      const gone = (n: string): boolean => swept.removed.includes(n) || !listNetns().includes(n);
      assert.ok(gone(fakes.deadMarked));
      assert.ok(gone(fakes.deadMarkedBusy));
      assert.ok(swept.kept.some((k) => k.netns === fakes.deadUnmarked && k.reason === 'not-ours'));
      assert.ok(swept.kept.some((k) => k.netns === fakes.liveMarked && k.reason === 'pid-alive'));
      const left = listNetns();
      assert.ok(!left.includes(fakes.deadMarked) && !left.includes(fakes.deadMarkedBusy));
      assert.ok(left.includes(fakes.deadUnmarked) && left.includes(fakes.liveMarked));
    } finally {
      spawnSync('ip', ['-force', '-batch', '-'], { input: Object.values(fakes).map((n) => `netns del ${n}\n`).join('') });
    }
  });
});
