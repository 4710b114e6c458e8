// The agent's endpoint handler: what the CNI plugin's requests do on this
// node. ADD gives a pod an address from the node's pod CIDR, a veth whose pod
// end is created directly inside the pod's namespace, the pod's addressing and
// routes, the datapath programs on the host end and its entry in the
// endpoints map; any failure undoes every step done so far. DEL undoes an
// attachment and succeeds when there is nothing to undo. CHECK says what is
// not as ADD left it. GC removes what the runtime no longer knows.
// At start, reconcile() adopts the pods that are still there (no blip: their
// programs are swapped atomically, nothing else is touched) and removes what
// a crash left half-made.
import { createHash } from 'node:crypto';
import { existsSync, statfsSync } from 'node:fs';
import type { Logger } from 'pino';
import { CNI_ERR, CniError, toCniError } from '../cni/errors.ts';
import type { CniHandler, CniRequest, CniResult, GcRequest, NetConf } from '../cni/types.ts';
import { type PodIpam, isIpamError } from './ipam.ts';
import type { EndpointDatapath, PodNetwork } from './ports.ts';
import { type EndpointRecord, type EndpointStore, type PodRef, endpointId } from './store.ts';

/** The pods' default gateway: link-local, answered by a permanent neighbour
 *  entry for the host-side veth (no ARP, no address on the host side). */
export const POD_GATEWAY = '169.254.1.1';

const NSFS_MAGIC = 0x6e736673;
const IFNAME_RE = /^[^\s/:]{1,15}$/;

/** Host-side veth name: `lxc` + 11 hex digits of the attachment's hash. */
export function hostIfnameFor(containerId: string, ifname: string): string {
  return `lxc${createHash('sha256').update(`${containerId}/${ifname}`).digest('hex').slice(0, 11)}`;
}

/** Where the agent can open the runtime's CNI_NETNS. The runtime may live in
 *  another mount namespace (containerd's netns mounts are made there): the
 *  plugin's own view, /proc/<plugin pid>/root/<path>, is tried first. */
export function resolveNetns(netns: string, pid: number | undefined): string {
  if (pid !== undefined && pid > 0) {
    const viaPlugin = `/proc/${pid}/root${netns.startsWith('/') ? '' : '/'}${netns}`;
    if (existsSync(viaPlugin)) return viaPlugin;
  }
  return netns;
}

