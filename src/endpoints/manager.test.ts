import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { CNI_ERR, isCniError } from '../cni/errors.ts';
import type { CniRequest } from '../cni/types.ts';
import { PodIpam } from './ipam.ts';
import { type EndpointPolicyHooks, EndpointManager, POD_GATEWAY, hostIfnameFor } from './manager.ts';
import type { EndpointDatapath, HostSide, PodNetwork, PodSide, VethCreated } from './ports.ts';
import { EndpointStore } from './store.ts';

// The real netns check stats the path: the test process's own namespace is one.
const NETNS = '/proc/self/ns/net';

class FakeNet implements PodNetwork {
  hosts = new Map<string, HostSide & { ip?: string }>();
  pods = new Map<string, PodSide>();
  next = 100;
  failOn: string | undefined;
  calls: string[] = [];

  #fail(step: string): void {
    this.calls.push(step);
    if (this.failOn === step) throw Object.assign(new Error(`${step}: EPERM`), { code: 'EPERM', errno: 1, op: step });
  }

  async createVeth(p: { hostIfname: string; podIfname: string }): Promise<VethCreated> {
    this.#fail('createVeth');
    if (this.hosts.has(p.hostIfname)) throw Object.assign(new Error('EEXIST'), { code: 'EEXIST', errno: 17, op: 'RTM_NEWLINK' });
    const ifindex = this.next++;
    const hostMac = `02:00:00:00:00:${(ifindex % 256).toString(16).padStart(2, '0')}`;
    this.hosts.set(p.hostIfname, { ifindex, mac: hostMac, up: false, routed: false });
    this.pods.set(p.hostIfname, { ifindex: 2, mac: '02:aa:00:00:00:01', up: false, mtu: 1500, addresses: [] });
    return { hostIfindex: ifindex, hostMac, podMac: '02:aa:00:00:00:01' };
  }

  async configurePod(p: { ifname: string; ip: string; gateway: string; gatewayMac: string; netnsPath: string }): Promise<void> {
    this.#fail('configurePod');
    const key = [...this.hosts.keys()].find((k) => this.pods.get(k)?.addresses.length === 0);
    const pod = this.pods.get(key ?? '');
    if (pod) Object.assign(pod, { up: true, addresses: [`${p.ip}/32`], defaultGateway: p.gateway, gatewayNeighbour: { mac: p.gatewayMac, permanent: true } });
  }

  async configureHost(p: { hostIfname: string; ip: string }): Promise<void> {
    this.#fail('configureHost');
    const h = this.hosts.get(p.hostIfname);
    if (h) Object.assign(h, { up: true, routed: true, ip: p.ip });
  }

  async deleteVeth(hostIfname: string): Promise<boolean> {
    this.calls.push('deleteVeth');
    this.pods.delete(hostIfname);
    return this.hosts.delete(hostIfname);
  }

  async inspectHost(hostIfname: string): Promise<HostSide | undefined> {
    return this.hosts.get(hostIfname);
  }

  async inspectPod(): Promise<PodSide | undefined> {
    return [...this.pods.values()][0];
  }

  async listHostVeths(): Promise<{ name: string; ifindex: number }[]> {
    return [...this.hosts.entries()].map(([name, h]) => ({ name, ifindex: h.ifindex }));
  }
}

class FakeDatapath implements EndpointDatapath {
  map = new Map<string, number>();
  attachedTo = new Set<number>();
  net: FakeNet;
  failAttach = false;
  constructor(net: FakeNet) {
    this.net = net;
  }
  attach(hostIfname: string): number {
    if (this.failAttach) throw Object.assign(new Error('tc attach: ENOMEM'), { code: 'ENOMEM', errno: 12, op: 'bpf_tc_attach' });
    const h = this.net.hosts.get(hostIfname);
    if (!h) throw Object.assign(new Error('ENODEV'), { code: 'ENODEV', errno: 19, op: 'if_nametoindex' });
    this.attachedTo.add(h.ifindex);
    return h.ifindex;
  }
  attached(ifindex: number): boolean {
    return this.attachedTo.has(ifindex);
  }
  upsert(ip: string, ifindex: number): void {
    this.map.set(ip, ifindex);
  }
  remove(ip: string): void {
    this.map.delete(ip);
  }
  lookup(ip: string): number | undefined {
    return this.map.get(ip);
  }
  async sync(entries: readonly { ip: string; ifindex: number }[]): Promise<void> {
    this.map = new Map(entries.map((e) => [e.ip, e.ifindex]));
  }
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check());
}

function req(containerId: string, extra: Partial<CniRequest> = {}): CniRequest {
  return {
    containerId, netns: NETNS, ifname: 'eth0', path: [], args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: containerId },
    config: { cniVersion: '1.1.0', name: 'hypha', type: 'hypha' }, ...extra,
  };
}

