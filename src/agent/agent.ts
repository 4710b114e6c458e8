// One node's agent: loads the datapath (adopting what is pinned), attaches it
// to the node's devices, keeps the load-balancer maps equal to the Services
// it is given, makes the pods the CNI plugin asks for, and keeps the routes
// and the ipcache equal to the cluster's nodes. Stopping the agent leaves the
// datapath running: traffic keeps flowing while it restarts.
import { existsSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import { ConfigFlags, layouts } from '../abi/abi.gen.ts';
import { Devices } from '../datapath/devices.ts';
import { detectExternalDevice } from '../datapath/external-device.ts';
import { attachSockLb, cgroup2Root } from '../datapath/sock-lb.ts';
import { HealthCheckServers } from './health-check.ts';
import { readDrops } from '../datapath/drops.ts';
import { ENDPOINTS_MAP, EndpointsMap } from '../datapath/endpoints-reconciler.ts';
import { IPCACHE_MAP, ipcacheKeyCodec, ipcacheValCodec } from '../datapath/ipcache-reconciler.ts';
import { POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP } from '../datapath/policy-maps.ts';
import { BACKENDS_MAP, LbReconciler, NAMES_MAP, SERVICES_MAP } from '../datapath/lb-reconciler.ts';
import { Datapath, type GrowStep, type MapSizes } from '../datapath/loader.ts';
import { MapGrowth } from './map-growth.ts';
import { NodeRoutes } from '../datapath/node-routes.ts';
import { RpFilter } from '../datapath/rp-filter.ts';
import { Rtnl } from '../datapath/rtnl.ts';
import { KubeClient } from '../k8s/client.ts';
import type { ClusterNode } from '../nodes/compile.ts';
import { LbTable } from '../services/lb-table.ts';
import type { NodeInfo } from '../services/model.ts';
import { ClusterNodesSource } from './cluster-nodes.ts';
import type { AgentConfig } from './config.ts';
import { ConntrackGc } from './ct-gc.ts';
import { FileSource } from './file-source.ts';
import { AgentIdentities, IdentityIpcache } from './identities.ts';
import { K8sSource } from './k8s-source.ts';
import { LbSync } from './lb-sync.ts';
import { type Metrics, createMetrics } from './metrics.ts';
import { Monitor, agentSources, lostCounter, ringSource } from './monitor.ts';
import { NodeState, deviceAddresses } from './node-state.ts';
import { PodMetadata } from './pod-metadata.ts';
import type { EndpointPolicyHooks } from '../endpoints/manager.ts';
import { Pods } from './pods.ts';
import { AgentL7 } from './l7.ts';
import { AgentPolicy, lbServiceLookup } from './policy.ts';
import { Routing } from './routing.ts';
import { serverPort, startServer } from './server.ts';
import { ephemeralPorts, snatPortRanges } from './snat-ports.ts';
import { collectGarbage, memoryDocument } from './gc.ts';
import type { AgentStatus, MapUsage } from './status.ts';

/** Kubernetes' default --service-node-port-range. */
/** VXLAN's overhead: outer Ethernet, IPv4, UDP and VXLAN headers. */
const VXLAN_OVERHEAD = 50;

export class Agent {
  readonly cfg: AgentConfig;
  readonly #log: Logger;
  readonly #node: NodeState;
  #dp: Datapath | undefined;
  #rtnl: Rtnl | undefined;
  #sync: LbSync | undefined;
  #healthChecks: HealthCheckServers | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #table: LbTable | undefined;
  #lb: LbReconciler | undefined;
  #pods: Pods | undefined;
  #routing: Routing | undefined;
  #source: FileSource | undefined;
  #client: KubeClient | undefined;
  #k8s: K8sSource | undefined;
  #nodes: ClusterNodesSource | undefined;
  #podMeta: PodMetadata | undefined;
  #identities: AgentIdentities | undefined;
  #policy: AgentPolicy | undefined;
  #l7: AgentL7 | undefined;
  #monitor: Monitor | undefined;
  #server: Server | undefined;
  #metrics: Metrics | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #ctGc: ConntrackGc | undefined;
  #growth: MapGrowth | undefined;
  #devices: Devices | undefined;
  #rpFilter: RpFilter | undefined;
  #externalMode: 'xdp' | 'tc' | undefined;
  #externalMtu = 1500;
  #lbReady = false;
  #ready = false;
  readonly #counts = new Map<string, number>();

  constructor(cfg: AgentConfig, log: Logger) {
    this.cfg = cfg;
    this.#log = log;
    this.#node = new NodeState(cfg.node.name, { configured: cfg.node.addresses, fromDevice: deviceAddresses(cfg.devices.external) }, cfg.kubernetes !== undefined);
  }

  get port(): number | undefined {
    return this.#server ? serverPort(this.#server) : undefined;
  }

  get sync(): LbSync | undefined {
    return this.#sync;
  }

  /** NodePorts answer on the configured addresses, or else the Node object's
   *  (Kubernetes mode), or else the external device's. */
  nodeInfo(): NodeInfo {
    return this.#node.info;
  }

  /** Pod interfaces' MTU: configured, or the external device's less what the tunnel takes. */
  #podMtu(): number {
    if (this.cfg.cni.mtu > 0) return this.cfg.cni.mtu;
    return this.#externalMtu - (this.cfg.routing.mode === 'vxlan' ? VXLAN_OVERHEAD : 0);
  }

  /** This node as a row of the cluster's node table. */
  #self(): ClusterNode {
    return { name: this.cfg.node.name, addresses: this.#node.info.addresses, podCIDRs: this.#pods?.ipam.cidrs ?? this.cfg.ipam.podCIDRs };
  }

  async start(): Promise<void> {
    const log = this.#log;
    const { bpf, cni, routing } = this.cfg;
    // Host sysctls first: refused, the agent has changed nothing.
    this.#rpFilter = new RpFilter({ manage: this.cfg.sysctl.manageRpFilter, log });
    this.#rpFilter.ensure();
    // Sizes the configuration fixes stay; the others start at what is pinned
    // (or initialMapSizes; conntrack from the node's memory) and grow online.
    const initialSizes: Partial<MapSizes> = { ...bpf.initialMapSizes };
    if (bpf.mapSizes.ct === undefined && initialSizes.ct === undefined) initialSizes.ct = conntrackSizeFor(totalmem(), bpf.conntrackMemoryRatio);
    const dp = await Datapath.load({ pinRoot: bpf.pinRoot, mapSizes: bpf.mapSizes, initialSizes, log });
    this.#dp = dp;
    this.#writeDatapathConfig();
    const rtnl = Rtnl.open();
    this.#rtnl = rtnl;

    const devices = new Devices(dp, log);
    this.#devices = devices;
    if (this.cfg.devices.external === undefined && this.cfg.devices.detectExternal) {
      // None configured: the one a user would name (default route first).
      const [links, addrs, routes] = await Promise.all([rtnl.linkList(), rtnl.addrList(), rtnl.routeList()]);
      const choice = detectExternalDevice({ links, addrs, routes }, this.cfg.node.addresses);
      if (choice.device) {
        log.info({ device: choice.device, why: choice.why }, `external device ${choice.device} detected: ${choice.why}`);
        this.cfg.devices.external = choice.device;
        this.#node.update({ fromDevice: deviceAddresses(choice.device) });
      } else {
        log.warn({ why: choice.why }, `no external device: ${choice.why}; NodePorts and masquerading are off until devices.external is set`);
      }
    }
    if (this.cfg.devices.external) {
      this.#externalMode = devices.attachExternal(this.cfg.devices.external, this.cfg.devices.externalMode);
      this.#externalMtu = (await rtnl.linkGet(this.cfg.devices.external))?.mtu ?? 1500;
    }

    this.#attachSockLb();

    this.#metrics = createMetrics({
      maps: () => this.#mapUsage(),
      drops: () => readDrops(dp.map('hypha_drops_v1')).map((d) => ({ reason: d.reason, packets: Number(d.packets) })),
    });
    const metrics = this.#metrics;
    const fixed = bpf.mapSizes;
    const growth = new MapGrowth({
      sizes: () => ({ ...dp.sizes }),
      grow: (target, afterStep) => dp.grow(target, { reattach: () => this.#reattach(), ...(afterStep ? { afterStep } : {}), log }),
      fixed: { services: fixed.services !== undefined, backends: fixed.backends !== undefined, affinity: fixed.affinity !== undefined, ct: fixed.ct !== undefined },
      highWater: bpf.mapHighWater,
      grown: (sizes) => {
        // A pod added during the swap may have taken the old programs.
        this.#reattach(true);
        this.#sync?.capacityChanged({ services: sizes.services, backends: sizes.backends });
      },
      log, registry: metrics.registry,
      ...(process.env.HYPHA_TEST_GROW_PAUSE_FILE ? { afterStep: pauseAtStep(process.env.HYPHA_TEST_GROW_PAUSE_FILE, log) } : {}),
    });
    this.#growth = growth;
    this.#ctGc = new ConntrackGc({
      collect: () => dp.collectConntrack(),
      capacity: () => dp.sizes.ct,
      limits: { minSeconds: 1, maxSeconds: this.cfg.sync.conntrackGcMaxSeconds },
      log,
      hooks: {
        pass: (r, next) => {
          this.#counts.set('hypha_ct4_v1', r.entries);
          if (growth.needsGrowth({ ct: r.entries })) void growth.ensure({ ct: r.entries });
          metrics.ctGcDeleted.inc(r.deleted);
          metrics.ctGcDuration.observe(r.ms / 1000);
          metrics.ctGcInterval.set(next);
        },
      },
    });
    this.#ctGc.start();
    this.#table = new LbTable({ services: dp.sizes.services, backends: dp.sizes.backends });
    this.#lb = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP), names: dp.mapIO(NAMES_MAP), changed: () => dp.bumpLbGeneration() });
    const adopted = this.#table.adoptPinned(await this.#lb.readIds());
    log.info({ reconciler: 'lb', ...adopted }, 'adopted ids from pinned maps');
    const k8s = this.cfg.kubernetes;
    this.#sync = new LbSync({
      table: this.#table, reconciler: this.#lb, node: this.nodeInfo(), log, metrics, gated: k8s !== undefined, externalIPs: this.cfg.services.externalIPs,
      reserve: (need) => growth.ensure(need),
    });
    // Health check node ports: checked every second (only Services that have one).
    this.#healthChecks = new HealthCheckServers(log);
    this.#healthTimer = setInterval(() => this.#healthChecks?.update(this.#sync?.healthChecks() ?? []), 1000);

    // NetworkPolicy: compiled over identities and this node's endpoints into
    // the policy maps. Made before the CNI socket opens: every ADD closes its
    // pod until policy judges it.
    if (this.cfg.policy.enabled) {
      this.#policy = new AgentPolicy({
        nodeName: this.cfg.node.name, log, registry: metrics.registry,
        silenceMs: (k8s?.silenceSeconds ?? 90) * 1000, resyncMs: (k8s?.resyncSeconds ?? 600) * 1000,
        maps: { policy: dp.mapIO(POLICY_MAP), eps: dp.mapIO(POLICY_EPS_MAP), cidrs: dp.mapIO(POLICY_CIDR_MAP) },
        identities: () => this.#identities,
        endpoints: () => this.#pods?.manager.records() ?? [],
        changed: () => dp.bumpPolicyGeneration(),
        proxyPort: this.cfg.policy.l7.proxyPort,
        // HyphaNetworkPolicy http rules present or gone: the external
        // device's L7 steering (ConfigFlags.L7) follows.
        l7Changed: () => this.#writeDatapathConfig(),
      });
    }
    // Pods: endpoints reconciled and the CNI socket open before anything
    // else can take time, so DELs the runtime sends are served at once.
    if (cni.enabled) {
      const pods = new Pods({
        cfg: cni, devices, endpoints: new EndpointsMap(dp.mapIO(ENDPOINTS_MAP)), rtnl, mtu: () => this.#podMtu(), log, registry: metrics.registry,
        onEndpointsChange: () => {
          this.#identities?.endpointsChanged();
          this.#policy?.request();
        },
        ...(this.#policy ? { policy: podPolicyHooks(this.#policy, this.cfg.policy.podStartWaitSeconds * 1000) } : {}),
        ...(process.env.HYPHA_TEST_ADD_PAUSE_FILE ? { afterStep: pauseWhileFileExists(process.env.HYPHA_TEST_ADD_PAUSE_FILE) } : {}),
      });
      this.#pods = pods;
      if (this.cfg.ipam.mode === 'static') pods.setPodCidrs(this.cfg.ipam.podCIDRs, []);
      await pods.start();
    }
    this.#routing = new Routing({
      mode: routing.mode,
      self: () => this.#self(),
      clusterCIDRs: routing.clusterCIDRs,
      routes: new NodeRoutes(rtnl, { mode: routing.mode, vxlan: routing.vxlan, mtu: this.#externalMtu, log }),
      // Node and pod identities with the nodes' entries (src/agent/identities.ts).
      ipcache: new IdentityIpcache(dp.mapIO(IPCACHE_MAP), { identities: () => this.#identities, log }),
      log,
    });
    if (!k8s) this.#routing.setNodes(routing.nodes.map((n) => ({ name: n.name, addresses: n.addresses, podCIDRs: n.podCIDRs })));

    // `hypha monitor`: drop events while a client is attached.
    this.#monitor = new Monitor({
      records: ringSource(dp.map('hypha_events_v1')), ringLost: lostCounter(dp.map('hypha_events_lost_v1')), log, registry: metrics.registry,
      sources: agentSources({ node: this.cfg.node.name, endpoints: () => this.#pods?.manager.records() ?? [], identities: () => this.#identities, names: () => dp.map(NAMES_MAP) }),
      onActiveChange: () => this.#writeDatapathConfig(),
    });
    this.#monitor.start();
    const ipcacheIO = dp.mapIO(IPCACHE_MAP);
    const ipcacheIdentity = (ip: string): number | undefined => {
      const v = ipcacheIO.lookup(ipcacheKeyCodec.encode({ prefixlen: 32, addr: ip }));
      const id = v ? ipcacheValCodec.decode(v).identity : 0;
      return id === 0 ? undefined : id;
    };
    // The L7 proxy (HyphaNetworkPolicy http rules), listening before any
    // policy is written: a flow with http rules is never refused for want of it.
    if (this.#policy) {
      const policy = this.#policy;
      this.#l7 = new AgentL7({
        port: this.cfg.policy.l7.proxyPort, rtnl, log, registry: metrics.registry,
        flow: (src, dst) => policy.l7Flow(src, dst, ipcacheIdentity),
        generation: () => policy.writes,
        onAccess: (e) => this.#monitor?.emitL7(e),
      });
      await this.#l7.start();
    }
    const policyOff = { enabled: false, synced: false, waiting: 'policy.enabled is false in the agent\'s configuration', endpoints: [], traces: [] };
    this.#server = await startServer(this.cfg.listen.address, this.cfg.listen.port, {
      ready: () => this.#ready,
      // Ready with Services not programmed: one bad Service must not make
      // the node unready, but the answer says so.
      readyNote: () => {
        const n = this.#sync?.notProgrammed() ?? 0;
        return n > 0 ? `${n} ${n === 1 ? 'Service' : 'Services'} not programmed (hypha service list --problems)` : undefined;
      },
      status: () => this.status(),
      registry: metrics.registry,
      documents: {
        '/endpoints': () => this.#pods?.list((ns, name) => this.#podMeta?.get(ns, name)) ?? [],
        '/identities': () => this.#identities?.list() ?? [],
        // Where the agent's memory is (MB): the process, V8's spaces (used
        // and committed), and with ?gc=1 after a full collection first.
        '/memory': (q) => memoryDocument(q.get('gc') === '1'),
        '/policy/endpoints': (q) => this.#policy?.endpointsDocument(q) ?? policyOff,
        '/policy/trace': (q) => this.#policy?.traceDocument(q, { services: lbServiceLookup(this.#table!), ipcache: ipcacheIdentity }) ?? { ...policyOff, verdict: 'none', notes: [policyOff.waiting] },
      },
      streams: { '/monitor': (req, res, query) => this.#monitor?.handle(req, res, query) },
    });

    const sync = this.#sync;
    this.#node.onChange((node) => {
      sync.setNode(node);
      this.#writeDatapathConfig();
      this.#routing?.request();
      this.#nodes?.setAddresses(node.addresses);
    });
    if (k8s) {
      const client = KubeClient.fromKubeconfig(k8s.kubeconfig);
      this.#client = client;
      const hooks = {
        event: (resource: string, type: string) => metrics.k8sEvents.inc({ resource, type }),
        restarted: (resource: string, reason: string) => metrics.k8sWatchRestarts.inc({ resource, reason }),
      };
      this.#k8s = new K8sSource({
        client,
        nodeName: this.cfg.node.name,
        silenceMs: k8s.silenceSeconds * 1000,
        resyncMs: k8s.resyncSeconds * 1000,
        log,
        onNode: (addresses) => this.#node.update({ fromApi: addresses }),
        hooks,
      });
      this.#k8s.start(sync);
      const ipamMode = this.cfg.ipam.mode;
      this.#nodes = new ClusterNodesSource({
        client, nodeName: this.cfg.node.name, mode: ipamMode === 'kubernetes' ? 'kubernetes' : 'cluster-pool', log, hooks,
        silenceMs: k8s.silenceSeconds * 1000, resyncMs: k8s.resyncSeconds * 1000,
        onChange: (nodes, own) => {
          if (ipamMode !== 'static') this.#pods?.setPodCidrs(own.cidrs, own.problems);
          this.#routing?.setNodes(nodes);
          void this.#maybeReady();
        },
      });
      this.#nodes.start();
      if (this.#pods) {
        this.#podMeta = new PodMetadata();
        this.#podMeta.start({ client, nodeName: this.cfg.node.name, log, hooks, silenceMs: k8s.silenceSeconds * 1000, resyncMs: k8s.resyncSeconds * 1000 });
      }
      this.#nodes.setAddresses(this.#node.info.addresses);
      // Security identities: this node's pods', and every pod address's for the ipcache.
      this.#identities = new AgentIdentities({
        client, nodeName: this.cfg.node.name, log, registry: metrics.registry, hooks,
        silenceMs: k8s.silenceSeconds * 1000, resyncMs: k8s.resyncSeconds * 1000,
        endpoints: () => this.#pods?.manager.records() ?? [],
        onChange: () => {
          this.#routing?.request();
          this.#policy?.request();
        },
      });
      this.#identities.start();
      this.#policy?.start({ client, hooks });
    } else {
      this.#policy?.start();
      this.#source = new FileSource(this.cfg.services.files, { log });
      this.#source.start((snap) => {
        // One read of the files is one scope: its problems replace the last read's.
        sync.report('files', snap.problems);
        sync.replaceAll(snap.services, snap.slices);
      });
    }
    await sync.flushed();
    await this.#routing.syncNow().catch((err: Error) => log.warn({ err: err.message }, 'first routing sync failed; retrying'));
    this.#lbReady = true;
    await this.#maybeReady();

    this.#resyncTimer = setInterval(() => {
      this.#rpFilter?.recheck();
      this.#node.update({ fromDevice: deviceAddresses(this.cfg.devices.external) });
      this.#writeDatapathConfig();
      sync.requestFullSync();
      this.#routing?.request();
      this.#pods?.resync().catch((err: Error) => log.warn({ err: err.message }, 'endpoints map not resynced'));
      this.#policy?.resync();
      void this.#countAffinityMap();
    }, this.cfg.sync.resyncSeconds * 1000);
    void this.#countAffinityMap();
  }

  /** Ready: the Services are programmed and, with the CNI on, pods can be
   *  added (the node has a pod CIDR): then the conflist is written. */
  async #maybeReady(): Promise<void> {
    if (this.#ready || !this.#lbReady) return;
    if (this.#pods) {
      const why = this.#pods.notReady();
      if (why) {
        this.#log.info({ reason: why }, 'waiting for a pod CIDR before accepting pods');
        return;
      }
      try {
        await this.#pods.install();
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'CNI configuration not installed');
        return;
      }
    }
    if (this.#ready) return;
    this.#ready = true;
    this.#metrics?.ready.set(1);
    const mem = process.memoryUsage();
    this.#log.info({
      ready: true, node: this.cfg.node.name, services: this.#sync?.status.services ?? 0, port: this.port, external: this.#externalMode ?? 'none',
      podCIDRs: this.#pods?.ipam.cidrs ?? [], endpoints: this.#pods?.manager.records().length ?? 0,
      rssMb: Math.round(mem.rss / 1048576), heapMb: Math.round(mem.heapUsed / 1048576),
      heapTotalMb: Math.round(mem.heapTotal / 1048576), externalMb: Math.round(mem.external / 1048576),
    }, 'agent ready');
    // The cold start's garbage, given back once the agent is ready (the
    // first sync leaves it: the datapath is programmed before this).
    collectGarbage();
  }

  /** Runtime settings of the programs; the node's first address sources
   *  outside traffic forwarded to backends on other nodes, and masqueraded
   *  pod traffic. */
  #writeDatapathConfig(): void {
    const { bpf, routing } = this.cfg;
    const [ports, second] = snatPortRanges([bpf.nodePortRange, ephemeralPorts()]);
    this.#dp?.writeConfig({
      flags: (bpf.dropEvents || this.#monitor?.active ? ConfigFlags.DROP_EVENTS : 0) | (bpf.hostRouting ? ConfigFlags.HOST_ROUTING : 0) | (routing.masquerade ? ConfigFlags.MASQUERADE : 0) |
        (this.cfg.policy.enabled ? ConfigFlags.POLICY : 0) | (this.#policy?.l7 ? ConfigFlags.L7 : 0),
      loopback_addr: bpf.loopbackAddress,
      snat_addr: this.nodeInfo().addresses[0] ?? '0.0.0.0',
      snat_port_min: ports.min,
      snat_port_max: ports.max,
      snat_port_min2: second?.min ?? 0,
      snat_port_max2: second?.max ?? 0,
      nodeport_min: bpf.nodePortRange.min,
      nodeport_max: bpf.nodePortRange.max,
      seen_mark: bpf.mark,
    });
  }

  /** The affinity map's size needs a walk of the map: done on the slow timer,
   *  not per scrape. (The conntrack map is counted by its garbage collector.) */
  async #countAffinityMap(): Promise<void> {
    const dp = this.#dp;
    if (!dp) return;
    const name = 'hypha_lb4_affinity_v1';
    try {
      const count = (await native.mapDumpAsync(dp.map(name))).count;
      this.#counts.set(name, count);
      if (this.#growth?.needsGrowth({ affinity: count })) await this.#growth.ensure({ affinity: count });
    } catch (err) {
      this.#log.warn({ map: name, err: (err as Error).message }, 'map not counted');
    }
  }

  #mapUsage(): MapUsage[] {
    const dp = this.#dp;
    const table = this.#table;
    if (!dp || !table) return [];
    return [
      { map: SERVICES_MAP, entries: table.usage.services, capacity: dp.sizes.services },
      { map: BACKENDS_MAP, entries: table.usage.backends, capacity: dp.sizes.backends },
      { map: 'hypha_ct4_v1', entries: this.#counts.get('hypha_ct4_v1') ?? 0, capacity: dp.sizes.ct },
      { map: 'hypha_lb4_affinity_v1', entries: this.#counts.get('hypha_lb4_affinity_v1') ?? 0, capacity: dp.sizes.affinity },
    ];
  }

  /** The socket LB programs (the node's own connections to Services), attached or updated in their links. */
  #attachSockLb(): void {
    const dp = this.#dp;
    if (!dp || !this.cfg.bpf.socketLb) return;
    const cgroup = this.cfg.bpf.socketLbCgroup ?? cgroup2Root();
    if (!cgroup) {
      this.#log.warn("no cgroup v2 hierarchy is mounted here: the node's own connections to Services are not translated (mount one, or set bpf.socketLbCgroup)");
      return;
    }
    try {
      const r = attachSockLb(dp, cgroup);
      this.#log.info({ cgroup, netnsCookie: String(r.netnsCookie) }, 'socket LB attached: the node\'s own connections to Services get a backend at connect()');
    } catch (err) {
      this.#log.warn({ cgroup, err: (err as Error).message }, "socket LB not attached: the node's own connections to Services are not translated");
    }
  }

  /** Every device gets the programs loaded now (a map growth replaced them);
   *  `onlyStale`: only those running others. */
  #reattach(onlyStale = false): void {
    const devices = this.#devices;
    if (!devices) return;
    const ext = this.cfg.devices.external;
    if (ext && !onlyStale && this.#externalMode) devices.attachExternal(ext, this.#externalMode);
    if (!onlyStale) this.#attachSockLb();
    for (const r of this.#pods?.manager.records() ?? []) {
      if (onlyStale && devices.podAttached(r.hostIfindex)) continue;
      try {
        devices.attachPod(r.hostIfname);
      } catch (err) {
        // Gone meanwhile (a DEL): nothing to run there.
        this.#log.debug({ device: r.hostIfname, err: (err as Error).message }, 'pod device not re-attached');
      }
    }
  }

  status(): AgentStatus {
    const s = this.#sync?.status;
    const gc = this.#ctGc?.last;
    const informers = [...(this.#k8s?.status() ?? []), ...(this.#nodes?.status() ?? []), ...(this.#podMeta?.status() ?? []), ...(this.#identities?.status() ?? []), ...(this.#policy?.status() ?? [])];
    return {
      node: this.nodeInfo(),
      ready: this.#ready,
      source: this.#k8s
        ? {
          kind: 'kubernetes',
          connected: this.#k8s.connected,
          informers: informers.map((i) => ({ ...i, lastEventAt: i.lastEventAt?.toISOString() ?? null })),
        }
        : { kind: 'files', paths: this.cfg.services.files, reads: this.#source?.reads ?? 0, lastReadAt: this.#source?.lastReadAt?.toISOString() ?? null },
      lastSync: s?.lastSync?.toISOString() ?? null,
      lastFullSync: s?.lastFullSync?.toISOString() ?? null,
      lastError: s?.lastError ?? null,
      services: s?.services ?? 0,
      notServed: this.#sync?.notServed() ?? [],
      problems: this.#sync?.problems() ?? [],
      problemKinds: this.#sync?.problemKinds() ?? [],
      notProgrammed: this.#sync?.notProgrammed() ?? 0,
      maps: this.#mapUsage(),
      conntrackGc: gc ? { deleted: gc.deleted, entries: gc.entries, ms: gc.ms, at: gc.at.toISOString(), nextSeconds: gc.nextSeconds } : null,
      devices: { external: this.cfg.devices.external ?? null, externalMode: this.#externalMode ?? null, pods: this.#pods?.manager.records().map((e) => e.hostIfname) ?? [] },
      pods: this.#pods?.status() ?? null,
      routing: this.#routing?.status() ?? null,
      pinRoot: this.cfg.bpf.pinRoot,
      l7Proxy: this.#l7?.status() ?? null,
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.#resyncTimer);
    clearInterval(this.#healthTimer);
    this.#healthChecks?.close();
    this.#ctGc?.stop();
    this.#source?.stop();
    this.#k8s?.stop();
    this.#nodes?.stop();
    this.#podMeta?.stop();
    this.#identities?.stop();
    this.#policy?.stop();
    await this.#l7?.stop();
    this.#client?.close();
    this.#sync?.stop();
    await this.#routing?.stop();
    await this.#pods?.stop();
    this.#monitor?.stop();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server?.closeAllConnections();
    // Programs stay attached, maps pinned, pods and routes in place: the
    // datapath outlives the agent.
    this.#rtnl?.close();
    this.#dp?.close();
    this.#log.info('agent stopped; datapath left running');
  }
}

/** Test hook: ADD waits after each step while this file exists (the
 *  fault-injection tests kill the agent there). */
function pauseWhileFileExists(file: string): (step: string) => Promise<void> {
  return async () => {
    while (existsSync(file)) await new Promise((r) => setTimeout(r, 20));
  };
}

/** Conntrack entries for a node with `memory` bytes at `ratio` of it: a
 *  power of two, 65 536 to 16 777 216. An entry costs its key and value and
 *  the kernel's hash-table element (about 56 bytes). */
export function conntrackSizeFor(memory: number, ratio: number): number {
  const perEntry = layouts.hypha_ct4_key.size + layouts.hypha_ct4_entry.size + 56;
  const want = (memory * ratio) / perEntry;
  let size = 1 << 16;
  while (size * 2 <= want && size < 1 << 24) size *= 2;
  return size;
}

/** Test hook: stop a map growth after the step the file names, while the file exists. */
function pauseAtStep(file: string, log: Logger): (step: GrowStep) => Promise<void> {
  return async (step) => {
    const at = () => existsSync(file) && readFileSync(file, 'utf8').trim() === step;
    if (at()) log.info({ step }, 'map growth paused (test hook)');
    while (at()) await new Promise((r) => setTimeout(r, 20));
  };
}

/** A pod's NetworkPolicy side of CNI ADD and DEL. */
function podPolicyHooks(policy: AgentPolicy, waitMs: number): EndpointPolicyHooks {
  return {
    close: (ip) => policy.closeEndpoint(ip),
    release: (ip) => policy.releaseEndpoint(ip),
    enforced: (ip) => policy.whenEnforced(ip, waitMs),
  };
}
