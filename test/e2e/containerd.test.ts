// A real container runtime on a test node: containerd 2.x + runc inside the
// node's network namespace, driven through the CRI with crictl, pods wired by
// the reference CNI plugins (bridge + host-local from Debian's
// containernetworking-plugins), agnhost traffic between two pods, and nothing
// left once the pods and the runtime are gone.
//
//   make test-containerd      (builds the binaries and images first if missing)

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { eventually } from './lib/agent.ts';
import {
  cgroupDirs,
  containerdBinaries,
  isContainerdError,
  mountsUnder,
  startContainerd,
  sweepStaleContainerd,
  type ContainerInfo,
  type ContainerdBinaries,
  type PodInfo,
  type Runtime,
} from './lib/containerd.ts';
import { Proc, run } from './lib/proc.ts';
import { Topology, pidAlive, type Node } from './lib/topology.ts';

const log = pino({ level: process.env['LOG_LEVEL'] ?? 'info' }, pino.destination(2));
const CNI_BIN_DIR = '/usr/lib/cni';
const NETWORK = 'hypha-ref-bridge';
const BRIDGE = 'cni0';
const HTTP_PORT = 8080;

interface Link {
  ifname: string;
  master?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

async function links(netnsArgv: readonly string[]): Promise<Link[]> {
  const r = await run([...netnsArgv, 'ip', '-j', '-d', 'addr', 'show']);
  return JSON.parse(r.stdout) as Link[];
}

/** Veths the bridge plugin made on the node: enslaved to the CNI bridge. */
const podVeths = (ls: Link[]): Link[] => ls.filter((l) => l.linkinfo?.info_kind === 'veth' && l.master === BRIDGE);

/** argv prefix that enters a pod's network namespace through its pause process. */
const inPod = (pod: PodInfo): string[] => ['nsenter', `--net=/proc/${pod.pid}/ns/net`, '--'];

describe('containerd + runc on a node, pods wired by the reference bridge and host-local plugins', () => {
  // A subnet of this run only (the node's netns is private either way).
  const subnet = `10.${200 + randomInt(50)}.${randomInt(256)}`;
  const cidr = `${subnet}.0/24`;
  const gateway = `${subnet}.1`;
  let topo: Topology | undefined;
  let node: Node;
  let workDir: string | undefined;
  let rt: Runtime | undefined;
  let bins: ContainerdBinaries;
  let agnhost: string;
  let server: PodInfo;
  let client: PodInfo;
  let serverC: ContainerInfo;
  let clientC: ContainerInfo;

  const runtime = (): Runtime => {
    assert.ok(rt, 'runtime not started');
    return rt;
  };

  before(async () => {
    sweepStaleContainerd({ log });
    Topology.sweepStale();
    bins = await containerdBinaries({ log });
    topo = await Topology.create({ name: 'containerd' });
    node = await topo.addNode('n1');
    workDir = await mkdtemp('/tmp/hyctrd-');
    const cniConfDir = join(workDir, 'net.d');
    const t0 = performance.now();
    rt = await startContainerd(topo, node, { workDir, cniBinDirs: [CNI_BIN_DIR], cniConfDir, log, binaries: bins });
    log.info({ ms: Math.round(performance.now() - t0), pid: rt.pid, versions: [bins.containerdVersion, bins.runcVersion, bins.crictlVersion] }, 'containerd started');
    // Written after start: containerd watches the directory.
    await writeFile(join(cniConfDir, '10-bridge.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: NETWORK,
      plugins: [{
        type: 'bridge',
        bridge: BRIDGE,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: cidr, gateway }]], routes: [{ dst: '0.0.0.0/0' }] },
      }],
    }, null, 2));
    const [name] = await rt.importImage(bins.agnhostImageTar);
    assert.ok(name, 'agnhost archive names no image');
    agnhost = name;
  });

  after(async () => {
    const report = await rt?.stop();
    if (report !== undefined && report.problems.length > 0) log.warn({ problems: report.problems }, 'containerd stop problems');
    await topo?.destroy();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  test('RunPodSandbox: each pod gets an address of the bridge network, a veth on the node, host-local state under /var/lib/cni', async (t) => {
    const r = runtime();
    server = await r.runPod('server', 'default', { labels: { app: 'server' } });
    client = await r.runPod('client', 'default', { labels: { app: 'client' }, annotations: { 'hypha.dev/test': 'containerd' } });
    t.diagnostic(`RunPodSandbox (crictl runp): server ${server.ms} ms, client ${client.ms} ms`);
    log.info({ server: server.ms, client: client.ms }, 'RunPodSandbox ms per pod');
    for (const p of [server, client]) {
      assert.match(p.ip, new RegExp(`^${subnet.replace(/\./g, '\\.')}\\.\\d+$`), `pod ${p.name} address ${p.ip} is not in ${cidr}`);
      assert.notEqual(p.ip, gateway);
      assert.ok(p.pid > 1 && pidAlive(p.pid), `pause pid ${p.pid} of ${p.name} is not running`);
      assert.ok(p.netnsPath.startsWith(`${r.dir}/state/`) && /\/netns\/cni-[0-9a-f-]+$/.test(p.netnsPath), `netns of ${p.name} is not under the state dir: ${p.netnsPath}`);
      const [eth0] = (await links(inPod(p))).filter((l) => l.ifname === 'eth0');
      assert.deepEqual(eth0?.addr_info?.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), [`${p.ip}/24`]);
      // host-local wrote its lease under /var/lib/cni, i.e. this node's cniStateDir.
      assert.ok(existsSync(join(r.cniStateDir, 'networks', NETWORK, p.ip)), `no host-local lease for ${p.ip} in ${r.cniStateDir}`);
    }
    assert.notEqual(server.ip, client.ip);
    const nodeLinks = await links(['nsenter', `--net=${topo?.netnsPath(node)}`, '--']);
    const bridge = nodeLinks.find((l) => l.ifname === BRIDGE);
    assert.deepEqual(bridge?.addr_info?.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), [`${gateway}/24`]);
    assert.equal(podVeths(nodeLinks).length, 2, `expected two pod veths on ${BRIDGE}: ${nodeLinks.map((l) => l.ifname).join(' ')}`);
    // The pod netns mounts exist only inside containerd's mount namespace.
    const netnsMounts = mountsUnder(join(r.dir, 'state')).map((m) => m.line.split(' ')[4]).filter((m) => m?.includes('/netns/'));
    assert.deepEqual(netnsMounts.sort(), [server.netnsPath, client.netnsPath].sort());
    assert.equal((await run(['findmnt', '-n', '-T', server.netnsPath, '-o', 'FSTYPE'])).stdout.trim(), 'ext4', 'the pod netns mount leaked into the test\'s mount namespace');
  });

  test('bad input is refused with the field and value named', async () => {
    const r = runtime();
    await assert.rejects(r.runPod('Bad_Name'), (err) => isContainerdError(err, 'E_CTRD_INVALID') && /pod name "Bad_Name"/.test(err.message));
    await assert.rejects(r.runContainer('f'.repeat(64), agnhost, []), (err) => isContainerdError(err, 'E_CTRD_NOT_FOUND') && /pod id "f{64}"/.test(err.message));
    await assert.rejects(r.importImage('relative.tar'), (err) => isContainerdError(err, 'E_CTRD_INVALID') && /"relative.tar"/.test(err.message));
  });

  test('agnhost netexec in one pod answers agnhost in the other: TCP connect, HTTP, the client address unchanged', async () => {
    const r = runtime();
    [serverC, clientC] = await Promise.all([
      r.runContainer(server.podId, agnhost, ['/agnhost', 'netexec', `--http-port=${HTTP_PORT}`, '--udp-port=-1'], { name: 'netexec' }),
      r.runContainer(client.podId, agnhost, ['/agnhost', 'netexec', `--http-port=${HTTP_PORT}`, '--udp-port=-1'], { name: 'netexec' }),
    ]);
    log.info({ server: serverC.ms, client: clientC.ms }, 'CreateContainer + StartContainer ms');
    // ExecSync in the client container: a TCP handshake with the server pod.
    await eventually('the server pod accepts TCP', async () =>
      (await r.exec(clientC.containerId, ['/agnhost', 'connect', `${server.ip}:${HTTP_PORT}`, '--timeout=1s'], { allowFail: true })).code === 0);
    const refused = await r.exec(clientC.containerId, ['/agnhost', 'connect', `${server.ip}:9`, '--timeout=2s'], { allowFail: true });
    assert.notEqual(refused.code, 0, 'a connection to a closed port of the server pod succeeded');
    assert.match(refused.stderr + refused.stdout, /REFUSED/);
    // HTTP from the client pod's agnhost to the server pod's (netexec /dial):
    // the reply carries the server pod's hostname, and the server saw the
    // client pod's own address (no NAT on the bridge).
    await eventually('the client pod serves HTTP', async () =>
      (await run([...inPod(client), 'curl', '-sS', '--max-time', '2', `http://127.0.0.1:${HTTP_PORT}/hostname`], { allowFail: true })).stdout === 'client');
    const dial = async (request: string): Promise<string[]> => {
      const url = `http://127.0.0.1:${HTTP_PORT}/dial?request=${request}&protocol=http&host=${server.ip}&port=${HTTP_PORT}&tries=1`;
      const res = await run([...inPod(client), 'curl', '-sS', '--max-time', '10', url]);
      return (JSON.parse(res.stdout) as { responses?: string[] }).responses ?? [];
    };
    assert.deepEqual(await dial('hostname'), ['server']);
    const [clientIp] = await dial('clientip');
    assert.match(clientIp ?? '', new RegExp(`^${client.ip.replace(/\./g, '\\.')}:\\d+$`), `server saw ${clientIp}, not the client pod ${client.ip}`);
  });

  test('removing a pod and stopping the runtime leave no netns mount, veth, lease, cgroup, process or directory', async () => {
    const r = runtime();
    assert.ok(topo);
    const procs = r.processes();
    assert.ok(procs.includes(server.pid) && procs.includes(client.pid) && procs.includes(serverC.pid), `pause/container pids not in the runtime's cgroup: ${procs.join(' ')}`);
    const cgroupOf = (podId: string): string[] => cgroupDirs(`${r.cgroupParent}/${podId}`);
    assert.ok(cgroupOf(server.podId).length >= 1, 'runc made no cgroup for the server pod under the cgroup parent');
    assert.ok(cgroupOf(server.podId).some((d) => d.startsWith('/sys/fs/cgroup/unified/')) || !existsSync('/sys/fs/cgroup/unified'), 'no unified cgroup for the pod');

    await r.removePod(server.podId);
    const nodeNetns = ['nsenter', `--net=${topo.netnsPath(node)}`, '--'];
    assert.equal(podVeths(await links(nodeNetns)).length, 1, 'the server pod veth is still on the node');
    assert.ok(!existsSync(join(r.cniStateDir, 'networks', NETWORK, server.ip)), 'host-local still holds the server pod address');
    assert.deepEqual(mountsUnder(server.netnsPath), [], 'the server pod netns is still mounted');
    assert.deepEqual(cgroupOf(server.podId), [], 'the server pod cgroups are still there');
    assert.ok(!pidAlive(server.pid) && !pidAlive(serverC.pid), 'server pod processes still run');

    const pids = r.processes();
    const dir = r.dir;
    const t0 = performance.now();
    const report = await r.stop();
    log.info({ ms: Math.round(performance.now() - t0), ...report }, 'runtime stopped');
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.podsRemoved, [client.podId]);
    assert.deepEqual(pids.filter(pidAlive), [], 'processes of the runtime still run');
    assert.deepEqual(cgroupDirs(r.cgroupName), [], 'cgroups of the runtime are left');
    assert.deepEqual(mountsUnder(dir), [], 'mounts under the runtime directory are left');
    assert.ok(!existsSync(dir), `${dir} is left`);
    assert.deepEqual(podVeths(await links(nodeNetns)), [], 'pod veths are left on the node');
    assert.equal(r.pid, undefined);
    await assert.rejects(r.runPod('late'), (err) => isContainerdError(err, 'E_CTRD_STOPPED'));
    assert.ok(workDir !== undefined && readdirSync(workDir).every((n) => n === 'net.d'), 'the runtime left files in workDir');
  });
});

