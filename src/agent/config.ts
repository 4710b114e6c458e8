// The agent's configuration file (YAML), validated with ajv. Every error names
// the field and the value: `config: bpf.mapSizes.ct: 0 must be >= 1`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_PIN_ROOT, type MapSizes } from '../datapath/loader.ts';
import type { ExternalMode } from '../datapath/devices.ts';

export interface CniConfig {
  enabled: boolean;
  /** The agent's socket the plugin talks to (root only). */
  socket: string;
  /** Where the plugin binary is installed ('' = not installed by the agent). */
  binDir: string;
  /** Where the conflist is written once the agent is ready. */
  confDir: string;
  /** Endpoint records (the IPAM's persistent state). */
  stateDir: string;
  /** DELs the plugin queued while the agent was down. */
  delQueueDir: string;
  /** Pod interface MTU; 0: the external device's (minus the tunnel's overhead). */
  mtu: number;
}

export interface RoutingConfig {
  mode: 'native' | 'vxlan';
  vxlan: { vni: number; port: number };
  /** Source-NAT pod traffic leaving the cluster to the node's address. */
  masquerade: boolean;
  /** Also inside the cluster (not masqueraded): the pod pool, the Service range... */
  clusterCIDRs: string[];
  /** Standalone mode (no API server): the other nodes, for routes and the ipcache. */
  nodes: { name: string; addresses: string[]; podCIDRs: string[] }[];
}

export interface AgentConfig {
  node: { name: string; addresses: string[] };
  /** detectExternal: without `external`, pick the device of the default route (detectExternalDevice). */
  devices: { external?: string; externalMode: ExternalMode; detectExternal: boolean };
  bpf: {
    pinRoot: string; mapSizes: Partial<MapSizes>; initialMapSizes: Partial<MapSizes>; mapHighWater: number; conntrackMemoryRatio: number; loopbackAddress: string; dropEvents: boolean; hostRouting: boolean;
    /** Services for the node's own sockets (sock-lb.ts), attached at socketLbCgroup (default: the cgroup v2 root mounted here). */
    socketLb: boolean; socketLbCgroup?: string;
    /** The cluster's NodePort range (the API server's --service-node-port-range). */
    nodePortRange: { min: number; max: number };
    /** The skb->mark bit the programs set on pod packets they handled. */
    mark: number;
  };
  services: {
    files: string[];
    /** allowedCIDRs unset: any ExternalIP is served (kube-proxy's behaviour); set: only those inside. */
    externalIPs: { allowedCIDRs?: string[] };
  };
  /** Watch the API server (the kube-proxy replacement); absent: standalone, from files. */
  kubernetes?: { kubeconfig?: string; silenceSeconds: number; resyncSeconds: number };
  sync: { resyncSeconds: number; conntrackGcMaxSeconds: number };
  cni: CniConfig;
  ipam: { mode: 'cluster-pool' | 'kubernetes' | 'static'; podCIDRs: string[] };
  routing: RoutingConfig;
  listen: { address: string; port: number };
  log: { level: string };
  /** Host settings the agent may change (in its own network namespace). */
  sysctl: { manageRpFilter: boolean };
  /** NetworkPolicy: enforced in the datapath (ConfigFlags.POLICY) and the policy maps kept. */
  policy: { enabled: boolean; podStartWaitSeconds: number; l7: { proxyPort: number } };
}