function netnsProblem(path: string): string | undefined {
  try {
    if (statfsSync(path).type !== NSFS_MAGIC) return 'is not a network namespace';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be opened: ${(err as Error).message}`;
  }
  return undefined;
}

export interface EndpointManagerOptions {
  ipam: PodIpam;
  store: EndpointStore;
  net: PodNetwork;
  datapath: EndpointDatapath;
  mtu: () => number;
  log: Logger;
  /** Why ADD cannot be served now (no pod CIDR yet, ...), or undefined when it can. */
  notReady: () => string | undefined;
  /** Endpoint count changed (metrics). */
  onChange?: (endpoints: number) => void;
  /** Test hook: called between ADD's steps (the fault-injection tests stop the agent there). */
  afterStep?: (step: string) => Promise<void>;
  /** NetworkPolicy, when enforced: a new pod is closed before its veth
   *  exists, and ADD returns once policy judges it (or after a bound). */
  policy?: EndpointPolicyHooks;
}

export interface EndpointPolicyHooks {
  /** Deny both directions of `ip` until a compile judges it. */
  close(ip: string): void;
  /** ADD failed or the pod went before any compile: drop what close wrote. */
  release(ip: string): void;
  /** Wait until the pod at `ip` is judged by its identity; false: not within the bound. */
  enforced(ip: string): Promise<boolean>;
}

export interface EndpointView extends EndpointRecord {
  datapath: { attached: boolean; mapped: boolean };
  /** The Pod object's labels, when the agent follows the API server. */
  labels?: Record<string, string>;
}

export class EndpointManager implements CniHandler {
  readonly #o: EndpointManagerOptions;
  readonly #locks = new Map<string, Promise<unknown>>();
  #reconciled = false;

  constructor(opts: EndpointManagerOptions) {
    this.#o = opts;
  }

  /** One request per attachment at a time; different pods go in parallel. */
  async #locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(id) === tail) this.#locks.delete(id);
    }
  }

  #notReady(): string | undefined {
    return this.#reconciled ? this.#o.notReady() : 'it is still reconciling the endpoints it had';
  }

  /** The records alone (no kernel queries): for counts and names. */
  records(): EndpointRecord[] {
    return this.#o.store.list();
  }

  /** Records with their datapath state (queries the kernel per endpoint). */
  list(): EndpointView[] {
    const dp = this.#o.datapath;
    return this.#o.store.list().map((r) => ({ ...r, datapath: { attached: dp.attached(r.hostIfindex), mapped: dp.lookup(r.ip) === r.hostIfindex } }));
  }

  async add(req: CniRequest): Promise<CniResult> {
    const why = this.#notReady();
    if (why) throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `the agent cannot add pods yet: ${why}`);
    if (!IFNAME_RE.test(req.ifname)) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(req.ifname)} is not a valid interface name (1-15 characters, no '/', ':' or spaces)`);
    const id = endpointId(req.containerId, req.ifname);
    return this.#locked(id, async () => {
      const { store, ipam, net, datapath: dp, log } = this.#o;
      const existing = store.get(req.containerId, req.ifname);
      if (existing) {
        throw new CniError(CNI_ERR.ALREADY_ATTACHED, `container ${req.containerId} interface ${req.ifname} is already attached (address ${existing.ip}, host veth ${existing.hostIfname}); DEL it first`);
      }
      const netnsPath = resolveNetns(req.netns, req.pid);
      const bad = netnsProblem(netnsPath);
      if (bad) throw new CniError(CNI_ERR.BAD_NETNS, `CNI_NETNS ${JSON.stringify(req.netns)} ${bad}`);
      let ip: string;
      try {
        ip = ipam.allocate(id);
      } catch (err) {
        if (isIpamError(err, 'EEXHAUSTED')) throw new CniError(CNI_ERR.NO_FREE_ADDRESS, err.message, `pod CIDR ${ipam.cidrs.join(', ')}`);
        if (isIpamError(err, 'ENOCIDR')) throw new CniError(CNI_ERR.TRY_AGAIN_LATER, err.message);
        throw err;
      }
      const hostIfname = hostIfnameFor(req.containerId, req.ifname);
      const mtu = this.#o.mtu();
      const undo: { step: string; run: () => Promise<unknown> | unknown }[] = [];
      const policy = this.#o.policy;
      let step = 'close the pod to policy';
      try {
        if (policy) {
          policy.close(ip);
          undo.push({ step: 'release the closed policy entry', run: () => policy.release(ip) });
        }
        step = 'create veth';
        const v = await net.createVeth({ hostIfname, podIfname: req.ifname, netnsPath, mtu });
        undo.push({ step: 'delete veth', run: () => net.deleteVeth(hostIfname) });
        await this.#o.afterStep?.('veth');
        step = 'configure the pod side';
        await net.configurePod({ netnsPath, ifname: req.ifname, ...(v.podIfindex === undefined ? {} : { podIfindex: v.podIfindex }), ip, gateway: POD_GATEWAY, gatewayMac: v.hostMac });
        step = 'configure the host side';
        await net.configureHost({ hostIfname, hostIfindex: v.hostIfindex, ip });
        step = 'attach the datapath';
        const ifindex = dp.attach(hostIfname);
        step = 'write the endpoints map';
        dp.upsert(ip, ifindex);
        undo.push({ step: 'delete the endpoints map entry', run: () => dp.remove(ip) });
        await this.#o.afterStep?.('datapath');
        step = 'write the endpoint record';
        const record: EndpointRecord = {
          containerId: req.containerId, ifname: req.ifname, netns: req.netns, ip, hostIfname, hostIfindex: ifindex,
          hostMac: v.hostMac, podMac: v.podMac, mtu, pod: podRefOf(req.args), createdAt: new Date().toISOString(),
        };
        store.put(record);
        this.#o.onChange?.(store.size);
        const pod = record.pod ? `${record.pod.namespace}/${record.pod.name}` : undefined;
        log.info({ endpoint: id, pod, ip, device: hostIfname, ifindex }, 'endpoint added');
        // The runtime starts the pod's containers when ADD returns: policy first.
        if (policy && !(await policy.enforced(ip))) {
          log.warn({ endpoint: id, pod, ip }, 'NetworkPolicy has not judged the new pod yet: its traffic is denied both ways until it does');
        }
        return resultOf(record, req.netns);
      } catch (err) {
        for (const u of undo.reverse()) {
          try {
            await u.run();
          } catch (e) {
            log.warn({ endpoint: id, step: u.step, err: (e as Error).message }, 'undo step failed');
          }
        }
        ipam.release(ip);
        const cni = toCniError(err);
        if (cni.code === CNI_ERR.DATAPATH || cni.code === CNI_ERR.IO) {
          throw new CniError(CNI_ERR.DATAPATH, `ADD of container ${req.containerId} interface ${req.ifname} failed to ${step}: ${(err as Error).message}`, cni.details || `step: ${step}`, { cause: err });
        }
        throw cni;
      }
    });
  }

  async del(req: CniRequest): Promise<void> {
    const id = endpointId(req.containerId, req.ifname);
    await this.#locked(id, () => this.#remove(req.containerId, req.ifname, 'DEL'));
  }

  async #remove(containerId: string, ifname: string, why: string): Promise<void> {
    const { store, ipam, net, datapath: dp, log } = this.#o;
    const r = store.get(containerId, ifname);
    const hostIfname = r?.hostIfname ?? hostIfnameFor(containerId, ifname);
    if (r && dp.lookup(r.ip) === r.hostIfindex) dp.remove(r.ip);
    // The veth may be gone already (its namespace was deleted): fine.
    const deleted = await net.deleteVeth(hostIfname);
    if (!r) {
      if (deleted) log.info({ endpoint: endpointId(containerId, ifname), device: hostIfname, reason: why }, 'orphaned veth removed');
      return;
    }
    ipam.release(r.ip);
    store.remove(containerId, ifname);
    this.#o.policy?.release(r.ip);
    this.#o.onChange?.(store.size);
    log.info({ endpoint: endpointId(containerId, ifname), ip: r.ip, device: hostIfname, reason: why }, 'endpoint removed');
  }

  async check(req: CniRequest): Promise<void> {
    const r = this.#o.store.get(req.containerId, req.ifname);
    if (!r) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `no attachment for container ${req.containerId} interface ${req.ifname}`);
    const problems = await this.#differences(r, resolveNetns(req.netns, req.pid));
    const prevIps = (req.config.prevResult?.ips ?? []).map((x) => x.address.split('/')[0]);
    if (req.config.prevResult && !prevIps.includes(r.ip)) problems.push(`prevResult has addresses ${JSON.stringify(prevIps)}, the pod has ${r.ip}`);
    if (problems.length > 0) {
      throw new CniError(CNI_ERR.CHECK_MISMATCH, `attachment of container ${req.containerId} interface ${req.ifname} differs from what ADD set up`, problems.join('; '));
    }
  }

  async #differences(r: EndpointRecord, netnsPath: string): Promise<string[]> {
    const { net, datapath: dp } = this.#o;
    const out: string[] = [];
    const host = await net.inspectHost(r.hostIfname, r.ip);
    if (!host) {
      out.push(`host veth ${r.hostIfname} does not exist`);
    } else {
      if (host.ifindex !== r.hostIfindex) out.push(`host veth ${r.hostIfname} has ifindex ${host.ifindex}, not ${r.hostIfindex}`);
      if (!host.up) out.push(`host veth ${r.hostIfname} is down`);
      if (!host.routed) out.push(`route ${r.ip}/32 dev ${r.hostIfname} is missing`);
      if (!dp.attached(host.ifindex)) out.push(`the datapath programs are not attached to ${r.hostIfname}`);
    }
    const mapped = dp.lookup(r.ip);
    if (mapped !== r.hostIfindex) out.push(`endpoints map has ${mapped === undefined ? 'no entry' : `ifindex ${mapped}`} for ${r.ip}, not ${r.hostIfindex}`);
    const bad = netnsProblem(netnsPath);
    if (bad) {
      out.push(`network namespace ${r.netns} ${bad}`);
      return out;
    }
    const pod = await net.inspectPod(netnsPath, r.ifname);
    if (!pod) {
      out.push(`interface ${r.ifname} does not exist in ${r.netns}`);
      return out;
    }
    if (!pod.up) out.push(`${r.ifname} is down`);
    if (pod.mac !== r.podMac) out.push(`${r.ifname} has MAC ${pod.mac}, not ${r.podMac}`);
    if (!pod.addresses.includes(`${r.ip}/32`)) out.push(`${r.ifname} has addresses ${JSON.stringify(pod.addresses)}, not ${r.ip}/32`);
    if (pod.defaultGateway !== POD_GATEWAY) out.push(`default route is ${pod.defaultGateway ? `via ${pod.defaultGateway}` : 'missing'}, not via ${POD_GATEWAY}`);
    if (!pod.gatewayNeighbour) out.push(`no neighbour entry for the gateway ${POD_GATEWAY}`);
    else if (pod.gatewayNeighbour.mac !== r.hostMac || !pod.gatewayNeighbour.permanent) out.push(`gateway neighbour is ${pod.gatewayNeighbour.mac}${pod.gatewayNeighbour.permanent ? '' : ' (not permanent)'}, not ${r.hostMac} permanent`);
    return out;
  }

  async gc(req: GcRequest): Promise<void> {
    const valid = new Set(req.validAttachments.map((a) => endpointId(a.containerId, a.ifname)));
    for (const r of this.#o.store.list()) {
      const id = endpointId(r.containerId, r.ifname);
      if (!valid.has(id)) await this.#locked(id, () => this.#remove(r.containerId, r.ifname, 'GC'));
    }
    await this.#removeOrphanVeths('GC');
  }

  async status(_config: NetConf): Promise<void> {
    const why = this.#notReady();
    if (why) throw new CniError(CNI_ERR.NOT_AVAILABLE, `the agent cannot add pods: ${why}`);
  }

  /** Host-side veths without a record: left by an ADD a crash interrupted. */
  async #removeOrphanVeths(why: string): Promise<number> {
    const known = new Set(this.#o.store.list().map((r) => r.hostIfname));
    // Names of ADDs in flight are not orphans.
    for (const id of this.#locks.keys()) {
      const [c, i] = [id.slice(0, id.lastIndexOf(':')), id.slice(id.lastIndexOf(':') + 1)];
      known.add(hostIfnameFor(c, i));
    }
    let n = 0;
    for (const v of await this.#o.net.listHostVeths()) {
      if (known.has(v.name)) continue;
      if (await this.#o.net.deleteVeth(v.name)) {
        n++;
        this.#o.log.info({ device: v.name, reason: why }, 'orphaned veth removed');
      }
    }
    return n;
  }

  /** At start: adopt live pods, drop records of pods that are gone, remove
   *  half-made veths, and make the endpoints map match. */
  async reconcile(): Promise<{ adopted: number; gone: number; orphans: number }> {
    const { store, ipam, net, datapath: dp, log } = this.#o;
    for (const p of store.load()) log.warn({ file: p.file, reason: p.reason }, 'endpoint record unreadable; removed');
    let adopted = 0;
    let gone = 0;
    for (const r of store.list()) {
      const id = endpointId(r.containerId, r.ifname);
      const host = await net.inspectHost(r.hostIfname, r.ip);
      if (!host) {
        store.remove(r.containerId, r.ifname);
        gone++;
        log.info({ endpoint: id, ip: r.ip, device: r.hostIfname }, 'endpoint gone while the agent was down; record removed');
        continue;
      }
      try {
        ipam.claim(r.ip, id);
      } catch (err) {
        log.error({ endpoint: id, ip: r.ip, err: (err as Error).message }, 'endpoint record conflicts with another; removing it');
        await net.deleteVeth(r.hostIfname);
        store.remove(r.containerId, r.ifname);
        gone++;
        continue;
      }
      try {
        if (!host.routed || !host.up) await net.configureHost({ hostIfname: r.hostIfname, hostIfindex: host.ifindex, ip: r.ip });
        const ifindex = dp.attach(r.hostIfname);
        if (ifindex !== r.hostIfindex) store.put({ ...r, hostIfindex: ifindex });
        adopted++;
      } catch (err) {
        log.warn({ endpoint: id, device: r.hostIfname, err: (err as Error).message }, 'endpoint not adopted; it is retried at the next resync');
      }
    }
    const orphans = await this.#removeOrphanVeths('start');
    await dp.sync(store.list().map((r) => ({ ip: r.ip, ifindex: r.hostIfindex })));
    this.#o.onChange?.(store.size);
    this.#reconciled = true;
    return { adopted, gone, orphans };
  }

  /** Periodic repair: the endpoints map equals the records. */
  async resync(): Promise<void> {
    await this.#o.datapath.sync(this.#o.store.list().map((r) => ({ ip: r.ip, ifindex: r.hostIfindex })));
  }
}

function podRefOf(args: Record<string, string>): PodRef | undefined {
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (!namespace || !name) return undefined;
  return { namespace, name, ...(args.K8S_POD_UID ? { uid: args.K8S_POD_UID } : {}) };
}

function resultOf(r: EndpointRecord, sandbox: string): CniResult {
  return {
    interfaces: [
      { name: r.hostIfname, mac: r.hostMac, mtu: r.mtu },
      { name: r.ifname, mac: r.podMac, mtu: r.mtu, sandbox },
    ],
    ips: [{ address: `${r.ip}/32`, gateway: POD_GATEWAY, interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: POD_GATEWAY }],
  };
}