describe('a failing CNI ADD', () => {
  let topo: Topology | undefined;
  let workDir: string | undefined;
  let rt: Runtime | undefined;

  before(async () => {
    topo = await Topology.create({ name: 'containerd-cni-fail' });
    const node = await topo.addNode('n1');
    workDir = await mkdtemp('/tmp/hyctrd-');
    const cniConfDir = join(workDir, 'net.d');
    rt = await startContainerd(topo, node, { workDir, cniBinDirs: [CNI_BIN_DIR], cniConfDir, log, binaries: await containerdBinaries({ log }) });
    await writeFile(join(cniConfDir, '10-missing.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'missing', plugins: [{ type: 'hypha-no-such-plugin' }] }));
  });

  after(async () => {
    await rt?.stop();
    await topo?.destroy();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  test('RunPodSandbox fails with the plugin\'s error, and containerd leaves no sandbox or netns behind', async () => {
    assert.ok(rt);
    const r = rt;
    await assert.rejects(r.runPod('p1'), (err) => isContainerdError(err, 'E_CTRD_COMMAND') && /hypha-no-such-plugin/.test(err.message) && /runp/.test(err.message));
    assert.equal((await r.crictl(['pods', '-q'])).stdout.trim(), '');
    assert.deepEqual(mountsUnder(join(r.dir, 'state')).filter((m) => m.line.includes('/netns/')), []);
    const report = await r.stop();
    assert.deepEqual(report.problems, []);
  });
});

describe('a runtime is cleaned up however the test process ends', () => {
  const CONTAINERD_MODULE = new URL('./lib/containerd.ts', import.meta.url).href;
  const TOPOLOGY_MODULE = new URL('./lib/topology.ts', import.meta.url).href;

  interface ChildInfo {
    prefix: string;
    dir: string;
    workDir: string;
    cgroupName: string;
    pids: number[];
  }

  // A child Node process starts a runtime with a pod running agnhost, prints what it made, then waits to be killed.
  async function childRun(): Promise<{ info: ChildInfo; child: Proc }> {
    const script = `
      import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
      import { join } from 'node:path';
      import { Topology } from ${JSON.stringify(TOPOLOGY_MODULE)};
      import { startContainerd } from ${JSON.stringify(CONTAINERD_MODULE)};
      const topo = await Topology.create({ name: 'child' });
      const node = await topo.addNode('n1');
      const workDir = await mkdtemp('/tmp/hyctrd-');
      const cniConfDir = join(workDir, 'net.d');
      await mkdir(cniConfDir);
      await writeFile(join(cniConfDir, '10-bridge.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'child', plugins: [
        { type: 'bridge', bridge: 'cni0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.199.0.0/24' }]] } }] }));
      const rt = await startContainerd(topo, node, { workDir, cniBinDirs: ['/usr/lib/cni'], cniConfDir, binaries: JSON.parse(process.env.BINS) });
      const [agnhost] = await rt.importImage(JSON.parse(process.env.BINS).agnhostImageTar);
      const pod = await rt.runPod('p1');
      await rt.runContainer(pod.podId, agnhost, ['/agnhost', 'pause']);
      console.log(JSON.stringify({ prefix: topo.prefix, dir: rt.dir, workDir, cgroupName: rt.cgroupName, pids: rt.processes() }));
      setInterval(() => {}, 1000);
    `;
    const child = Proc.start([process.execPath, '--input-type=module', '-e', script], {
      env: { ...process.env, BINS: JSON.stringify(await containerdBinaries({ log })) },
    });
    const line = await child.waitForLine((l) => l.startsWith('{"prefix"'), { timeoutMs: 60_000 });
    const info = JSON.parse(line) as ChildInfo;
    // containerd, the sandbox shim, pause, agnhost (at least).
    assert.ok(info.pids.length >= 4 && info.pids.every(pidAlive), `child runtime processes: ${info.pids.join(' ')}`);
    return { info, child };
  }

  async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test('SIGTERM: the exit hooks kill every runtime process and remove its cgroups and directory', async () => {
    const { info, child } = await childRun();
    try {
      child.kill('SIGTERM');
      assert.equal((await child.exited).signal, 'SIGTERM');
      await until('the runtime processes to end', () => !info.pids.some(pidAlive));
      assert.deepEqual(cgroupDirs(info.cgroupName), []);
      assert.ok(!existsSync(info.dir), `${info.dir} is left`);
      assert.deepEqual(mountsUnder(info.workDir), []);
    } finally {
      await child.stop();
      await rm(info.workDir, { recursive: true, force: true });
    }
  });

  test('SIGKILL: containerd dies with the run; sweepStaleContainerd kills the orphaned shims and containers and removes the cgroups', async () => {
    const { info, child } = await childRun();
    try {
      child.kill('SIGKILL');
      await child.exited;
      const containerd = info.pids[0] ?? 0;
      await until(`containerd (pid ${containerd}) to die of the parent-death signal`, () => !pidAlive(containerd));
      const orphans = info.pids.filter(pidAlive);
      assert.ok(orphans.length >= 3, `expected the shim, pause and agnhost to outlive a SIGKILLed run: ${orphans.join(' ')}`);
      // (Another run sweeping at the same moment may get there first.)
      const swept = sweepStaleContainerd({ log });
      assert.ok(swept.removed.includes(info.cgroupName) || cgroupDirs(info.cgroupName).length === 0, `sweep removed ${swept.removed.join(' ')}`);
      await until('the orphaned processes to end', () => !info.pids.some(pidAlive));
      assert.deepEqual(cgroupDirs(info.cgroupName), []);
      assert.deepEqual(mountsUnder(info.workDir), []);
    } finally {
      await child.stop();
      Topology.sweepStale();
      await rm(info.workDir, { recursive: true, force: true });
    }
  });
});