const ipv4 = '^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$';
const cidr4 = '^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/([0-9]|[12][0-9]|3[0-2])$';
const pathSetting = { type: 'string', minLength: 1 };
const size = { type: 'integer', minimum: 1, maximum: 1 << 26 };

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['node'],
  properties: {
    node: {
      type: 'object', additionalProperties: false, required: ['name'],
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 253 },
        addresses: { type: 'array', items: { type: 'string', pattern: ipv4 }, default: [] },
      },
    },
    devices: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        external: { type: 'string', minLength: 1, maxLength: 15 },
        externalMode: { enum: ['xdp', 'tc', 'auto'], default: 'auto' },
        detectExternal: { type: 'boolean', default: true },
      },
    },
    bpf: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        pinRoot: { type: 'string', minLength: 1, default: DEFAULT_PIN_ROOT },
        // A size set here is fixed: that map never grows (and a pinned map
        // of another size is refused). Unset, the agent sizes the map and
        // grows it online past mapHighWater (src/agent/map-growth.ts).
        mapSizes: {
          type: 'object', additionalProperties: false, default: {},
          properties: { services: size, backends: size, affinity: size, ct: size },
        },
        // Sizes of maps the agent creates (no pin yet) and does not have fixed;
        // conntrack's default comes from the node's memory (conntrackMemoryRatio).
        initialMapSizes: {
          type: 'object', additionalProperties: false, default: {},
          properties: { services: size, backends: size, affinity: size, ct: size },
        },
        mapHighWater: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.8 },
        // Share of the node's memory for the conntrack map when the agent sizes it.
        conntrackMemoryRatio: { type: 'number', exclusiveMinimum: 0, maximum: 0.1, default: 0.0025 },
        loopbackAddress: { type: 'string', pattern: ipv4, default: '169.254.42.1' },
        dropEvents: { type: 'boolean', default: false },
        // Packets between pods of this node go straight from one veth to the
        // other (bpf_redirect_peer), past the node's IP stack and its netfilter.
        hostRouting: { type: 'boolean', default: true },
        socketLb: { type: 'boolean', default: true },
        socketLbCgroup: { type: 'string', minLength: 1 },
        // Source NAT never keeps a client port in this range, and the node's
        // own connections from it are tracked (their replies are not NodePort flows).
        nodePortRange: {
          type: 'object', additionalProperties: false, default: {},
          properties: {
            min: { type: 'integer', minimum: 1, maximum: 65535, default: 30000 },
            max: { type: 'integer', minimum: 1, maximum: 65535, default: 32767 },
          },
        },
        // One bit of skb->mark; pick another if a component on the node owns this one.
        mark: { type: 'integer', minimum: 1, maximum: 0x80000000, default: 0x00400000 },
      },
    },
    services: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        files: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
        // spec.externalIPs is any address a Service's editor writes (CVE-2020-8554):
        // limit it to these prefixes ([] serves none). Unset: any, as kube-proxy does.
        externalIPs: {
          type: 'object', additionalProperties: false, default: {},
          properties: { allowedCIDRs: { type: 'array', items: { type: 'string', pattern: cidr4 } } },
        },
      },
    },
    kubernetes: {
      type: 'object', additionalProperties: false,
      properties: {
        kubeconfig: { type: 'string', minLength: 1 },
        silenceSeconds: { type: 'number', minimum: 5, maximum: 3600, default: 90 },
        resyncSeconds: { type: 'number', minimum: 0, maximum: 86400, default: 600 },
      },
    },
    sync: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        resyncSeconds: { type: 'number', minimum: 1, maximum: 86400, default: 300 },
        // Longest pause between conntrack GC passes (busier nodes get shorter ones, down to 1 s).
        conntrackGcMaxSeconds: { type: 'number', minimum: 1, maximum: 3600, default: 60 },
      },
    },
    cni: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        socket: { ...pathSetting, default: '/var/run/hypha/cni.sock' },
        binDir: { type: 'string', default: '/opt/cni/bin' },
        confDir: { ...pathSetting, default: '/etc/cni/net.d' },
        stateDir: { ...pathSetting, default: '/var/lib/hypha' },
        delQueueDir: { ...pathSetting, default: '/var/lib/hypha/cni-del-queue' },
        mtu: { type: 'integer', minimum: 0, maximum: 65535, default: 0 },
      },
    },
    ipam: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        // cluster-pool: the operator's HyphaNode; kubernetes: Node.spec.podCIDRs; static: podCIDRs below.
        mode: { enum: ['cluster-pool', 'kubernetes', 'static'] },
        podCIDRs: { type: 'array', items: { type: 'string', pattern: cidr4 }, default: [] },
      },
    },
    routing: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        mode: { enum: ['native', 'vxlan'], default: 'native' },
        vxlan: {
          type: 'object', additionalProperties: false, default: {},
          properties: {
            vni: { type: 'integer', minimum: 1, maximum: 16777215, default: 1 },
            port: { type: 'integer', minimum: 1, maximum: 65535, default: 8472 },
          },
        },
        masquerade: { type: 'boolean', default: true },
        clusterCIDRs: { type: 'array', items: { type: 'string', pattern: cidr4 }, default: [] },
        nodes: {
          type: 'array', default: [],
          items: {
            type: 'object', additionalProperties: false, required: ['name', 'addresses'],
            properties: {
              name: { type: 'string', minLength: 1, maxLength: 253 },
              addresses: { type: 'array', minItems: 1, items: { type: 'string', pattern: ipv4 } },
              podCIDRs: { type: 'array', items: { type: 'string', pattern: cidr4 }, default: [] },
            },
          },
        },
      },
    },
    listen: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        address: { type: 'string', default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 9890 },
      },
    },
    log: {
      type: 'object', additionalProperties: false, default: {},
      properties: { level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info' } },
    },
    sysctl: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        // Turn net.ipv4.conf.all.rp_filter off when it is on (the kernel uses
        // the larger of it and a device's value); false: refuse to start instead.
        manageRpFilter: { type: 'boolean', default: true },
      },
    },
    policy: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        // Off: no NetworkPolicy is enforced (the maps are left as they are).
        enabled: { type: 'boolean', default: true },
        // CNI ADD waits up to this long for policy to judge the new pod (its
        // identity allocated, the maps written); the pod is closed both ways
        // until then, and stays closed after a timeout until it happens.
        podStartWaitSeconds: { type: 'number', minimum: 0, maximum: 60, default: 10 },
        // HyphaNetworkPolicy http rules: the agent's transparent proxy
        // listens on 127.0.0.1:proxyPort of the node, and the policy
        // entries carrying http rules send their flows there.
        l7: {
          type: 'object', additionalProperties: false, default: {},
          properties: { proxyPort: { type: 'integer', minimum: 1, maximum: 65535, default: 15001 } },
        },
      },
    },
  },
} as const;

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

