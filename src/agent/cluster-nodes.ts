// The cluster's nodes as this agent needs them (routes, the ipcache, its own
// pod CIDR), from the API server: HyphaNodes in cluster-pool IPAM (the
// operator writes each one's pod CIDR, each node's agent its addresses), or
// Nodes in kubernetes IPAM (kube-controller-manager writes spec.podCIDRs,
// the kubelet status.addresses). Objects are reduced to plain ClusterNode
// rows as they arrive. This agent also publishes its own addresses on its
// HyphaNode, creating it (owned by its Node) when the operator has not yet.
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { type KubeClient, isAlreadyExists, isNotFound } from '../k8s/client.ts';
import {
  HYPHANODE_API_VERSION, HYPHANODE_KIND, HYPHANODES_PATH, type HyphaNodeObject, type KubeNodeObject,
  hyphaNodePath, hyphaNodesInformerSpec, normalizeHyphaNode, podCidrsOf,
} from '../k8s/hyphanode.ts';
import { type InformerHooks, type InformerStatus, Informer, type ObjectMeta, REPEAT_WARN_MS } from '../k8s/informer.ts';
import type { ClusterNode } from '../nodes/compile.ts';

export interface OwnCidrs {
  cidrs: string[];
  /** Why there are none, or what was left out. */
  problems: string[];
}

export interface ClusterNodesOptions {
  client: KubeClient;
  nodeName: string;
  mode: 'cluster-pool' | 'kubernetes';
  log: Logger;
  hooks?: InformerHooks;
  silenceMs: number;
  resyncMs: number;
  /** The node table changed (after the first complete list, every change). */
  onChange: (nodes: ClusterNode[], own: OwnCidrs) => void;
  /** After a failed publish of this node's addresses, the next try (default 5 s). */
  retryMs?: number;
}

interface KubeNodeWithStatus extends KubeNodeObject {
  status?: { addresses?: { type?: string; address?: string }[] };
}

function internalAddresses(n: KubeNodeWithStatus): string[] {
  const out: string[] = [];
  for (const t of ['InternalIP', 'ExternalIP']) {
    for (const a of n.status?.addresses ?? []) if (a.type === t && a.address && isIPv4(a.address) && !out.includes(a.address)) out.push(a.address);
  }
  return out;
}

export class ClusterNodesSource {
  readonly #o: ClusterNodesOptions;
  readonly #rows = new Map<string, ClusterNode>();
  #own: OwnCidrs = { cidrs: [], problems: ['not listed yet'] };
  #informer: Informer<ObjectMeta> | undefined;
  #synced = false;
  #published = '';
  /** The addresses this node should have on its HyphaNode. */
  #want: string[] = [];
  #publishing: Promise<void> | undefined;

  constructor(opts: ClusterNodesOptions) {
    this.#o = opts;
  }

  get own(): OwnCidrs {
    return this.#own;
  }

