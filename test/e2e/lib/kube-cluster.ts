// A real Kubernetes cluster of namespace nodes on this machine, no Docker:
//
//   control-plane host   kube-apiserver (Node and RBAC authorization, default
//                        admission), etcd, kube-controller-manager and
//                        kube-scheduler, in their own netns on the fabric
//   node n1..nN          containerd + runc and a kubelet in the node's netns,
//                        sharing one private mount namespace (containerd.ts,
//                        kubeletNode) that gives the node its own /var/lib/kubelet,
//                        /var/log/pods, /etc/cni/net.d, /opt/cni/bin,
//                        /var/run/hypha, /var/lib/hypha, /run/netns and BPF
//                        filesystem, so a DaemonSet's hostPath volumes mean what
//                        they mean on a real node. Each kubelet has its own
//                        cgroup root (cgroupfs driver; on cgroup v1 with
//                        failCgroupV1: false), client certificate
//                        (system:node:<name>) and serving port on its own address.
//
// No kube-proxy. installHypha() applies deploy/ through the API server the way
// a user does (`kubectl apply -k deploy/`, after creating the hypha-apiserver
// ConfigMap), with Hypha's image imported into every node's containerd.
//
// Everything is started by pid and torn down on destroy() (kubelets first, so
// nothing recreates pods, then containerd with its pods, the control plane and
// the namespaces), also when the test process dies (the Topology and runtime
// exit hooks).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { stringify } from 'yaml';
import { type ControlPlane, type K8sBinaries, k8sBinaries, REPO_ROOT, startControlPlane } from './apiserver.ts';
import { cgroupHierarchies, containerdBinaries, type ContainerdBinaries, type Runtime, startContainerd } from './containerd.ts';
import { issueClientCert, writeKubeconfig } from './pki.ts';
import { run, type RunResult } from './proc.ts';
import { type Host, type Node, type Proc, Topology } from './topology.ts';

export const CLUSTER_DOMAIN = 'cluster.local';
export const CLUSTER_DNS = '10.96.0.10';
export const POD_CIDR = '10.244.0.0/16';

export interface KubeClusterOptions {
  name: string;
  nodes: number;
  log?: Logger;
  /** Progress lines for a person watching (make demo); default none. */
  progress?: (line: string) => void;
  /** OCI archives imported into every node besides pause and agnhost (Hypha's image, say). */
  images?: readonly string[];
  /** Import CoreDNS's image (hack/coredns) so installDns() can run it. */
  dns?: boolean;
}

export const COREDNS_MANIFEST = path.join(REPO_ROOT, 'test/e2e/manifests/coredns.yaml');

/** The CoreDNS image archive (make coredns-versions; built by make build). */
async function corednsImageTar(): Promise<string> {
  if (process.env.COREDNS_IMAGE_TAR) return process.env.COREDNS_IMAGE_TAR;
  const { MAKEFLAGS: _f, MFLAGS: _m, MAKELEVEL: _l, ...env } = process.env;
  const r = await run(['make', '-s', '--no-print-directory', '-C', REPO_ROOT, 'coredns-versions'], { env, timeoutMs: 60_000 });
  const tar = /^COREDNS_IMAGE_TAR=(.+)$/m.exec(r.stdout)?.[1];
  if (!tar || !existsSync(tar)) throw new Error(`no CoreDNS image archive (make coredns-versions printed ${JSON.stringify(r.stdout.trim())}); run make build`);
  return tar;
}

export interface KubeNode {
  readonly node: Node;
  readonly runtime: Runtime;
  kubelet: Proc | undefined;
  readonly kubeletLog: string;
}

export class KubeCluster {
  readonly topo: Topology;
  readonly cp: ControlPlane;
  readonly host: Host;
  readonly nodes: KubeNode[];
  readonly work: string;
  readonly bins: K8sBinaries;
  readonly ctrd: ContainerdBinaries;
  readonly #log: Logger;
  readonly #progress: (line: string) => void;
  readonly #procs: Proc[] = [];
  #destroying: Promise<void> | undefined;

  private constructor(p: { topo: Topology; cp: ControlPlane; host: Host; work: string; bins: K8sBinaries; ctrd: ContainerdBinaries; log: Logger; progress: (line: string) => void }) {
    this.topo = p.topo;
    this.cp = p.cp;
    this.host = p.host;
    this.work = p.work;
    this.bins = p.bins;
    this.ctrd = p.ctrd;
    this.#log = p.log;
    this.#progress = p.progress;
    this.nodes = [];
  }

