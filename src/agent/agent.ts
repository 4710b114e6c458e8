// One node's agent: loads the datapath (adopting what is pinned), attaches it
// to the node's devices, and keeps the load-balancer maps equal to the
// Services it is given. Stopping the agent leaves the datapath running:
// traffic keeps flowing while it restarts.
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import { ConfigFlags } from '../abi/abi.gen.ts';
import { Devices } from '../datapath/devices.ts';
import { readDrops } from '../datapath/drops.ts';
import { BACKENDS_MAP, LbReconciler, NAMES_MAP, SERVICES_MAP } from '../datapath/lb-reconciler.ts';
import { Datapath } from '../datapath/loader.ts';
import { LbTable } from '../services/lb-table.ts';
import type { NodeInfo } from '../services/model.ts';
import type { AgentConfig } from './config.ts';
import { FileSource } from './file-source.ts';
import { K8sSource } from './k8s-source.ts';
import { LbSync } from './lb-sync.ts';
import { type Metrics, createMetrics } from './metrics.ts';
import { ENDPOINTS_MAP, EndpointsReconciler } from '../datapath/endpoints-reconciler.ts';
import { EndpointsSync } from './endpoints.ts';
import { ConntrackGc } from './ct-gc.ts';
import { NodeState, deviceAddresses } from './node-state.ts';
import { ephemeralPorts, snatPortRange } from './snat-ports.ts';

/** Kubernetes' default --service-node-port-range. */
const NODE_PORT_RANGE = { min: 30000, max: 32767 };
import { PodDevices } from './pod-devices.ts';
import { serverPort, startServer } from './server.ts';
import type { AgentStatus, MapUsage } from './status.ts';

export class Agent {
  readonly cfg: AgentConfig;
  readonly #log: Logger;
  #dp: Datapath | undefined;
  #sync: LbSync | undefined;
  #table: LbTable | undefined;
  #lb: LbReconciler | undefined;
  #pods: PodDevices | undefined;
  #source: FileSource | undefined;
  #k8s: K8sSource | undefined;
  #server: Server | undefined;
  #metrics: Metrics | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #ctGc: ConntrackGc | undefined;
  #externalMode: 'xdp' | 'tc' | undefined;
  #ready = false;
  readonly #counts = new Map<string, number>();

  readonly #node: NodeState;

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

