// Pods on this node: the endpoint manager (src/endpoints) behind the CNI
// socket (src/cni), wired to this node's datapath. At start the endpoints it
// had are reconciled (live pods adopted, leftovers removed) and the DELs the
// plugin queued while the agent was down are finished. ADD is answered "try
// again later" until the node has a pod CIDR; the conflist that makes the
// runtime call Hypha at all is written once the whole agent is ready.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Gauge } from 'prom-client';
import { type CniServer, startCniServer } from '../cni/server.ts';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CONFLIST_NAME, buildConflist, findBuiltShim, installCni, writeFileAtomic } from '../cni/install.ts';
import type { Devices } from '../datapath/devices.ts';
import type { EndpointsMap } from '../datapath/endpoints-reconciler.ts';
import type { Rtnl } from '../datapath/rtnl.ts';
import { PodIpam } from '../endpoints/ipam.ts';
import { type EndpointPolicyHooks, EndpointManager, type EndpointView } from '../endpoints/manager.ts';
import { RtnlPodNetwork } from '../endpoints/pod-network.ts';
import { EndpointStore } from '../endpoints/store.ts';
import type { CniConfig } from './config.ts';

export interface PodsOptions {
  cfg: CniConfig;
  devices: Devices;
  endpoints: EndpointsMap;
  rtnl: Rtnl;
  mtu: () => number;
  log: Logger;
  registry: Registry;
  /** Test hook between ADD's steps (HYPHA_TEST_ADD_PAUSE_FILE). */
  afterStep?: (step: string) => Promise<void>;
  /** An endpoint was added or removed (identities follow the endpoints). */
  onEndpointsChange?: () => void;
  /** NetworkPolicy's side of ADD and DEL (EndpointManager's policy hooks). */
  policy?: EndpointPolicyHooks;
}

export interface PodsStatus {
  socket: string;
  ready: boolean;
  /** Why ADD is refused, when it is. */
  notReady: string | null;
  podCIDRs: string[];
  addresses: { used: number; capacity: number };
  endpoints: number;
  conflist: string | null;
}

export class Pods {
  readonly ipam = new PodIpam();
  readonly manager: EndpointManager;
  readonly #o: PodsOptions;
  readonly #net: RtnlPodNetwork;
  #server: CniServer | undefined;
  #cidrProblem = 'no pod CIDR yet';
  #conflist: string | null = null;
  #installing: Promise<void> | undefined;

  constructor(opts: PodsOptions) {
    this.#o = opts;
    const used = new Gauge({ name: 'hypha_ipam_addresses', help: 'Pod addresses of this node, used and capacity', labelNames: ['state'], registers: [opts.registry] });
    const eps = new Gauge({ name: 'hypha_endpoints', help: 'Pod endpoints on this node', registers: [opts.registry] });
    this.#net = new RtnlPodNetwork(opts.rtnl);
    this.manager = new EndpointManager({
      ipam: this.ipam,
      store: new EndpointStore(opts.cfg.stateDir),
      net: this.#net,
      datapath: {
        attach: (n) => opts.devices.attachPod(n),
        attached: (i) => opts.devices.podAttached(i),
        upsert: (ip, i) => opts.endpoints.upsert(ip, i),
        remove: (ip) => opts.endpoints.remove(ip),
        lookup: (ip) => opts.endpoints.lookup(ip),
        sync: async (e) => void (await opts.endpoints.sync(e)),
      },
      mtu: opts.mtu,
      log: opts.log,
      notReady: () => this.notReady(),
      onChange: (n) => {
        eps.set(n);
        used.set({ state: 'used' }, this.ipam.used);
        used.set({ state: 'capacity' }, this.ipam.capacity);
        opts.onEndpointsChange?.();
      },
      ...(opts.afterStep ? { afterStep: opts.afterStep } : {}),
      ...(opts.policy ? { policy: opts.policy } : {}),
    });
  }

  /** Why ADD cannot be served, or undefined. */
  notReady(): string | undefined {
    return this.ipam.cidrs.length === 0 ? this.#cidrProblem : undefined;
  }