describe('EndpointManager', () => {
  let dir: string;
  let net: FakeNet;
  let dp: FakeDatapath;
  let ready: string | undefined;
  const make = async (cidr = '10.244.1.0/29', reconcile = true, policy?: EndpointPolicyHooks): Promise<EndpointManager> => {
    const m = new EndpointManager({
      ipam: new PodIpam([cidr]), store: new EndpointStore(dir), net, datapath: dp, mtu: () => 1500,
      log: pino({ level: 'silent' }), notReady: () => ready, ...(policy ? { policy } : {}),
    });
    if (reconcile) await m.reconcile();
    return m;
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hypha-ep-'));
    net = new FakeNet();
    dp = new FakeDatapath(net);
    ready = undefined;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('ADD: an address, a veth, the pod and host sides, the datapath, a record; the result says so', async () => {
    const m = await make(undefined, false);
    await assert.rejects(m.add(req('c1')), (e: unknown) => isCniError(e, CNI_ERR.TRY_AGAIN_LATER) && /still reconciling/.test(e.message));
    await m.reconcile();
    const r = await m.add(req('c1'));
    const host = hostIfnameFor('c1', 'eth0');
    assert.deepEqual(r.ips, [{ address: '10.244.1.1/32', gateway: POD_GATEWAY, interface: 1 }]);
    assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: POD_GATEWAY }]);
    assert.equal(r.interfaces[0]?.name, host);
    assert.equal(r.interfaces[1]?.sandbox, NETNS);
    assert.equal(dp.lookup('10.244.1.1'), net.hosts.get(host)?.ifindex);
    assert.deepEqual(m.list().map((e) => [e.ip, e.pod?.name, e.datapath]), [['10.244.1.1', 'c1', { attached: true, mapped: true }]]);
    await m.check(req('c1'));
  });

  test('a failing step undoes every earlier one and frees the address', async () => {
    const m = await make('10.244.1.0/30'); // two addresses
    for (const step of ['configurePod', 'configureHost']) {
      net.failOn = step;
      await assert.rejects(m.add(req('c1')), (e: unknown) => isCniError(e, CNI_ERR.DATAPATH) && /failed to configure the (pod|host) side/.test(e.message));
      assert.equal(net.hosts.size, 0, `no veth left after ${step} failed`);
      assert.equal(m.list().length, 0);
    }
    net.failOn = undefined;
    dp.failAttach = true;
    await assert.rejects(m.add(req('c1')), (e: unknown) => isCniError(e, CNI_ERR.DATAPATH) && /failed to attach the datapath/.test(e.message));
    assert.equal(net.hosts.size, 0);
    dp.failAttach = false;
    // Three failed ADDs held no address: both are free for the next two.
    await m.add(req('c2'));
    await m.add(req('c3'));
  });

  test('NetworkPolicy: ADD closes the pod before its veth exists and returns after policy judged it; a failed ADD and a DEL release it', async () => {
    const calls: string[] = [];
    let judge: ((ok: boolean) => void) | undefined;
    const policy: EndpointPolicyHooks = {
      close: (ip) => calls.push(`close ${ip} veths=${net.hosts.size}`),
      release: (ip) => calls.push(`release ${ip}`),
      enforced: (ip) => new Promise((resolve) => {
        calls.push(`wait ${ip} records=${m.records().length}`);
        judge = resolve;
      }),
    };
    const m = await make('10.244.1.0/30', true, policy);
    let returned = false;
    const add = m.add(req('c1')).then((r) => (returned = true, r));
    await until(() => judge !== undefined);
    assert.equal(returned, false, 'ADD waits for policy');
    assert.deepEqual(calls, ['close 10.244.1.1 veths=0', 'wait 10.244.1.1 records=1']);
    judge!(true);
    assert.equal((await add).ips[0]?.address, '10.244.1.1/32');
    // Not judged within the bound: ADD still succeeds (the pod stays closed).
    judge = undefined;
    const add2 = m.add(req('c2'));
    await until(() => judge !== undefined);
    judge!(false);
    await add2;
    calls.length = 0;
    await m.del(req('c2'));
    assert.deepEqual(calls, ['release 10.244.1.2']);
    calls.length = 0;
    dp.failAttach = true;
    await assert.rejects(m.add(req('c3')), (e: unknown) => isCniError(e, CNI_ERR.DATAPATH));
    assert.deepEqual(calls, ['close 10.244.1.2 veths=1', 'release 10.244.1.2'], 'c1\'s veth only');
    assert.equal(net.hosts.size, 1);
  });

  test('the same container added twice: 102, and the first attachment is left intact', async () => {
    const m = await make();
    await m.add(req('c1'));
    await assert.rejects(m.add(req('c1')), (e: unknown) => isCniError(e, CNI_ERR.ALREADY_ATTACHED) && /container c1 interface eth0 is already attached \(address 10\.244\.1\.1/.test(e.message));
    await m.check(req('c1'));
    assert.equal(m.list().length, 1);
  });

  test('exhausted pod CIDR: 100 naming it; nothing left behind', async () => {
    const m = await make('10.244.1.0/30');
    await m.add(req('a'));
    await m.add(req('b'));
    await assert.rejects(m.add(req('c')), (e: unknown) => isCniError(e, CNI_ERR.NO_FREE_ADDRESS) && /10\.244\.1\.0\/30/.test(e.message));
    assert.equal(net.hosts.size, 2);
  });

  test('a missing netns: 101 naming the path; not ready: 11', async () => {
    const m = await make();
    await assert.rejects(m.add(req('c1', { netns: '/run/netns/does-not-exist' })), (e: unknown) => isCniError(e, CNI_ERR.BAD_NETNS) && /"\/run\/netns\/does-not-exist" does not exist/.test(e.message));
    await assert.rejects(m.add(req('c1', { netns: '/tmp' })), (e: unknown) => isCniError(e, CNI_ERR.BAD_NETNS) && /is not a network namespace/.test(e.message));
    ready = 'no pod CIDR yet';
    await assert.rejects(m.add(req('c1')), (e: unknown) => isCniError(e, CNI_ERR.TRY_AGAIN_LATER) && /no pod CIDR yet/.test(e.message));
    await assert.rejects(m.status({ cniVersion: '1.1.0', name: 'hypha', type: 'hypha' }), (e: unknown) => isCniError(e, CNI_ERR.NOT_AVAILABLE));
    assert.equal(net.calls.length, 0, 'nothing was created');
  });

  test('DEL undoes everything and succeeds again when there is nothing to delete', async () => {
    const m = await make();
    await m.add(req('c1'));
    await m.del(req('c1'));
    assert.equal(net.hosts.size, 0);
    assert.equal(dp.map.size, 0);
    assert.equal(m.list().length, 0);
    await m.del(req('c1'));
    await m.del(req('never-added', { netns: '' }));
  });

  test('CHECK names every difference', async () => {
    const m = await make();
    await m.add(req('c1'));
    const host = net.hosts.get(hostIfnameFor('c1', 'eth0'))!;
    host.up = false;
    dp.map.delete('10.244.1.1');
    await assert.rejects(m.check(req('c1', { config: { cniVersion: '1.1.0', name: 'hypha', type: 'hypha', prevResult: { interfaces: [], ips: [{ address: '10.244.1.9/32' }], routes: [] } } })),
      (e: unknown) => isCniError(e, CNI_ERR.CHECK_MISMATCH) && /is down/.test(e.details) && /endpoints map has no entry for 10\.244\.1\.1/.test(e.details) && /prevResult has addresses \["10\.244\.1\.9"\]/.test(e.details));
    await assert.rejects(m.check(req('other')), (e: unknown) => isCniError(e, CNI_ERR.UNKNOWN_CONTAINER));
  });

  test('GC removes every attachment the runtime does not list, and orphaned veths', async () => {
    const m = await make();
    await m.add(req('keep'));
    await m.add(req('drop'));
    net.hosts.set('lxcdeadbeef000', { ifindex: 999, mac: '02:00:00:00:09:99', up: true, routed: false });
    await m.gc({ config: { cniVersion: '1.1.0', name: 'hypha', type: 'hypha' }, validAttachments: [{ containerId: 'keep', ifname: 'eth0' }] });
    assert.deepEqual(m.list().map((e) => e.containerId), ['keep']);
    assert.deepEqual([...net.hosts.keys()], [hostIfnameFor('keep', 'eth0')]);
  });

  test('restart: live pods adopted with their addresses, gone ones dropped, half-made veths removed', async () => {
    const m1 = await make();
    await m1.add(req('live'));
    await m1.add(req('gone'));
    net.hosts.delete(hostIfnameFor('gone', 'eth0')); // its namespace was deleted meanwhile
    net.hosts.set(hostIfnameFor('half', 'eth0'), { ifindex: 555, mac: '02:00:00:00:05:55', up: false, routed: false });
    const m2 = await make(undefined, false);
    assert.deepEqual(await m2.reconcile(), { adopted: 1, gone: 1, orphans: 1 });
    assert.deepEqual(m2.list().map((e) => [e.containerId, e.ip]), [['live', '10.244.1.1']]);
    assert.deepEqual([...dp.map.keys()], ['10.244.1.1']);
    // The live pod's address is never handed out again; the gone one's is free.
    const r = await m2.add(req('new'));
    assert.equal(r.ips[0]?.address, '10.244.1.2/32');
  });

  test('30 concurrent ADDs get 30 distinct addresses; DEL of all leaves nothing', async () => {
    const m = await make('10.244.1.0/26');
    const ids = Array.from({ length: 30 }, (_, i) => `c${i}`);
    const results = await Promise.all(ids.map((id) => m.add(req(id))));
    assert.equal(new Set(results.map((r) => r.ips[0]?.address)).size, 30);
    await Promise.all(ids.map((id) => m.del(req(id))));
    assert.equal(net.hosts.size, 0);
    assert.equal(dp.map.size, 0);
    assert.equal(m.list().length, 0);
  });
});
