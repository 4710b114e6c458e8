// A local cluster of namespace nodes: a control-plane host running a real
// kube-apiserver and etcd, nodes with routes to each other's pod CIDRs, a
// Node object per node, and a Hypha agent on each node watching the API
// server. Tests and `make demo` build on it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { type ControlPlane, startControlPlane } from './apiserver.ts';
import { TestAgent } from './agent.ts';
import { installCrds } from './crds.ts';
import { TestOperator } from './operator.ts';
import type { EndpointSpec, ServiceSpec } from './manifests.ts';
import { serviceObject, sliceObject } from './manifests.ts';
import { type Host, type Node, type Pod, Topology, toolArgv } from './topology.ts';

export interface ClusterOptions {
  name: string;
  nodes: number;
  /** Map sizes for every agent. */
  mapSizes?: Record<string, number>;
  /** Attach the external-device program to each node's eth0 ('xdp' | 'tc' | 'auto'). */
  externalMode?: 'xdp' | 'tc' | 'auto';
  /** Do not start agents (a test starts them itself). */
  noAgents?: boolean;
  /** The agents' full datapath resync period (drift repair). */
  resyncSeconds?: number;
  /** Who gives nodes their pod CIDRs: Node.spec.podCIDRs set at registration
   *  (default, as kube-controller-manager would), or Hypha's operator from
   *  10.244.0.0/16 in /24s (the CRDs are installed and an operator started on
   *  the control-plane host). */
  ipam?: 'kubernetes' | 'cluster-pool';
  /** The agents' routing between nodes. */
  routing?: 'native' | 'vxlan';
  /** Outside hosts on the fabric (made before the agents start). */
  externalHosts?: string[];
  log?: (s: string) => void;
  /** The apiserver's ClusterIP allocator (ControlPlaneOptions.clusterIpAllocator). */
  clusterIpAllocator?: 'ipaddress' | 'bitmap';
}

interface HttpError {
  code?: number;
}

function statusOf(err: unknown): number | undefined {
  return (err as HttpError | null)?.code;
}

export class Cluster {
  readonly topo: Topology;
  readonly cp: ControlPlane;
  readonly controlPlaneHost: Host;
  readonly nodes: Node[];
  readonly agents: TestAgent[];
  readonly kc: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
  readonly discovery: k8s.DiscoveryV1Api;
  readonly work: string;
  readonly ipam: 'kubernetes' | 'cluster-pool';
  operator: TestOperator | undefined;

  private constructor(topo: Topology, cp: ControlPlane, host: Host, nodes: Node[], agents: TestAgent[], work: string, ipam: 'kubernetes' | 'cluster-pool') {
    this.ipam = ipam;
    this.topo = topo;
    this.cp = cp;
    this.controlPlaneHost = host;
    this.nodes = nodes;
    this.agents = agents;
    this.work = work;
    this.kc = new k8s.KubeConfig();
    this.kc.loadFromFile(cp.hostKubeconfigPath);
    this.core = this.kc.makeApiClient(k8s.CoreV1Api);
    this.discovery = this.kc.makeApiClient(k8s.DiscoveryV1Api);
  }

