// A loaded datapath in a throwaway pin root, programmed through the real
// compiler -> table -> reconciler path, for BPF_PROG_TEST_RUN tests.
import { rmSync } from 'node:fs';
import * as native from '../../native/index.ts';
import { CtDir, type Config, type Ct4Entry, type Ct4Key, layouts } from '../../src/abi/abi.gen.ts';
import { codec } from '../../src/abi/codec.ts';
import { readDrops } from '../../src/datapath/drops.ts';
import { BACKENDS_MAP, LbReconciler, NAMES_MAP, SERVICES_MAP } from '../../src/datapath/lb-reconciler.ts';
import { Datapath, type DatapathConfig, type ProgramName, configCodec } from '../../src/datapath/loader.ts';
import { endpointKeyCodec, endpointValueCodec } from '../../src/datapath/endpoints-reconciler.ts';
import { IpcacheReconciler } from '../../src/datapath/ipcache-reconciler.ts';
import { compileNodes } from '../../src/nodes/compile.ts';
import { compileService } from '../../src/services/compile.ts';
import type { EndpointSlice, NodeInfo, Service } from '../../src/services/model.ts';
import { LbTable } from '../../src/services/lb-table.ts';

export const ctKey = codec<Ct4Key>(layouts.hypha_ct4_key);
export const ctEntry = codec<Ct4Entry>(layouts.hypha_ct4_entry);

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;
export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;

export const NODE: NodeInfo = { name: 'node-a', addresses: ['192.168.77.10'] };

export class BpfHarness {
  readonly dp: Datapath;
  readonly table: LbTable;
  readonly lb: LbReconciler;
  readonly pinRoot: string;

  private constructor(dp: Datapath, pinRoot: string) {
    this.dp = dp;
    this.pinRoot = pinRoot;
    this.table = new LbTable({ services: 4096, backends: 4096 });
    this.lb = new LbReconciler({ services: dp.mapIO(SERVICES_MAP), backends: dp.mapIO(BACKENDS_MAP), names: dp.mapIO(NAMES_MAP), changed: () => dp.bumpLbGeneration() });
  }

  static async create(): Promise<BpfHarness> {
    const pinRoot = `/sys/fs/bpf/hypha-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    let dp: Datapath;
    try {
      dp = await Datapath.load({ pinRoot, mapSizes: { services: 4096, backends: 4096, affinity: 4096, ct: 16384 } });
    } catch (err) {
      rmSync(pinRoot, { recursive: true, force: true }); // a load that failed half-way leaves no pins behind
      throw err;
    }
    const h = new BpfHarness(dp, pinRoot);
    h.config({ flags: 0, loopback_addr: '169.254.42.1', snat_addr: '192.168.77.10', snat_port_min: 0, snat_port_max: 0, nodeport_min: 0, nodeport_max: 0, seen_mark: 0 });
    return h;
  }

  config(cfg: DatapathConfig): void {
    this.dp.writeConfig(cfg);
  }

  /** The config map's value as the programs see it. */
  configValue(): Config {
    return configCodec.decode(native.mapLookup(this.dp.map('hypha_config_v4'), new Uint8Array(4))!);
  }

  /** Program (or with slices undefined, remove) one Service through the real path. */
  service(svc: Service, slices: EndpointSlice[] | undefined, node: NodeInfo = NODE): void {
    const key = `${svc.namespace}/${svc.name}`;
    this.lb.apply(this.table.set(key, slices === undefined ? undefined : compileService(svc, slices, node)));
  }

  run(prog: ProgramName, data: Uint8Array, repeat = 1): native.TestRunResult {
    return native.progTestRun(this.dp.programs[prog], { data, repeat });
  }

  drops(): Record<string, number> {
    return Object.fromEntries(readDrops(this.dp.map('hypha_drops_v1')).map((d) => [d.reason, Number(d.packets)]));
  }

  ct(): { key: Ct4Key; entry: Ct4Entry }[] {
    const { keys, values, count } = native.mapDump(this.dp.map('hypha_ct4_v1'));
    const out = [];
    for (let i = 0; i < count; i++) {
      out.push({ key: ctKey.decode(keys, i * ctKey.layout.size), entry: ctEntry.decode(values, i * ctEntry.layout.size) });
    }
    return out;
  }

  ctService(src: string, sport: number, dst: string, dport: number, proto = 6): Ct4Entry | undefined {
    const v = native.mapLookup(this.dp.map('hypha_ct4_v1'), ctKey.encode({ saddr: src, daddr: dst, sport, dport, proto, dir: CtDir.SERVICE }));
    return v ? ctEntry.decode(v) : undefined;
  }

  clearMap(name: 'hypha_ct4_v1' | 'hypha_lb4_affinity_v1'): void {
    const m = this.dp.map(name);
    const { keys, count } = native.mapDump(m);
    if (count > 0) native.mapDeleteBatch(m, keys, count);
  }

  /** Pods on this node (the endpoints map, as the CNI path writes it). */
  localPods(ips: readonly string[], firstIfindex = 4242): void {
    ips.forEach((ip, i) => native.mapUpdate(this.dp.map('hypha_endpoints_v1'), endpointKeyCodec.encode({ value: ip }), endpointValueCodec.encode({ ifindex: firstIfindex + i, flags: 0 })));
  }

  /** The cluster as the ipcache sees it: this node (NODE, 10.244.0.0/24), node-b (192.168.77.11, 10.244.1.0/24), the Service range. */
  async twoNodeIpcache(): Promise<void> {
    const nodes = compileNodes([
      { name: 'node-a', addresses: [NODE.addresses[0]!], podCIDRs: ['10.244.0.0/24'] },
      { name: 'node-b', addresses: ['192.168.77.11'], podCIDRs: ['10.244.1.0/24'] },
    ], { mode: 'native', self: 'node-a', clusterCIDRs: ['10.96.0.0/12'] });
    await new IpcacheReconciler(this.dp.mapIO('hypha_ipcache_v1')).sync(nodes.ipcache);
  }

  close(): void {
    this.dp.close();
    rmSync(this.pinRoot, { recursive: true, force: true });
  }
}