function describe(e: ErrorObject, data: unknown): string {
  const parts = e.instancePath.split('/').slice(1);
  let value: unknown = data;
  for (const p of parts) value = (value as Record<string, unknown> | undefined)?.[p];
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return `${[...parts, extra].join('.')}: is not a known setting`;
  }
  if (e.keyword === 'required') {
    return `${[...parts, (e.params as { missingProperty: string }).missingProperty].join('.')}: is required`;
  }
  const field = parts.join('.') || '(top level)';
  if (e.keyword === 'pattern' && (e.params as { pattern: string }).pattern === cidr4) return `${field}: ${JSON.stringify(value)} is not an IPv4 prefix (a.b.c.d/n)`;
  if (e.keyword === 'pattern') return `${field}: ${JSON.stringify(value)} is not an IPv4 address`;
  return `${field}: ${JSON.stringify(value)} ${e.message ?? 'is invalid'}`;
}

/** Validate a parsed document and fill in defaults. `baseDir` resolves relative service files. */
/**
 * Where a DaemonSet's pods learn their node: one config for every node, the
 * name from the environment (the manifest sets it from spec.nodeName).
 */
export const NODE_NAME_ENV = 'HYPHA_NODE_NAME';

export function parseConfig(data: unknown, baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
  const validate = ajv.compile(schema);
  const copy = structuredClone(data ?? {});
  const envName = env[NODE_NAME_ENV];
  if (envName !== undefined && typeof copy === 'object' && copy !== null && !Array.isArray(copy)) {
    const doc = copy as Record<string, unknown>;
    const node = doc.node;
    if (node === undefined) doc.node = { name: envName };
    else if (typeof node === 'object' && node !== null && !Array.isArray(node) && (node as Record<string, unknown>).name === undefined) (node as Record<string, unknown>).name = envName;
  }
  if (!validate(copy)) {
    const msgs = (validate.errors ?? []).map((e) => describe(e, copy)).map((m) => /^node(\.name)?: is required$/.test(m) ? `${m} (or set ${NODE_NAME_ENV}, as the DaemonSet does from spec.nodeName)` : m);
    throw new ConfigError(`config: ${[...new Set(msgs)].join('; ')}`);
  }
  const cfg = copy as unknown as AgentConfig;
  cfg.services.files = cfg.services.files.map((f) => path.resolve(baseDir, f));
  if (cfg.kubernetes && cfg.services.files.length > 0) {
    throw new ConfigError('config: services.files and kubernetes are both set: the agent follows either the API server or files, not both');
  }
  if (!cfg.kubernetes && cfg.services.files.length === 0) {
    throw new ConfigError('config: no source of Services: set kubernetes (watch the API server) or services.files (standalone)');
  }
  if (cfg.kubernetes?.kubeconfig) cfg.kubernetes.kubeconfig = path.resolve(baseDir, cfg.kubernetes.kubeconfig);
  const ipamMode = (cfg.ipam.mode as AgentConfig['ipam']['mode'] | undefined) ?? (cfg.kubernetes ? 'cluster-pool' : 'static');
  cfg.ipam.mode = ipamMode;
  if (ipamMode === 'static' && cfg.cni.enabled && cfg.ipam.podCIDRs.length === 0) {
    throw new ConfigError('config: ipam.podCIDRs: is required with ipam.mode static (and without kubernetes the mode is static)');
  }
  if (ipamMode !== 'static' && cfg.ipam.podCIDRs.length > 0) {
    throw new ConfigError(`config: ipam.podCIDRs: is only for ipam.mode static; with ${ipamMode} the pod CIDR comes from ${ipamMode === 'kubernetes' ? 'Node.spec.podCIDRs' : 'the operator (HyphaNode spec.ipam.podCIDRs)'}`);
  }
  const np = cfg.bpf.nodePortRange;
  if (np.min > np.max) throw new ConfigError(`config: bpf.nodePortRange: min ${np.min} is above max ${np.max}`);
  if ((cfg.bpf.mark & (cfg.bpf.mark - 1)) !== 0) {
    throw new ConfigError(`config: bpf.mark: 0x${cfg.bpf.mark.toString(16)} must be a single bit (one of 0x1 ... 0x80000000)`);
  }
  if (ipamMode !== 'static' && !cfg.kubernetes) throw new ConfigError(`config: ipam.mode: ${JSON.stringify(ipamMode)} needs kubernetes (the pod CIDR is read from the API server)`);
  for (const k of ['socket', 'binDir', 'confDir', 'stateDir', 'delQueueDir'] as const) if (cfg.cni[k]) cfg.cni[k] = path.resolve(baseDir, cfg.cni[k]);
  return cfg;
}

export function loadConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config ${file}: cannot be read: ${(err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config ${file}: is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseConfig(data, path.dirname(path.resolve(file)));
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(err.message.replace(/^config:/, `config ${file}:`), { cause: err });
    throw err;
  }
}
