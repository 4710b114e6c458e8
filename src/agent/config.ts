// The agent's configuration file (YAML), validated with ajv. Every error names
// the field and the value: `config: bpf.mapSizes.ct: 0 must be >= 1`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_MAP_SIZES, DEFAULT_PIN_ROOT, type MapSizes } from '../datapath/loader.ts';
import type { ExternalMode } from '../datapath/devices.ts';

export interface AgentConfig {
  node: { name: string; addresses: string[] };
  devices: { external?: string; externalMode: ExternalMode; pods: string[] };
  bpf: { pinRoot: string; mapSizes: MapSizes; loopbackAddress: string; dropEvents: boolean; hostRouting: boolean };
  services: { files: string[] };
  /** Watch the API server (the kube-proxy replacement); absent: standalone, from files. */
  kubernetes?: { kubeconfig?: string; silenceSeconds: number; resyncSeconds: number };
  sync: { resyncSeconds: number; devicesSeconds: number; conntrackGcMaxSeconds: number };
  listen: { address: string; port: number };
  log: { level: string };
}

const ipv4 = '^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$';
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
        pods: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 16 }, default: ['lxc*'] },
      },
    },
    bpf: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        pinRoot: { type: 'string', minLength: 1, default: DEFAULT_PIN_ROOT },
        mapSizes: {
          type: 'object', additionalProperties: false, default: {},
          properties: {
            services: { ...size, default: DEFAULT_MAP_SIZES.services },
            backends: { ...size, default: DEFAULT_MAP_SIZES.backends },
            affinity: { ...size, default: DEFAULT_MAP_SIZES.affinity },
            ct: { ...size, default: DEFAULT_MAP_SIZES.ct },
          },
        },
        loopbackAddress: { type: 'string', pattern: ipv4, default: '169.254.42.1' },
        dropEvents: { type: 'boolean', default: false },
        // Packets between pods of this node go straight from one veth to the
        // other (bpf_redirect_peer), past the node's IP stack and its netfilter.
        hostRouting: { type: 'boolean', default: true },
      },
    },
    services: {
      type: 'object', additionalProperties: false, default: {},
      properties: { files: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] } },
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
        devicesSeconds: { type: 'number', minimum: 0.1, maximum: 3600, default: 1 },
        // Longest pause between conntrack GC passes (busier nodes get shorter ones, down to 1 s).
        conntrackGcMaxSeconds: { type: 'number', minimum: 1, maximum: 3600, default: 60 },
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
  if (e.keyword === 'pattern' && e.schemaPath.includes('addresses')) return `${field}: ${JSON.stringify(value)} is not an IPv4 address`;
  if (e.keyword === 'pattern') return `${field}: ${JSON.stringify(value)} is not an IPv4 address`;
  return `${field}: ${JSON.stringify(value)} ${e.message ?? 'is invalid'}`;
}

/** Validate a parsed document and fill in defaults. `baseDir` resolves relative service files. */
export function parseConfig(data: unknown, baseDir = process.cwd()): AgentConfig {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
  const validate = ajv.compile(schema);
  const copy = structuredClone(data ?? {});
  if (!validate(copy)) {
    const msgs = (validate.errors ?? []).map((e) => describe(e, copy));
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