  /** Admin kubeconfig usable from this (the test's) process. */
  get kubeconfig(): string {
    return this.cp.hostKubeconfigPath;
  }

  static async create(opts: KubeClusterOptions): Promise<KubeCluster> {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 8) throw new Error(`KubeCluster: nodes must be an integer from 1 to 8, not ${opts.nodes}`);
    const log = opts.log ?? pino({ level: 'silent' });
    const progress = opts.progress ?? (() => {});
    const [bins, ctrd] = await Promise.all([k8sBinaries({ log }), containerdBinaries({ log })]);
    const work = mkdtempSync(path.join(tmpdir(), `hypha-${opts.name}-`));
    const topo = await Topology.create({ name: opts.name });
    let cp: ControlPlane | undefined;
    let cluster: KubeCluster | undefined;
    try {
      const host = await topo.addControlPlaneHost();
      const nodes: Node[] = [];
      for (let i = 1; i <= opts.nodes; i++) nodes.push(await topo.addNode(`n${i}`));
      progress(`control plane on ${host.ip}: etcd, kube-apiserver ${bins.kubernetesVersion}`);
      cp = await startControlPlane({ netns: host.netns, listenIp: host.ip, workDir: path.join(work, 'control-plane'), binaries: bins, log, withKubelets: true });
      cluster = new KubeCluster({ topo, cp, host, work, bins, ctrd, log, progress });
      await cluster.#startControllers();
      progress(`nodes ${nodes.map((n) => `${n.name} (${n.ip})`).join(', ')}: containerd ${ctrd.containerdVersion}, runc ${ctrd.runcVersion}, kubelet`);
      const images = [ctrd.agnhostImageTar, ctrd.busyboxImageTar, ctrd.dnsutilsImageTar, ...(opts.dns ? [await corednsImageTar()] : []), ...(opts.images ?? [])];
      await Promise.all(nodes.map((n) => cluster!.#startNode(n, images)));
      await cluster.waitFor('every Node registered', async () => {
        const r = await cluster!.kubectl(['get', 'nodes', '-o', 'name'], { allowFail: true });
        return r.code === 0 && nodes.every((n) => r.stdout.includes(`node/${n.name}`));
      }, 90_000);
      return cluster;
    } catch (err) {
      if (cluster) await cluster.destroy();
      else {
        await cp?.stop().catch(() => undefined);
        await topo.destroy();
        rmSync(work, { recursive: true, force: true });
      }
      throw err;
    }
  }

  /** kube-controller-manager and kube-scheduler on the control-plane host, with the admin credentials. */
  async #startControllers(): Promise<void> {
    const kc = this.cp.kubeconfigPath;
    const pki = this.cp.pki;
    const dir = path.join(this.work, 'control-plane');
    const kcm = this.#spawnLogged(this.host, 'kube-controller-manager', [
      this.bins.kubeControllerManager, `--kubeconfig=${kc}`, `--authentication-kubeconfig=${kc}`, `--authorization-kubeconfig=${kc}`,
      `--service-account-private-key-file=${pki.serviceAccountKey}`, `--root-ca-file=${pki.caCert}`,
      '--use-service-account-credentials=true', '--leader-elect=false', '--bind-address=127.0.0.1',
      // Pod CIDRs are Hypha's operator's (cluster-pool IPAM), not the node IPAM controller's.
      '--allocate-node-cidrs=false', `--service-cluster-ip-range=${this.cp.serviceClusterIpRange}`,
      '--controllers=*', '--v=1',
    ], path.join(dir, 'kube-controller-manager.log'));
    const sched = this.#spawnLogged(this.host, 'kube-scheduler', [
      this.bins.kubeScheduler, `--kubeconfig=${kc}`, `--authentication-kubeconfig=${kc}`, `--authorization-kubeconfig=${kc}`,
      '--leader-elect=false', '--bind-address=127.0.0.1', '--v=1',
    ], path.join(dir, 'kube-scheduler.log'));
    this.#procs.push(kcm, sched);
    // The controller manager is up once it made the default ServiceAccount.
    await this.waitFor('kube-controller-manager (the default ServiceAccount)', async () => {
      if (kcm.status !== undefined) throw new Error(`kube-controller-manager exited: ${kcm.stderr.slice(-2000)}`);
      return (await this.kubectl(['get', 'serviceaccount', 'default', '-n', 'default'], { allowFail: true })).code === 0;
    }, 90_000);
  }

  /** A process in a namespace whose output goes to a file (kubelet and the controllers log a lot). */
  #spawnLogged(where: Host | Node, name: string, argv: readonly string[], logPath: string, prefix: readonly string[] = []): Proc {
    return this.topo.spawn(where, [...prefix, 'sh', '-c', 'log=$1; shift; exec "$@" >>"$log" 2>&1', name, logPath, ...argv], { context: `${name} on ${where.name}` });
  }

  async #startNode(node: Node, images: readonly string[]): Promise<void> {
    const runtime = await startContainerd(this.topo, node, {
      workDir: path.join(this.work, 'nodes'), cniBinDirs: ['/opt/cni/bin'], cniConfDir: '/etc/cni/net.d',
      binaries: this.ctrd, log: this.#log, kubeletNode: true,
    });
    const dir = path.join(this.work, 'kubelet', node.name);
    mkdirSync(dir, { recursive: true });
    const kubeNode: KubeNode = { node, runtime, kubelet: undefined, kubeletLog: path.join(dir, 'kubelet.log') };
    this.nodes.push(kubeNode);
    for (const image of images) await runtime.importImage(image);
    const cert = await issueClientCert(this.cp.pki, `kubelet-${node.name}`, `/O=system:nodes/CN=system:node:${node.name}`);
    const kubeconfig = await writeKubeconfig({ path: path.join(dir, 'kubelet.kubeconfig'), server: this.cp.url, caCert: this.cp.caPath, clientCert: cert.cert, clientKey: cert.key, name: node.name });
    // The kubelet's cgroup root, under the runtime's cgroup name in every
    // hierarchy (the runtime's cleanup removes the whole subtree).
    const cgroupRoot = `/${runtime.cgroupName}/kubelet`;
    for (const h of cgroupHierarchies()) mkdirSync(path.join(h.path, cgroupRoot), { recursive: true });
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      cgroupRoot,
      failSwapOn: false,
      containerRuntimeEndpoint: `unix://${runtime.socketPath}`,
      address: node.ip,
      port: 10250,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: 10248,
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: this.cp.caPath } },
      authorization: { mode: 'Webhook' },
      clusterDomain: CLUSTER_DOMAIN,
      clusterDNS: [CLUSTER_DNS],
      resolvConf: '/etc/resolv.conf',
      // A small shared disk: never evict for it, never collect images (nothing can be pulled again).
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '0%', 'nodefs.inodesFree': '0%', 'imagefs.available': '0%' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
      registerNode: true,
      rotateCertificates: false,
      serverTLSBootstrap: false,
      protectKernelDefaults: false,
      makeIPTablesUtilChains: false,
      nodeStatusUpdateFrequency: '4s',
      syncFrequency: '10s',
      fileCheckFrequency: '5s',
      volumePluginDir: '/var/lib/kubelet/volumeplugins',
      maxPods: 110,
    };
    const configPath = path.join(dir, 'kubelet.yaml');
    writeFileSync(configPath, stringify(config));
    this.#progress(`  ${node.name}: kubelet starting`);
    // Inside the runtime's mount namespace (the node's paths), tracked in its
    // cgroup (its cleanup kills the kubelet too).
    kubeNode.kubelet = this.#spawnLogged(node, `kubelet-${node.name}`, [
      'sh', '-c', 'echo $$ > "$1"; shift; exec "$@"', 'kubelet-launcher', runtime.trackProcsPath,
      this.bins.kubelet, `--config=${configPath}`, `--kubeconfig=${kubeconfig}`,
      `--hostname-override=${node.name}`, `--node-ip=${node.ip}`, '--v=1',
    ], kubeNode.kubeletLog, ['nsenter', `--mount=${runtime.mountNsPath}`, `--uts=${runtime.utsNsPath}`, '--']);
  }

  /** A command on a node as its kubelet and DaemonSets see it: the node's netns and mount namespace (its /etc/cni/net.d, /sys/fs/bpf, ...). */
  async nodeExec(name: string, argv: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const kn = this.nodes.find((n) => n.node.name === name);
    if (!kn) throw new Error(`no node ${JSON.stringify(name)} (nodes: ${this.nodes.map((n) => n.node.name).join(', ')})`);
    return this.topo.exec(kn.node, ['nsenter', `--mount=${kn.runtime.mountNsPath}`, '--', ...argv], { allowFail: opts.allowFail ?? false, timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  /** kubectl with the admin kubeconfig, from this process (the API server through the control plane's forwarder). */
  async kubectl(args: readonly string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return run([this.bins.kubectl, `--kubeconfig=${this.kubeconfig}`, `--cache-dir=${path.join(this.work, 'kubectl-cache')}`, ...args], {
      timeoutMs: opts.timeoutMs ?? 60_000, allowFail: opts.allowFail ?? false, ...(opts.input === undefined ? {} : { input: opts.input }), context: `kubectl ${args.slice(0, 3).join(' ')}`,
    });
  }

  async waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms${this.#diagnose()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  #diagnose(): string {
    const dead = this.nodes.filter((n) => n.kubelet?.status !== undefined).map((n) => `kubelet of ${n.node.name} exited (${JSON.stringify(n.kubelet?.status)}), see ${n.kubeletLog}`);
    return dead.length ? `; ${dead.join('; ')}` : '';
  }

  /**
   * Hypha as a user installs it: the hypha-apiserver ConfigMap (the API
   * server's real address: Hypha itself is what makes the kubernetes Service
   * work), then `kubectl apply -k deploy/`; waits until the agent runs on
   * every node, the operator is available and every Node is Ready.
   */
  async installHypha(opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 180_000;
    // Created or left as it is (a reinstall: it is not part of deploy/).
    const cm = await this.kubectl(['-n', 'kube-system', 'create', 'configmap', 'hypha-apiserver', '--dry-run=client', '-o', 'yaml',
      `--from-literal=KUBERNETES_SERVICE_HOST=${this.host.ip}`, '--from-literal=KUBERNETES_SERVICE_PORT=6443']);
    await this.kubectl(['apply', '-f', '-'], { input: cm.stdout });
    this.#progress('kubectl apply -k deploy/');
    await this.kubectl(['apply', '-k', path.join(REPO_ROOT, 'deploy')], { timeoutMs: 120_000 });
    await this.kubectl(['-n', 'kube-system', 'rollout', 'status', 'daemonset/hypha-agent', `--timeout=${Math.round(timeoutMs / 1000)}s`], { timeoutMs: timeoutMs + 10_000 });
    await this.kubectl(['-n', 'kube-system', 'rollout', 'status', 'deployment/hypha-operator', `--timeout=${Math.round(timeoutMs / 1000)}s`], { timeoutMs: timeoutMs + 10_000 });
    await this.kubectl(['wait', '--for=condition=Ready', 'node', '--all', `--timeout=${Math.round(timeoutMs / 1000)}s`], { timeoutMs: timeoutMs + 10_000 });
    await this.routePodCidrsFromControlPlane();
  }

  /**
   * The control-plane host is not a node (no kubelet, no Hypha), yet the API
   * server dials pods (the pods/proxy and services/proxy subresources,
   * webhooks): as a control plane outside the pod network would be, it gets a
   * route to each node's pod CIDR (from its HyphaNode) via that node.
   */
  async routePodCidrsFromControlPlane(): Promise<void> {
    const r = await this.kubectl(['get', 'hyphanodes', '-o', 'jsonpath={range .items[*]}{.metadata.name} {.spec.ipam.podCIDRs[0]}{"\\n"}{end}']);
    for (const line of r.stdout.trim().split('\n')) {
      const [name, cidr] = line.split(' ');
      const node = this.nodes.find((n) => n.node.name === name)?.node;
      if (node && cidr) await this.topo.addRoute(this.host, { to: cidr, via: node.ip });
    }
  }

  /** CoreDNS (test/e2e/manifests/coredns.yaml: the kube-dns Service at CLUSTER_DNS); needs a CNI, so after installHypha(). */
  async installDns(opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    await this.kubectl(['apply', '-f', COREDNS_MANIFEST]);
    await this.kubectl(['-n', 'kube-system', 'rollout', 'status', 'deployment/coredns', `--timeout=${Math.round(timeoutMs / 1000)}s`], { timeoutMs: timeoutMs + 10_000 });
  }

  /** Kubelets first (nothing recreates pods), then each runtime with its pods, the controllers, the control plane, the namespaces. */
  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  async #destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kubelet?.stop({ graceMs: 5000 })));
    await Promise.all(this.nodes.map((n) => n.runtime.stop()));
    await Promise.all(this.#procs.map((p) => p.stop({ graceMs: 3000 })));
    await this.cp.stop().catch(() => undefined);
    await this.topo.destroy();
    if (!process.env.HYPHA_KEEP_WORK) rmSync(this.work, { recursive: true, force: true });
  }
}