  /** The node's pod CIDRs now. None (not given yet, or a claim the operator
   *  refused): new pods wait (11); the pods that exist keep their addresses. */
  setPodCidrs(cidrs: string[], problems: string[]): void {
    const before = this.ipam.cidrs.join(',');
    this.#cidrProblem = problems[0] ?? 'no pod CIDR yet';
    try {
      this.ipam.setCidrs(cidrs);
    } catch (err) {
      this.ipam.setCidrs([]);
      this.#cidrProblem = (err as Error).message;
    }
    if (this.ipam.cidrs.join(',') !== before) {
      if (this.ipam.cidrs.length > 0) this.#o.log.info({ podCIDRs: this.ipam.cidrs, capacity: this.ipam.capacity }, 'pod CIDR set');
      else this.#o.log.warn({ reason: this.#cidrProblem }, 'no pod CIDR: new pods wait');
    }
  }

  async start(): Promise<void> {
    const { cfg, log } = this.#o;
    const r = await this.manager.reconcile();
    log.info({ ...r }, 'endpoints reconciled');
    this.#server = await startCniServer({ socketPath: cfg.socket, handler: this.manager, log, metrics: this.#o.registry, delQueueDir: cfg.delQueueDir });
    const q = await this.#server.replayDelQueue();
    if (q.done + q.failed > 0) log.info({ ...q }, 'queued DELs finished');
  }

  /** Write the conflist (and install the plugin binary): the runtime starts
   *  sending pods to Hypha. Idempotent. */
  /** Concurrent callers (the agent's readiness checks race) share one
   *  install: two would write the same temporary files, and the second
   *  rename would find its file gone. */
  install(): Promise<void> {
    if (!this.#installing) {
      this.#installing = this.#install().finally(() => {
        this.#installing = undefined;
      });
    }
    return this.#installing;
  }

  async #install(): Promise<void> {
    const { cfg, log } = this.#o;
    if (this.#conflist) return;
    const conf = { agentSocket: cfg.socket, delQueueDir: cfg.delQueueDir };
    if (cfg.binDir === '') {
      // The binary is installed by someone else (an image's init step).
      const conflist = path.join(cfg.confDir, CONFLIST_NAME);
      await mkdir(cfg.confDir, { recursive: true });
      await writeFileAtomic(conflist, `${JSON.stringify(buildConflist(conf), null, 2)}\n`, 0o644);
      this.#conflist = conflist;
      log.info({ conflist }, 'CNI configuration installed');
      return;
    }
    const shim = findBuiltShim();
    const installed = await installCni({ ...(shim ? { shimPath: shim } : {}), binDir: cfg.binDir, confDir: cfg.confDir, ...conf });
    this.#conflist = installed.conflist;
    log.info({ conflist: installed.conflist, binary: installed.binary, binaryChanged: installed.binaryChanged }, 'CNI configuration installed');
  }

  /** Endpoints, with their Pod objects' labels when `meta` knows them. */
  list(meta?: (namespace: string, name: string) => { uid: string; labels: Record<string, string> } | undefined): EndpointView[] {
    return this.manager.list().map((e) => {
      const m = e.pod && meta ? meta(e.pod.namespace, e.pod.name) : undefined;
      if (!m || (e.pod?.uid && m.uid && e.pod.uid !== m.uid)) return e;
      return { ...e, labels: m.labels };
    });
  }

  async resync(): Promise<void> {
    await this.manager.resync();
  }

  status(): PodsStatus {
    const why = this.notReady();
    return {
      socket: this.#o.cfg.socket, ready: why === undefined && this.#conflist !== null, notReady: why ?? null,
      podCIDRs: this.ipam.cidrs, addresses: { used: this.ipam.used, capacity: this.ipam.capacity },
      endpoints: this.manager.records().length, conflist: this.#conflist ?? null,
    };
  }

  async stop(): Promise<void> {
    // The conflist stays: a restart is not an uninstall (pods added meanwhile
    // get "try again later" from the plugin, and DELs are queued).
    await this.#server?.close();
    this.#net.close();
  }
}
