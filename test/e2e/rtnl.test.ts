// rtnetlink on the real kernel (src/datapath/rtnl.ts): pod veths created with the
// peer directly in the pod's namespace, addresses, routes, neighbours, a VXLAN
// between two nodes with its FDB, every error path, and the time per pod for 100
// pods in a row and 30 at once. The product never runs `ip`; the test uses it to
// look at what the kernel has.
//
//   node --test test/e2e/rtnl.test.ts        (as root)

import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { after, before, describe, test, type TestContext } from 'node:test';

import { Rtnl, isRtnlError, type LinkInfo, type Route } from '../../src/datapath/rtnl.ts';
import { POD_GATEWAY, Topology, type Node, type Scratch } from './lib/topology.ts';

/** Hypha's route protocol number for these tests (anything >= RTPROT_STATIC is free). */
const PROTO = 201;

interface IpLink {
  ifindex: number;
  ifname: string;
  address?: string;
  mtu: number;
  flags: string[];
  link_netnsid?: number;
  link_index?: number;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number; learning?: boolean; link?: string } };
}

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  scope?: string;
  flags?: string[];
  table?: string | number;
}

describe('rtnl on a real kernel', () => {
  let topo: Topology;
  let n1: Node;
  let n2: Node;
  let host: Rtnl; // in n1
  const opened: Rtnl[] = [];

  const ipJson = async <T>(where: Node | Scratch | string, args: string[]): Promise<T> => {
    const r = await topo.exec(where, ['ip', '-j', ...args]);
    return JSON.parse(r.stdout || '[]') as T;
  };
  const open = (where?: Node | Scratch): Rtnl => {
    const r = Rtnl.open(where === undefined ? undefined : topo.netnsPath(where));
    opened.push(r);
    return r;
  };
  const ping = (from: Node | Scratch, ip: string) => topo.exec(from, ['ping', '-n', '-q', '-c', '1', '-w', '5', ip], { allowFail: true });

  interface PodPlan {
    name: string;
    ip: string;
    hostMac: string;
    podMac?: string;
  }

  /**
   * A veth lxcN <-> eth0 (in the pod), both ends configured as Hypha's pods are, with
   * the fewest exchanges: the create's echo gives both ifindexes, then one batch per side
   * (at the same time: they are different sockets).
   */
  async function plumbPod(pod: Scratch, p: PodPlan, on = host): Promise<{ hostIndex: number; podIndex: number }> {
    const path = topo.netnsPath(pod);
    const fd = openSync(path, 'r');
    let link: LinkInfo;
    try {
      link = await on.vethCreate({ name: p.name, peerName: 'eth0', peerNetnsFd: fd, peerNetnsPath: path, mac: p.hostMac, ...(p.podMac ? { peerMac: p.podMac } : {}) });
    } finally {
      closeSync(fd);
    }
    const podIndex = link.linkIndex as number;
    const inPod = Rtnl.open(path);
    try {
      await Promise.all([
        inPod.batch((b) =>
          b
            .addrAdd(podIndex, `${p.ip}/32`)
            .linkSetUp(podIndex)
            .routeReplace({ dst: `${POD_GATEWAY}/32`, ifindex: podIndex, scope: 'link' })
            .routeReplace({ dst: 'default', gateway: POD_GATEWAY, ifindex: podIndex })
            .neighReplace({ ifindex: podIndex, ip: POD_GATEWAY, mac: p.hostMac }),
        ),
        on.batch((b) => b.linkSetUp(link.index).routeReplace({ dst: `${p.ip}/32`, ifindex: link.index, scope: 'link', protocol: PROTO })),
      ]);
    } finally {
      inPod.close();
    }
    return { hostIndex: link.index, podIndex };
  }

  /** The same, one call (one exchange) per operation, looking the ifindexes up. */
  async function plumbPodOneByOne(pod: Scratch, p: PodPlan, on = host): Promise<void> {
    const path = topo.netnsPath(pod);
    const fd = openSync(path, 'r');
    try {
      await on.vethCreate({ name: p.name, peerName: 'eth0', peerNetnsFd: fd, mac: p.hostMac });
    } finally {
      closeSync(fd);
    }
    const inPod = Rtnl.open(path);
    try {
      const podIndex = ((await inPod.linkGet('eth0')) as LinkInfo).index;
      await inPod.addrAdd(podIndex, `${p.ip}/32`);
      await inPod.linkSetUp(podIndex);
      await inPod.routeReplace({ dst: `${POD_GATEWAY}/32`, ifindex: podIndex, scope: 'link' });
      await inPod.routeReplace({ dst: 'default', gateway: POD_GATEWAY, ifindex: podIndex });
      await inPod.neighReplace({ ifindex: podIndex, ip: POD_GATEWAY, mac: p.hostMac });
    } finally {
      inPod.close();
    }
    const hostIndex = ((await on.linkGet(p.name)) as LinkInfo).index;
    await on.linkSetUp(hostIndex);
    await on.routeReplace({ dst: `${p.ip}/32`, ifindex: hostIndex, scope: 'link', protocol: PROTO });
  }

  before(async () => {
    Topology.sweepStale();
    topo = await Topology.create({ name: 'rtnl' });
    [n1, n2] = await Promise.all([topo.addNode('n1'), topo.addNode('n2')]);
    host = open(n1);
  });
  after(async () => {
    for (const r of opened) r.close();
    await topo?.destroy();
  });

  test('a veth is created with its peer directly in the pod namespace, and traffic crosses it once both ends are set up', async () => {
    const pod = await topo.addScratch('pod-a');
    const { hostIndex, podIndex } = await plumbPod(pod, { name: 'lxcpoda', ip: '10.244.1.10', hostMac: '02:aa:00:00:00:01', podMac: '02:bb:00:00:00:01' });

    // What `ip` sees: the host end in the node, eth0 in the pod, peers of each other.
    const [hostLink] = await ipJson<IpLink[]>(n1, ['-d', 'link', 'show', 'dev', 'lxcpoda']);
    const [podLink] = await ipJson<IpLink[]>(pod, ['-d', 'link', 'show', 'dev', 'eth0']);
    assert.equal(hostLink?.linkinfo?.info_kind, 'veth');
    assert.equal(podLink?.linkinfo?.info_kind, 'veth');
    assert.equal(hostLink?.link_index, podLink?.ifindex);
    assert.equal(podLink?.link_index, hostLink?.ifindex);
    assert.equal(podLink?.address, '02:bb:00:00:00:01');
    assert.ok(podLink?.flags.includes('UP'));
    // What linkGet says about it.
    const info = (await host.linkGet('lxcpoda')) as LinkInfo;
    assert.deepEqual(
      { index: info.index, name: info.name, mac: info.mac, kind: info.kind, up: info.up, peer: info.linkIndex, mtu: info.mtu },
      { index: hostIndex, name: 'lxcpoda', mac: '02:aa:00:00:00:01', kind: 'veth', up: true, peer: podIndex, mtu: 1500 },
    );
    assert.equal(typeof info.linkNetnsId, 'number', 'the peer is in another namespace');
    assert.equal(info.operState, 'up');
    assert.ok((await host.linkList()).some((l) => l.name === 'lxcpoda' && l.index === hostIndex));

    // Pod side as `ip` shows it: /32, link route to the gateway, default via it, permanent neighbour.
    const routes = await ipJson<IpRoute[]>(pod, ['route', 'show']);
    assert.deepEqual(
      routes.map((r) => [r.dst, r.gateway ?? null, r.dev, r.scope ?? null]).sort(),
      [
        [POD_GATEWAY, null, 'eth0', 'link'],
        ['default', POD_GATEWAY, 'eth0', null],
      ].sort(),
    );
    const [neigh] = await ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(pod, ['neigh', 'show', 'dev', 'eth0']);
    assert.deepEqual([neigh?.dst, neigh?.lladdr, neigh?.state], [POD_GATEWAY, '02:aa:00:00:00:01', ['PERMANENT']]);
    const [addr] = await ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(pod, ['-4', 'addr', 'show', 'dev', 'eth0']);
    assert.deepEqual(addr?.addr_info.map((a) => `${a.local}/${a.prefixlen}`), ['10.244.1.10/32']);

    // Packets both ways across the veth.
    const there = await ping(n1, '10.244.1.10');
    assert.equal(there.code, 0, `node -> pod ping: ${there.stdout}${there.stderr}`);
    const back = await ping(pod, n1.ip);
    assert.equal(back.code, 0, `pod -> node ping: ${back.stdout}${back.stderr}`);

    // MTU and down, by name and by index.
    await host.linkSetMtu('lxcpoda', 1400);
    await host.linkSetUp(hostIndex, false);
    const [after] = await ipJson<IpLink[]>(n1, ['link', 'show', 'dev', 'lxcpoda']);
    assert.equal(after?.mtu, 1400);
    assert.ok(!after?.flags.includes('UP'));
    assert.deepEqual(
      [(await host.linkGet(hostIndex))?.mtu, (await host.linkGet(hostIndex))?.up, (await host.linkGet(hostIndex))?.operState],
      [1400, false, 'down'],
    );
    await assert.rejects(host.linkSetMtu('lxcpoda', 20), (err: unknown) => isRtnlError(err, 'EINVALARG') && /mtu 20/.test(err.message));
  });

  test('addresses: list, add, replace, EEXIST with the kernel reason, delete', async () => {
    const pod = await topo.addScratch('pod-addr');
    const r = open(pod);
    const lo = (await r.linkGet('lo')) as LinkInfo;
    await r.addrAdd(lo.index, '10.77.0.1/24');
    await r.addrReplace(lo.index, '10.77.0.1/24'); // idempotent
    await r.addrAdd(lo.index, '10.77.1.1/32');
    const listed = (await r.addrList(lo.index)).map((a) => `${a.address}/${a.prefixLength}`).sort();
    assert.deepEqual(listed, ['10.77.0.1/24', '10.77.1.1/32', '127.0.0.1/8']);
    assert.equal((await r.addrList()).find((a) => a.address === '127.0.0.1')?.scope, 'host');
    const shown = await ipJson<Array<{ addr_info: Array<{ local: string }> }>>(pod, ['-4', 'addr', 'show', 'dev', 'lo']);
    assert.deepEqual(shown[0]?.addr_info.map((a) => a.local).sort(), ['10.77.0.1', '10.77.1.1', '127.0.0.1']);
    await assert.rejects(r.addrAdd(lo.index, '10.77.0.1/24'), (err: unknown) => {
      assert.ok(isRtnlError(err, 'EEXIST'));
      assert.equal(err.op, 'RTM_NEWADDR');
      assert.match(err.message, new RegExp(`^rtnl RTM_NEWADDR address 10\\.77\\.0\\.1/24 on ifindex ${lo.index} in netns ${topo.netnsPath(pod)}: EEXIST File exists`));
      assert.match(err.extack ?? '', /already assigned/);
      return true;
    });
    assert.equal(await r.addrDelete(lo.index, '10.77.1.1/32'), true);
    assert.equal(await r.addrDelete(lo.index, '10.77.1.1/32'), false);
    await assert.rejects(r.addrList(999_999), (err: unknown) => isRtnlError(err, 'ENODEV'));
  });

  test('routes: onlink via a link-local gateway, protocol / table / device filters, replace and delete', async () => {
    const pod = await topo.addScratch('pod-rt');
    await host.vethCreate({ name: 'lxcrt', peerName: 'eth0', peerNetnsPath: topo.netnsPath(pod), mac: '02:aa:00:00:00:02' });
    await host.linkSetUp('lxcrt');
    const r = open(pod);
    const podIndex = ((await r.linkGet('eth0')) as LinkInfo).index;
    await r.linkSetUp(podIndex);

    // Without a route to 169.254.1.1 the gateway is unreachable, unless it is onlink.
    await assert.rejects(r.routeReplace({ dst: 'default', gateway: POD_GATEWAY, ifindex: podIndex }), (err: unknown) => {
      assert.ok(isRtnlError(err, 'ENETUNREACH'), String(err));
      assert.equal(err.op, 'RTM_NEWROUTE');
      assert.match(err.message, /route default via 169\.254\.1\.1 dev ifindex \d+/);
      assert.ok(err.extack, 'the kernel says why');
      return true;
    });
    await r.routeReplace({ dst: 'default', gateway: POD_GATEWAY, ifindex: podIndex, onlink: true, protocol: PROTO });
    const [def] = await ipJson<IpRoute[]>(pod, ['route', 'show', 'default']);
    assert.deepEqual([def?.gateway, def?.dev, def?.flags], [POD_GATEWAY, 'eth0', ['onlink']]);
    const listed = await r.routeList();
    assert.deepEqual(listed.find((x) => x.dst === 'default'), {
      dst: 'default', gateway: POD_GATEWAY, ifindex: podIndex, onlink: true, protocol: PROTO, table: 254, scope: 'universe', type: 'unicast',
    });

    // Ours (protocol PROTO) among others, in the main table and in table 1001.
    const ours: Route[] = [
      { dst: '10.90.1.0/24', gateway: POD_GATEWAY, ifindex: podIndex, onlink: true, protocol: PROTO },
      { dst: '10.90.2.0/24', gateway: POD_GATEWAY, ifindex: podIndex, onlink: true, protocol: PROTO, mtu: 1400 },
      { dst: '10.90.3.0/24', ifindex: podIndex, protocol: PROTO, metric: 50 },
    ];
    for (const route of ours) await r.routeReplace(route);
    await r.routeReplace({ dst: '10.91.0.0/16', ifindex: podIndex }); // boot, like `ip route add`
    await r.routeReplace({ dst: '10.92.0.0/16', ifindex: podIndex, table: 1001, protocol: PROTO });
    const mine = await r.routeList({ protocol: PROTO });
    assert.deepEqual(mine.map((x) => x.dst).sort(), ['10.90.1.0/24', '10.90.2.0/24', '10.90.3.0/24', 'default']);
    assert.equal(mine.find((x) => x.dst === '10.90.2.0/24')?.mtu, 1400);
    assert.equal(mine.find((x) => x.dst === '10.90.3.0/24')?.metric, 50);
    const shownProto = await ipJson<IpRoute[]>(pod, ['route', 'show', 'proto', String(PROTO)]);
    assert.deepEqual(shownProto.map((x) => x.dst).sort(), mine.map((x) => x.dst).sort(), 'the same as `ip route show proto`');
    assert.deepEqual((await r.routeList({ table: 1001 })).map((x) => [x.dst, x.table, x.protocol]), [['10.92.0.0/16', 1001, PROTO]]);
    assert.deepEqual((await r.routeList({ table: 0, protocol: PROTO })).length, 5, 'table 0: every table');
    assert.deepEqual(await r.routeList({ table: 4242 }), [], 'a table that does not exist has no routes');
    assert.ok((await r.routeList({ ifindex: podIndex })).every((x) => x.ifindex === podIndex));
    const main = await r.routeList();
    assert.ok(main.some((x) => x.dst === '10.91.0.0/16' && x.protocol === 3 && x.scope === 'link'));

    // Replace changes in place; delete says whether there was something.
    await r.routeReplace({ dst: '10.90.3.0/24', ifindex: podIndex, protocol: PROTO, metric: 50, mtu: 1300 });
    assert.equal((await r.routeList({ protocol: PROTO })).find((x) => x.dst === '10.90.3.0/24')?.mtu, 1300);
    assert.equal(await r.routeDelete({ dst: '10.90.3.0/24', metric: 51 }), false, 'a metric given must match');
    assert.equal(await r.routeDelete({ dst: '10.90.3.0/24', metric: 50 }), true);
    assert.equal(await r.routeDelete({ dst: '10.90.3.0/24' }), false);
    assert.equal(await r.routeDelete({ dst: '10.92.0.0/16', table: 1001 }), true);
    assert.equal(await r.routeDelete({ dst: '10.92.0.0/16', table: 1001 }), false);
    // Pruning only our routes.
    for (const x of await r.routeList({ protocol: PROTO })) assert.equal(await r.routeDelete(x), true, `delete ${x.dst}`);
    assert.deepEqual(await r.routeList({ protocol: PROTO }), []);
    assert.ok((await r.routeList()).some((x) => x.dst === '10.91.0.0/16'), 'others left alone');
  });

  test('neighbours: permanent entries, list, replace, delete', async () => {
    const pod = await topo.addScratch('pod-nb');
    const path = topo.netnsPath(pod);
    await host.vethCreate({ name: 'lxcnb', peerName: 'eth0', peerNetnsPath: path });
    const r = open(pod);
    const eth0 = (await r.linkGet('eth0')) as LinkInfo;
    await r.neighReplace({ ifindex: eth0.index, ip: '169.254.1.1', mac: '02:aa:00:00:00:03' });
    await r.neighReplace({ ifindex: eth0.index, ip: '10.1.2.3', mac: '02:aa:00:00:00:04', state: 'reachable' });
    await r.neighReplace({ ifindex: eth0.index, ip: '169.254.1.1', mac: '02:aa:00:00:00:05' }); // replace
    const listed = (await r.neighList(eth0.index)).map((n) => [n.ip, n.mac, n.state]).sort();
    assert.deepEqual(listed, [['10.1.2.3', '02:aa:00:00:00:04', 'reachable'], ['169.254.1.1', '02:aa:00:00:00:05', 'permanent']].sort());
    const shown = await ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>(pod, ['neigh', 'show', 'dev', 'eth0', 'nud', 'permanent']);
    assert.deepEqual(shown.map((n) => [n.dst, n.lladdr]), [['169.254.1.1', '02:aa:00:00:00:05']]);
    assert.equal(await r.neighDelete({ ifindex: eth0.index, ip: '10.1.2.3' }), true);
    assert.equal(await r.neighDelete({ ifindex: eth0.index, ip: '10.1.2.3' }), false);
    assert.deepEqual((await r.neighList()).map((n) => n.ip), ['169.254.1.1']);
  });

  test('a VXLAN between two nodes over their fabric link: device, FDB, neighbours, and a ping across it', async () => {
    const sides = [
      { node: n1, r: host, addr: '10.250.0.1' },
      { node: n2, r: open(n2), addr: '10.250.0.2' },
    ];
    const links: LinkInfo[] = [];
    for (const s of sides) {
      await s.r.vxlanCreate({ name: 'vxhy', vni: 4242, local: s.node.ip, dev: 'eth0', learning: false, mtu: 1450 });
      const link = (await s.r.linkGet('vxhy')) as LinkInfo;
      await s.r.addrAdd(link.index, `${s.addr}/24`);
      await s.r.linkSetUp(link.index);
      links.push(link);
    }
    const [l1, l2] = links as [LinkInfo, LinkInfo];
    const eth0 = (await host.linkGet('eth0')) as LinkInfo;
    assert.equal(l1.kind, 'vxlan');
    assert.deepEqual(l1.vxlan, { vni: 4242, local: n1.ip, port: 8472, learning: false, linkIndex: eth0.index });
    const [shown] = await ipJson<IpLink[]>(n1, ['-d', 'link', 'show', 'dev', 'vxhy']);
    const data = shown?.linkinfo?.info_data;
    assert.deepEqual([data?.id, data?.local, data?.port, data?.learning, data?.link, shown?.mtu], [4242, n1.ip, 8472, false, 'eth0', 1450]);

    for (const [i, s] of sides.entries()) {
      const here = links[i] as LinkInfo;
      const peer = sides[1 - i] as (typeof sides)[number];
      const peerLink = links[1 - i] as LinkInfo;
      await s.r.fdbAppend({ ifindex: here.index, mac: '00:00:00:00:00:00', dst: peer.node.ip });
      await s.r.fdbReplace({ ifindex: here.index, mac: peerLink.mac as string, dst: peer.node.ip });
      await s.r.neighReplace({ ifindex: here.index, ip: peer.addr, mac: peerLink.mac as string });
    }
    // A second flooding remote, listed, then removed again.
    await host.fdbAppend({ ifindex: l1.index, mac: '00:00:00:00:00:00', dst: '192.168.77.99' });
    await host.fdbAppend({ ifindex: l1.index, mac: '00:00:00:00:00:00', dst: '192.168.77.99' }); // again: no change
    const fdb = (await host.fdbList(l1.index)).map((e) => [e.mac, e.dst, e.permanent, e.self]).sort();
    assert.deepEqual(fdb, [
      ['00:00:00:00:00:00', n2.ip, true, true],
      ['00:00:00:00:00:00', '192.168.77.99', true, true],
      [l2.mac, n2.ip, true, true],
    ].sort());
    const bridgeFdb = JSON.parse((await topo.exec(n1, ['bridge', '-j', 'fdb', 'show', 'dev', 'vxhy'])).stdout) as Array<{ mac: string; dst?: string; flags: string[]; state: string }>;
    assert.deepEqual(bridgeFdb.map((e) => [e.mac, e.dst, e.state, e.flags.includes('self')]).sort(), fdb.map(([mac, dst]) => [mac, dst, 'permanent', true]).sort());
    assert.equal(await host.fdbDelete({ ifindex: l1.index, mac: '00:00:00:00:00:00', dst: '192.168.77.99' }), true);
    assert.equal(await host.fdbDelete({ ifindex: l1.index, mac: '00:00:00:00:00:00', dst: '192.168.77.99' }), false);
    assert.equal(await host.fdbDelete({ ifindex: l1.index, mac: '02:00:00:00:00:99' }), false);
    assert.equal((await host.fdbList(l1.index)).length, 2);

    const res = await ping(n1, '10.250.0.2');
    assert.equal(res.code, 0, `ping across the VXLAN: ${res.stdout}${res.stderr}`);
    const capturedNeigh = (await host.neighList(l1.index)).find((n) => n.ip === '10.250.0.2');
    assert.deepEqual([capturedNeigh?.mac, capturedNeigh?.state], [l2.mac, 'permanent']);
    for (const s of sides) assert.equal(await s.r.linkDelete('vxhy'), true);
  });

  test('a batch is one exchange; its first failure is thrown naming its place, and the rest are not sent', async () => {
    const pod = await topo.addScratch('pod-batch');
    const path = topo.netnsPath(pod);
    const link = await host.vethCreate({ name: 'lxcbat', peerName: 'eth0', peerNetnsPath: path });
    const [shown] = await ipJson<IpLink[]>(pod, ['link', 'show', 'dev', 'eth0']);
    assert.equal(link.linkIndex, shown?.ifindex, 'vethCreate tells the peer ifindex');
    assert.equal(link.name, 'lxcbat');
    const r = open(pod);
    const i = link.linkIndex as number;
    await assert.rejects(
      r.batch((b) =>
        b
          .addrAdd(i, '10.66.0.1/32')
          .linkSetUp(i)
          .routeReplace({ dst: 'default', gateway: POD_GATEWAY, ifindex: i }) // no route to the gateway, not onlink
          .neighReplace({ ifindex: i, ip: POD_GATEWAY, mac: '02:aa:00:00:00:09' })
          .routeReplace({ dst: '10.66.1.0/24', ifindex: i }),
      ),
      (err: unknown) => {
        assert.ok(isRtnlError(err, 'ENETUNREACH'), String(err));
        assert.match(err.message, /^rtnl RTM_NEWROUTE route default via 169\.254\.1\.1 .*: request 3 of 5 in a batch; the 2 after it were not sent$/);
        return true;
      },
    );
    assert.deepEqual((await r.addrList(i)).map((a) => a.address), ['10.66.0.1'], 'what came before stays');
    assert.equal((await r.linkGet(i))?.up, true);
    assert.deepEqual(await r.neighList(i), [], 'what came after was not sent');
    assert.ok(!(await r.routeList()).some((x) => x.dst === '10.66.1.0/24'));
    // Bad input anywhere: nothing is sent.
    await assert.rejects(r.batch((b) => b.addrAdd(i, '10.66.0.2/32').addrAdd(i, 'nonsense')), (err: unknown) => isRtnlError(err, 'EINVALARG'));
    assert.deepEqual((await r.addrList(i)).map((a) => a.address), ['10.66.0.1']);
    await r.batch(() => {}); // empty: nothing to do
  });

  test('errors: missing or wrong netns path, EEXIST naming the clash, deletes of what is not there, bad input', async () => {
    const missing = `/run/netns/${topo.prefix}no-such-pod`;
    assert.throws(() => Rtnl.open(missing), (err: unknown) => {
      assert.ok(isRtnlError(err, 'ENOENT'));
      assert.ok(err.message.includes(missing), err.message);
      return true;
    });
    assert.throws(() => Rtnl.open('/etc/hostname'), (err: unknown) => isRtnlError(err, 'EINVAL') && /"\/etc\/hostname" is not a network namespace/.test(err.message));
    await assert.rejects(host.vethCreate({ name: 'lxcmiss', peerName: 'eth0', peerNetnsPath: missing }), (err: unknown) => {
      assert.ok(isRtnlError(err, 'ENOENT'));
      assert.match(err.message, /cannot open netns .*no-such-pod/);
      return true;
    });
    assert.equal(await host.linkGet('lxcmiss'), undefined, 'nothing was created');

    const pod = await topo.addScratch('pod-err');
    const path = topo.netnsPath(pod);
    await host.vethCreate({ name: 'lxcerr', peerName: 'eth0', peerNetnsPath: path });
    // The host-side name is taken.
    await assert.rejects(host.vethCreate({ name: 'lxcerr', peerName: 'eth1', peerNetnsPath: path }), (err: unknown) => {
      assert.ok(isRtnlError(err, 'EEXIST'));
      assert.equal(err.errno, 17);
      assert.equal(err.op, 'RTM_NEWLINK');
      assert.equal(
        err.message,
        `rtnl RTM_NEWLINK veth lxcerr (peer eth1 in netns ${path}) in netns ${topo.netnsPath(n1)}: EEXIST File exists: device lxcerr already exists`,
      );
      return true;
    });
    // The peer name is taken in the pod.
    await assert.rejects(host.vethCreate({ name: 'lxcerr2', peerName: 'eth0', peerNetnsPath: path }), (err: unknown) => {
      assert.ok(isRtnlError(err, 'EEXIST'));
      assert.match(err.message, new RegExp(`^rtnl RTM_NEWLINK veth lxcerr2 \\(peer eth0 in netns ${path}\\).*: EEXIST File exists: .*the peer name eth0 is taken in netns ${path}$`));
      return true;
    });
    assert.equal(await host.linkGet('lxcerr2'), undefined, 'no half-made veth left behind');
    // Missing things.
    await assert.rejects(host.linkSetUp('lxcnone'), (err: unknown) => {
      assert.ok(isRtnlError(err, 'ENODEV'));
      assert.match(err.message, /^rtnl RTM_SETLINK link lxcnone up in netns .*: ENODEV No such device/);
      return true;
    });
    assert.equal(await host.linkDelete('lxcnone'), false);
    assert.equal(await host.linkDelete(999_999), false);
    assert.equal(await host.routeDelete({ dst: '10.123.0.0/16' }), false);
    assert.equal(await host.neighDelete({ ifindex: 1, ip: '10.123.0.1' }), false);
    assert.equal(await host.linkDelete('lxcerr'), true, 'and the peer in the pod with it');
    assert.deepEqual((await ipJson<IpLink[]>(pod, ['link', 'show'])).map((l) => l.ifname), ['lo']);
    // Bad input never reaches the kernel.
    await assert.rejects(host.vethCreate({ name: 'lxc-far-too-long-name', peerName: 'eth0' }), (err: unknown) => isRtnlError(err, 'EINVALARG') && /name "lxc-far-too-long-name" is not a valid interface name/.test(err.message));
    await assert.rejects(host.routeReplace({ dst: '10.0.0.1/8', ifindex: 1 }), (err: unknown) => isRtnlError(err, 'EINVALARG') && /host bits/.test(err.message));
  });

  test('requests on one Rtnl run one at a time in call order; close lets the calls made before it finish and refuses later ones', async () => {
    const pod = await topo.addScratch('pod-q');
    const r = Rtnl.open(topo.netnsPath(pod));
    // Alternate set-up/down and reads of lo, all started at once: each read sees the write before it.
    const ops: Array<Promise<unknown>> = [];
    for (let i = 0; i < 40; i++) ops.push(i % 2 === 1 ? r.linkGet('lo') : r.linkSetUp('lo', i % 4 === 0));
    const results = await Promise.all(ops);
    for (let i = 1; i < 40; i += 2) assert.equal((results[i] as LinkInfo).up, (i - 1) % 4 === 0, `read ${i}`);
    // close(): calls made before it complete, then the socket is closed; later calls are ECLOSED.
    const fds = readdirSync('/proc/self/fd').length;
    const running = r.linkList();
    const queued = r.linkGet('lo');
    r.close();
    r.close();
    assert.equal(r.closed, true);
    assert.ok((await running).some((l) => l.name === 'lo'));
    assert.equal((await queued)?.name, 'lo');
    assert.equal(readdirSync('/proc/self/fd').length, fds - 1, 'socket closed once they finished');
    await assert.rejects(r.linkGet('lo'), (err: unknown) => isRtnlError(err, 'ECLOSED') && err.message.includes(topo.netnsPath(pod)));
    assert.equal(r.closed, true);
  });

  test('time per pod: 100 in a row, 30 at once (veth, pod addr/up/2 routes/neigh, host up/route)', async (t: TestContext) => {
    const ways = [
      { way: 'batched', plumb: plumbPod, net: 2 },
      { way: 'one call per op', plumb: plumbPodOneByOne, net: 4 },
    ] as const;
    const mac = (i: number): string => `02:cc:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const lines: string[] = [];
    for (const [w, { way, plumb, net }] of ways.entries()) {
      const seq = await Promise.all(Array.from({ length: 100 }, (_, i) => topo.addScratch(`s${w}p${i}`)));
      const conc = await Promise.all(Array.from({ length: 30 }, (_, i) => topo.addScratch(`c${w}p${i}`)));
      const seqIp = (i: number): string => `10.244.${net}.${i + 10}`;
      const concIp = (i: number): string => `10.244.${net + 1}.${i + 10}`;

      let t0 = performance.now();
      for (const [i, pod] of seq.entries()) await plumb(pod, { name: `lx${w}s${i}`, ip: seqIp(i), hostMac: mac(w * 256 + i) });
      const seqMs = (performance.now() - t0) / seq.length;
      t0 = performance.now();
      await Promise.all(conc.map((pod, i) => plumb(pod, { name: `lx${w}c${i}`, ip: concIp(i), hostMac: mac(w * 256 + 128 + i) })));
      const concWall = performance.now() - t0;

      // Every pod has its route; some answer a ping.
      const routes = new Set((await host.routeList({ protocol: PROTO })).map((r) => r.dst));
      for (let i = 0; i < 100; i++) assert.ok(routes.has(`${seqIp(i)}/32`), `route to pod ${i}`);
      for (let i = 0; i < 30; i++) assert.ok(routes.has(`${concIp(i)}/32`), `route to pod c${i}`);
      for (const ip of [seqIp(0), seqIp(99), concIp(0), concIp(29)]) {
        const res = await ping(n1, ip);
        assert.equal(res.code, 0, `ping ${ip}: ${res.stdout}${res.stderr}`);
      }
      // Teardown: one delete per pod (the peer goes with it).
      t0 = performance.now();
      for (let i = 0; i < 100; i++) assert.equal(await host.linkDelete(`lx${w}s${i}`), true);
      const delMs = (performance.now() - t0) / 100;
      lines.push(`${way}: ${seqMs.toFixed(2)} ms/pod in a row (100), ${(concWall / 30).toFixed(2)} ms/pod 30 at once (${concWall.toFixed(0)} ms wall), linkDelete ${delMs.toFixed(2)} ms`);
    }
    for (const line of lines) t.diagnostic(`rtnl ${line}`);
  });
});

describe('Rtnl over a scripted transport (what the kernel rarely does)', () => {
  test('a dump marked interrupted (NLM_F_DUMP_INTR) is taken again, up to 3 times', async () => {
    let calls = 0;
    const r = new Rtnl({
      transact: async (messages) => {
        calls++;
        assert.equal(messages.length, 1);
        // a reply with no links, interrupted the first two times
        return [{ errno: 0, messages: [], ...(calls < 3 ? { interrupted: true as const } : {}) }];
      },
      close: () => {},
    });
    assert.deepEqual(await r.linkList(), []);
    assert.equal(calls, 3);
    calls = -10; // always interrupted: the last attempt is returned
    assert.deepEqual(await r.linkList(), []);
    assert.equal(calls, -7);
  });

  test('transport failures become RtnlError with the request named; replies that do not match are EBADREPLY', async () => {
    const failing = new Rtnl({
      transact: async () => {
        throw Object.assign(new Error('netlinkTransact: boom'), { code: 'ENAPI', errno: 0, op: 'netlinkTransact' });
      },
      close: () => {},
    }, { netns: '/run/netns/x' });
    await assert.rejects(failing.linkSetUp('eth0'), (err: unknown) => {
      assert.ok(isRtnlError(err, 'ENAPI'));
      assert.equal(err.message, 'rtnl RTM_SETLINK link eth0 up in netns /run/netns/x: netlinkTransact: boom');
      return true;
    });
    const short = new Rtnl({ transact: async () => [], close: () => {} });
    await assert.rejects(short.linkSetUp('eth0'), (err: unknown) => isRtnlError(err, 'EBADREPLY'));
    let closed = 0;
    const c = new Rtnl({ transact: async () => [{ errno: 0, messages: [] }], close: () => void closed++ });
    c.close();
    c.close();
    assert.equal(closed, 1, 'the transport is closed once');
  });
});