  static async create(opts: ClusterOptions): Promise<Cluster> {
    const log = opts.log ?? (() => {});
    const work = mkdtempSync(path.join(tmpdir(), `hypha-${opts.name}-`));
    const topo = await Topology.create({ name: opts.name });
    let cp: ControlPlane | undefined;
    try {
      const host = await topo.addControlPlaneHost();
      const nodes: Node[] = [];
      for (let i = 1; i <= opts.nodes; i++) nodes.push(await topo.addNode(`n${i}`));
      for (const h of opts.externalHosts ?? []) await topo.addExternalHost(h);
      log(`starting kube-apiserver and etcd on ${host.ip}`);
      cp = await startControlPlane({
        netns: host.netns, listenIp: host.ip, workDir: path.join(work, 'control-plane'),
        ...(opts.clusterIpAllocator ? { clusterIpAllocator: opts.clusterIpAllocator } : {}),
      });
      const ipam = opts.ipam ?? 'kubernetes';
      const agents = nodes.map((node) => new TestAgent(topo, node, {
        pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`,
        kubeconfig: cp!.kubeconfigPath,
        workDir: path.join(work, node.name),
        // Pod CIDRs from Node.spec.podCIDRs (registerNode sets them, as
        // kube-controller-manager would) and routes from the Nodes; or both
        // from the HyphaNodes the operator keeps.
        ipam: { mode: ipam },
        ...(opts.routing ? { routing: { mode: opts.routing } } : {}),
        ...(opts.mapSizes ? { mapSizes: opts.mapSizes } : {}),
        ...(opts.resyncSeconds ? { resyncSeconds: opts.resyncSeconds } : {}),
        ...(opts.externalMode ? { external: 'eth0', externalMode: opts.externalMode } : {}),
      }));
      const cluster = new Cluster(topo, cp, host, nodes, agents, work, ipam);
      if (ipam === 'cluster-pool') {
        await installCrds(cp.hostKubeconfigPath);
        cluster.operator = new TestOperator(topo, host, {
          identity: 'operator-1', kubeconfig: cp.kubeconfigPath, workDir: path.join(work, 'operator'), port: 9891,
          ipam: { mode: 'cluster-pool', clusterPool: { cidrs: ['10.244.0.0/16'], maskSize: 24 } },
        });
        log('starting the operator');
        await cluster.operator.start(60_000);
      }
      for (const node of nodes) await cluster.registerNode(node);
      if (!opts.noAgents) {
        log(`starting an agent on each of ${nodes.length} nodes`);
        await Promise.all(agents.map((a) => a.start(60_000)));
      }
      return cluster;
    } catch (err) {
      await cp?.stop().catch(() => undefined);
      await topo.destroy();
      rmSync(work, { recursive: true, force: true });
      throw err;
    }
  }

  /** The Node object a kubelet would register: its InternalIP is the node's fabric address. */
  async registerNode(node: Node): Promise<void> {
    const body: k8s.V1Node = { apiVersion: 'v1', kind: 'Node', metadata: { name: node.name }, spec: this.ipam === 'kubernetes' ? { podCIDR: node.podCidr } : {} };
    await this.core.createNode({ body });
    const current = await this.core.readNode({ name: node.name });
    current.status = { addresses: [{ type: 'InternalIP', address: node.ip }, { type: 'Hostname', address: node.name }] };
    await this.core.replaceNodeStatus({ name: node.name, body: current });
  }

  /** A pod running echo-server under `name` on `ports`. */
  async addServingPod(node: Node, name: string, ports = '8080', flags: string[] = ['--both']): Promise<Pod> {
    const pod = await this.topo.addPod(node, name);
    await this.topo.spawnReady(pod, toolArgv('echo-server', ['--name', name, '--port', ports, ...flags]));
    return pod;
  }

  async ensureNamespace(name: string): Promise<void> {
    try {
      await this.core.createNamespace({ body: { metadata: { name } } });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
    }
  }

  /** Create or replace a Service. */
  async applyService(spec: ServiceSpec): Promise<k8s.V1Service> {
    const namespace = spec.namespace ?? 'default';
    const body = serviceObject(spec) as k8s.V1Service;
    try {
      return await this.core.createNamespacedService({ namespace, body });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      const cur = await this.core.readNamespacedService({ name: spec.name, namespace });
      body.metadata = { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion };
      body.spec = { ...body.spec, clusterIP: cur.spec?.clusterIP, clusterIPs: cur.spec?.clusterIPs };
      return await this.core.replaceNamespacedService({ name: spec.name, namespace, body });
    }
  }

  /** Create or replace an EndpointSlice of a Service. */
  async applySlice(service: ServiceSpec, endpoints: EndpointSpec[], ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' }[], name = `${service.name}-1`): Promise<void> {
    const namespace = service.namespace ?? 'default';
    const body = sliceObject(service, endpoints, ports, name) as unknown as k8s.V1EndpointSlice;
    try {
      await this.discovery.createNamespacedEndpointSlice({ namespace, body });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      const cur = await this.discovery.readNamespacedEndpointSlice({ name, namespace });
      body.metadata = { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion };
      await this.discovery.replaceNamespacedEndpointSlice({ name, namespace, body });
    }
  }

  async deleteService(name: string, namespace = 'default'): Promise<void> {
    await this.core.deleteNamespacedService({ name, namespace });
  }

  async deleteSlice(name: string, namespace = 'default'): Promise<void> {
    await this.discovery.deleteNamespacedEndpointSlice({ name, namespace });
  }

  /** Endpoints of pods, as an EndpointSlice lists them. */
  static endpoints(pods: Pod[]): EndpointSpec[] {
    return pods.map((p) => ({ ip: p.ip, node: p.node.name }));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop().catch(() => undefined)));
    await this.operator?.stop().catch(() => undefined);
    await this.cp.stop().catch(() => undefined);
    await this.topo.destroy();
    for (const a of this.agents) a.cleanupPins();
    rmSync(this.work, { recursive: true, force: true });
  }
}