  async start(): Promise<void> {
    const log = this.#log;
    const { bpf } = this.cfg;
    const dp = await Datapath.load({ pinRoot: bpf.pinRoot, mapSizes: bpf.mapSizes, log });
    this.#dp = dp;
    this.#writeDatapathConfig();

    const devices = new Devices(dp, log);
    if (this.cfg.devices.external) this.#externalMode = devices.attachExternal(this.cfg.devices.external, this.cfg.devices.externalMode);
    this.#pods = new PodDevices(devices, this.cfg.devices.pods, log, new EndpointsSync(new EndpointsReconciler(dp.mapIO(ENDPOINTS_MAP)), log));
    this.#pods.start(this.cfg.sync.devicesSeconds * 1000);

    this.#metrics = createMetrics({
      maps: () => this.#mapUsage(),
      drops: () => readDrops(dp.map('hypha_drops_v1')).map((d) => ({ reason: d.reason, packets: Number(d.packets) })),
    });
    const metrics = this.#metrics;
    this.#ctGc = new ConntrackGc({
      collect: () => dp.collectConntrack(),
      capacity: dp.sizes.ct,
      limits: { minSeconds: 1, maxSeconds: this.cfg.sync.conntrackGcMaxSeconds },
      log,
      hooks: {
        pass: (r, next) => {
          this.#counts.set('hypha_ct4_v1', r.entries);
          metrics.ctGcDeleted.inc(r.deleted);
          metrics.ctGcDuration.observe(r.ms / 1000);
          metrics.ctGcInterval.set(next);
        },
      },
    });
    this.#ctGc.start();
    this.#table = new LbTable({ services: bpf.mapSizes.services, backends: bpf.mapSizes.backends });
    this.#lb = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP), names: dp.mapIO(NAMES_MAP) });
    const adopted = this.#table.adoptPinned(await this.#lb.readIds());
    log.info({ reconciler: 'lb', ...adopted }, 'adopted ids from pinned maps');
    const k8s = this.cfg.kubernetes;
    this.#sync = new LbSync({ table: this.#table, reconciler: this.#lb, node: this.nodeInfo(), log, metrics: this.#metrics, gated: k8s !== undefined });

    this.#server = await startServer(this.cfg.listen.address, this.cfg.listen.port, {
      ready: () => this.#ready,
      status: () => this.status(),
      registry: this.#metrics.registry,
    });

    const sync = this.#sync;
    this.#node.onChange((node) => {
      sync.setNode(node);
      this.#writeDatapathConfig();
    });
    if (k8s) {
      this.#k8s = new K8sSource({
        kubeconfig: k8s.kubeconfig,
        nodeName: this.cfg.node.name,
        silenceMs: k8s.silenceSeconds * 1000,
        resyncMs: k8s.resyncSeconds * 1000,
        log,
        onNode: (addresses) => this.#node.update({ fromApi: addresses }),
        hooks: {
          event: (resource, type) => metrics.k8sEvents.inc({ resource, type }),
          restarted: (resource, reason) => metrics.k8sWatchRestarts.inc({ resource, reason }),
        },
      });
      this.#k8s.start(sync);
    } else {
      this.#source = new FileSource(this.cfg.services.files, { log });
      this.#source.start((snap) => {
        sync.report(snap.problems);
        sync.replaceAll(snap.services, snap.slices);
      });
    }
    await sync.flushed();
    this.#ready = true;
    this.#metrics.ready.set(1);
    const mem = process.memoryUsage();
    log.info({
      ready: true, node: this.cfg.node.name, services: sync.status.services, port: this.port, external: this.#externalMode ?? 'none',
      rssMb: Math.round(mem.rss / 1048576), heapMb: Math.round(mem.heapUsed / 1048576),
      heapTotalMb: Math.round(mem.heapTotal / 1048576), externalMb: Math.round(mem.external / 1048576),
    }, 'agent ready');

    this.#resyncTimer = setInterval(() => {
      this.#node.update({ fromDevice: deviceAddresses(this.cfg.devices.external) });
      this.#writeDatapathConfig();
      sync.requestFullSync();
      this.#pods?.scan(true);
      void this.#countAffinityMap();
    }, this.cfg.sync.resyncSeconds * 1000);
    void this.#countAffinityMap();
  }

  /** Runtime settings of the programs; the node's first address sources
   *  outside traffic forwarded to backends on other nodes. */
  #writeDatapathConfig(): void {
    const { bpf } = this.cfg;
    const ports = snatPortRange([NODE_PORT_RANGE, ephemeralPorts()]);
    this.#dp?.writeConfig({
      flags: (bpf.dropEvents ? ConfigFlags.DROP_EVENTS : 0) | (bpf.hostRouting ? ConfigFlags.HOST_ROUTING : 0),
      loopback_addr: bpf.loopbackAddress,
      snat_addr: this.nodeInfo().addresses[0] ?? '0.0.0.0',
      snat_port_min: ports.min,
      snat_port_max: ports.max,
    });
  }

  /** The affinity map's size needs a walk of the map: done on the slow timer,
   *  not per scrape. (The conntrack map is counted by its garbage collector.) */
  async #countAffinityMap(): Promise<void> {
    const dp = this.#dp;
    if (!dp) return;
    const name = 'hypha_lb4_affinity_v1';
    try {
      this.#counts.set(name, (await native.mapDumpAsync(dp.map(name))).count);
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

  status(): AgentStatus {
    const s = this.#sync?.status;
    const gc = this.#ctGc?.last;
    return {
      node: this.nodeInfo(),
      ready: this.#ready,
      source: this.#k8s
        ? {
          kind: 'kubernetes',
          connected: this.#k8s.connected,
          informers: this.#k8s.status().map((i) => ({ ...i, lastEventAt: i.lastEventAt?.toISOString() ?? null })),
        }
        : { kind: 'files', paths: this.cfg.services.files, reads: this.#source?.reads ?? 0, lastReadAt: this.#source?.lastReadAt?.toISOString() ?? null },
      lastSync: s?.lastSync?.toISOString() ?? null,
      lastFullSync: s?.lastFullSync?.toISOString() ?? null,
      lastError: s?.lastError ?? null,
      services: s?.services ?? 0,
      maps: this.#mapUsage(),
      conntrackGc: gc ? { deleted: gc.deleted, entries: gc.entries, ms: gc.ms, at: gc.at.toISOString(), nextSeconds: gc.nextSeconds } : null,
      devices: { external: this.cfg.devices.external ?? null, externalMode: this.#externalMode ?? null, pods: [...(this.#pods?.attached.keys() ?? [])] },
      pinRoot: this.cfg.bpf.pinRoot,
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.#resyncTimer);
    this.#ctGc?.stop();
    this.#source?.stop();
    this.#k8s?.stop();
    this.#pods?.stop();
    this.#sync?.stop();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server?.closeAllConnections();
    // Programs stay attached and maps pinned: the datapath outlives the agent.
    this.#dp?.close();
    this.#log.info('agent stopped; datapath left running');
  }
}