  get nodes(): ClusterNode[] {
    return [...this.#rows.values()];
  }

  status(): InformerStatus[] {
    return this.#informer ? [this.#informer.status] : [];
  }

  start(): void {
    const { client, mode, log } = this.#o;
    const spec = mode === 'cluster-pool' ? hyphaNodesInformerSpec() : { resource: 'nodes (all)', path: '/api/v1/nodes' };
    this.#informer = new Informer<ObjectMeta>(client, spec, { log, hooks: this.#o.hooks, silenceMs: this.#o.silenceMs, resyncMs: this.#o.resyncMs });
    this.#informer.start((e) => {
      if (e.type === 'synced') {
        this.#synced = true;
      } else if (e.type === 'delete') {
        this.#rows.delete(e.key);
        if (e.key === this.#o.nodeName) this.#published = '';
        if (e.key === this.#o.nodeName) this.#own = { cidrs: [], problems: [`${mode === 'cluster-pool' ? 'HyphaNode' : 'Node'} ${e.key} was deleted`] };
      } else {
        this.#upsert(e.key, e.obj);
      }
      if (this.#synced) this.#o.onChange(this.nodes, this.#own);
    });
  }

  #upsert(key: string, obj: unknown): void {
    const { mode, nodeName } = this.#o;
    if (mode === 'cluster-pool') {
      const n = normalizeHyphaNode(obj);
      if (!n.value) return;
      const own = podCidrsOf(obj as HyphaNodeObject, 'cluster-pool');
      this.#rows.set(key, { name: n.value.name, addresses: n.value.addresses.map((a) => a.ip), podCIDRs: own.cidrs });
      if (key === nodeName) {
        // Our HyphaNode without our addresses (recreated by the operator,
        // edited by hand): put them back.
        const have = n.value.addresses.map((a) => a.ip);
        if (this.#want.length > 0 && (have.length !== this.#want.length || have.some((a, i) => a !== this.#want[i]))) {
          this.#published = '';
          this.#republish();
        }
        this.#own = { cidrs: own.cidrs, problems: own.cidrs.length > 0 ? [] : [n.value.ipam.operatorError ?? 'the operator has not given this node a pod CIDR yet', ...own.problems.map((p) => p.message)] };
      }
      return;
    }
    const node = obj as KubeNodeWithStatus;
    const own = podCidrsOf(node, 'kubernetes');
    this.#rows.set(key, { name: key, addresses: internalAddresses(node), podCIDRs: own.cidrs });
    if (key === nodeName) this.#own = { cidrs: own.cidrs, problems: own.cidrs.length > 0 ? [] : ['Node spec.podCIDRs is empty (is kube-controller-manager allocating node CIDRs?)', ...own.problems.map((p) => p.message)] };
  }

  #retry: NodeJS.Timeout | undefined;
  /** The last publish failure said at warn level, and when; tries since the last success. */
  #publishError = '';
  #publishWarnedAt = 0;
  #failedPublishes = 0;

  /** This node's addresses: published on its HyphaNode now, again after a
   *  failure (5 s later), and whenever the object turns up without them. */
  setAddresses(addresses: string[]): void {
    // Only cluster-pool nodes have a HyphaNode of their own to keep.
    if (this.#o.mode !== 'cluster-pool') return;
    this.#want = [...addresses];
    this.#republish();
  }

  #republish(): void {
    if (this.#publishing || this.#want.length === 0) return;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const sent = JSON.stringify(this.#want);
    this.#publishing = this.publishAddresses(this.#want)
      .then(() => {
        // Fixed (publishAddresses says so): a failure after this one is said at warn level again.
        this.#failedPublishes = 0;
        this.#publishError = '';
      })
      .catch((err: Error) => {
        // The same failure again (the CRD not installed: a 404 every 5 s)
        // is one warn line, then one every REPEAT_WARN_MS; the tries
        // between are at debug level.
        const now = Date.now();
        const retryMs = this.#o.retryMs ?? 5000;
        const fields = { err: err.message, retrySeconds: retryMs / 1000, attempts: ++this.#failedPublishes };
        if (err.message !== this.#publishError || now - this.#publishWarnedAt >= REPEAT_WARN_MS) {
          this.#publishError = err.message;
          this.#publishWarnedAt = now;
          this.#o.log.warn(fields, 'addresses not published on the HyphaNode; retrying (each attempt at debug level)');
        } else {
          this.#o.log.debug(fields, 'addresses not published on the HyphaNode');
        }
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#republish();
        }, retryMs);
        this.#retry.unref();
      })
      .finally(() => {
        this.#publishing = undefined;
        // Addresses that changed while a publish was in flight.
        if (this.#retry === undefined && JSON.stringify(this.#want) !== sent) this.#republish();
      });
  }

  /** Put this node's addresses on its HyphaNode (spec.addresses), creating
   *  the object owned by the Node if it does not exist yet. Idempotent; the
   *  HyphaNode informer puts them back whenever the object lacks them. */
  async publishAddresses(addresses: string[]): Promise<void> {
    if (this.#o.mode !== 'cluster-pool' || addresses.length === 0) return;
    this.#want = [...addresses];
    const want = addresses.map((ip) => ({ type: 'InternalIP', ip }));
    const wantKey = JSON.stringify(want);
    if (this.#published === wantKey) return;
    const { client, nodeName, log } = this.#o;
    try {
      await client.mergePatch(hyphaNodePath(nodeName), { spec: { addresses: want } });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const node = await client.get<{ metadata?: { uid?: string } }>(`/api/v1/nodes/${encodeURIComponent(nodeName)}`).catch((e: unknown) => {
        if (isNotFound(e)) return undefined;
        throw e;
      });
      const body = {
        apiVersion: HYPHANODE_API_VERSION, kind: HYPHANODE_KIND,
        metadata: {
          name: nodeName,
          ...(node?.metadata?.uid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata.uid }] } : {}),
        },
        spec: { addresses: want },
      };
      try {
        await client.create(HYPHANODES_PATH, body);
        log.info({ node: nodeName }, 'HyphaNode created');
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        await client.mergePatch(hyphaNodePath(nodeName), { spec: { addresses: want } });
      }
    }
    this.#published = wantKey;
    log.info({ node: nodeName, addresses }, 'addresses published on the HyphaNode');
  }

  stop(): void {
    clearTimeout(this.#retry);
    this.#informer?.stop();
  }
}
