// The operator's configuration file (YAML), validated with ajv and then for
// what a schema cannot say (CIDRs, leader-election timings). Every error
// names the field and the value:
//   config operator.yaml: ipam.clusterPool.cidrs[0]: "10.244.0.1/16" has host bits set (the network is 10.244.0.0/16)
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import type { IpamMode } from '../k8s/hyphanode.ts';
import { IpamPool, type PoolConfig, isIpamError } from './ipam-pool.ts';
import { LEADER_ELECTION_DEFAULTS, leaderElectionProblem } from './leader.ts';

export interface OperatorConfig {
  /** Where the API server is; without kubeconfig, the pod's service account. */
  kubernetes: { kubeconfig?: string; silenceSeconds: number; resyncSeconds: number };
  ipam: { mode: IpamMode; clusterPool?: PoolConfig };
  leaderElection: {
    namespace: string;
    name: string;
    identity: string;
    leaseDurationSeconds: number;
    renewDeadlineSeconds: number;
    retryPeriodSeconds: number;
  };
  /** resyncSeconds: a full reconcile pass this often, whatever the watches say. */
  sync: { resyncSeconds: number };
  /** The identity collector: identities no pod has used for graceSeconds are deleted (checked every intervalSeconds). */
  identity: { gc: { graceSeconds: number; intervalSeconds: number } };
  listen: { address: string; port: number };
  log: { level: string };
}

const dnsLabel = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const dnsSubdomain = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['ipam'],
  properties: {
    kubernetes: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        kubeconfig: { type: 'string', minLength: 1 },
        silenceSeconds: { type: 'number', minimum: 5, maximum: 3600, default: 90 },
        resyncSeconds: { type: 'number', minimum: 0, maximum: 86400, default: 600 },
      },
    },
    ipam: {
      type: 'object', additionalProperties: false, required: ['mode'],
      properties: {
        mode: { enum: ['cluster-pool', 'kubernetes'] },
        clusterPool: {
          type: 'object', additionalProperties: false, required: ['cidrs'],
          properties: {
            cidrs: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string' } },
            maskSize: { type: 'integer', default: 24 },
          },
        },
      },
    },
    leaderElection: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        namespace: { type: 'string', maxLength: 63, pattern: dnsLabel, default: 'kube-system' },
        name: { type: 'string', maxLength: 253, pattern: dnsSubdomain, default: 'hypha-operator' },
        identity: { type: 'string', minLength: 1, maxLength: 253 },
        leaseDurationSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: LEADER_ELECTION_DEFAULTS.leaseDurationSeconds },
        renewDeadlineSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600, default: LEADER_ELECTION_DEFAULTS.renewDeadlineMs / 1000 },
        retryPeriodSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600, default: LEADER_ELECTION_DEFAULTS.retryPeriodMs / 1000 },
      },
    },
    sync: {
      type: 'object', additionalProperties: false, default: {},
      properties: { resyncSeconds: { type: 'number', minimum: 1, maximum: 86400, default: 300 } },
    },
    identity: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        gc: {
          type: 'object', additionalProperties: false, default: {},
          properties: {
            graceSeconds: { type: 'number', minimum: 1, maximum: 7 * 86400, default: 900 },
            intervalSeconds: { type: 'number', minimum: 0.1, maximum: 3600, default: 60 },
          },
        },
      },
    },
    listen: {
      type: 'object', additionalProperties: false, default: {},
      properties: {
        address: { type: 'string', minLength: 1, default: '0.0.0.0' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 9891 },
      },
    },
    log: {
      type: 'object', additionalProperties: false, default: {},
      properties: { level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info' } },
    },
  },
} as const;

export class OperatorConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'OperatorConfigError';
  }
}

export function isOperatorConfigError(err: unknown): err is OperatorConfigError {
  return err instanceof OperatorConfigError;
}

/** 'ipam.clusterPool.cidrs[0]' from ['ipam', 'clusterPool', 'cidrs', '0'] */
function fieldName(parts: readonly string[]): string {
  return parts.reduce((s, p) => (/^\d+$/.test(p) ? `${s}[${p}]` : s ? `${s}.${p}` : p), '');
}

function describe(e: ErrorObject, data: unknown): string {
  const parts = e.instancePath.split('/').slice(1);
  let value: unknown = data;
  for (const p of parts) value = (value as Record<string, unknown> | undefined)?.[p];
  if (e.keyword === 'additionalProperties') {
    return `${fieldName([...parts, (e.params as { additionalProperty: string }).additionalProperty])}: is not a known setting`;
  }
  if (e.keyword === 'required') return `${fieldName([...parts, (e.params as { missingProperty: string }).missingProperty])}: is required`;
  const field = fieldName(parts) || '(top level)';
  if (e.keyword === 'enum') return `${field}: ${JSON.stringify(value)} is not one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  if (e.keyword === 'pattern') return `${field}: ${JSON.stringify(value)} is not a valid Kubernetes name (lowercase letters, digits and '-')`;
  return `${field}: ${JSON.stringify(value)} ${e.message ?? 'is invalid'}`;
}

export interface ParseOptions {
  /** Resolves a relative kubeconfig path (default: the working directory). */
  baseDir?: string;
  /** leaderElection.identity when the file sets none (default: hostname plus a random suffix). */
  defaultIdentity?: string;
}

/** Validate a parsed document and fill in defaults. */
export function parseOperatorConfig(data: unknown, opts: ParseOptions = {}): OperatorConfig {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
  const validate = ajv.compile(schema);
  const copy = structuredClone(data ?? {});
  if (!validate(copy)) {
    const msgs = (validate.errors ?? []).map((e) => describe(e, copy));
    throw new OperatorConfigError(`config: ${[...new Set(msgs)].join('; ')}`);
  }
  const cfg = copy as unknown as OperatorConfig;
  const { ipam, leaderElection: le } = cfg;
  if (ipam.mode === 'cluster-pool') {
    if (!ipam.clusterPool) throw new OperatorConfigError('config: ipam.clusterPool: is required when ipam.mode is "cluster-pool"');
    try {
      new IpamPool(ipam.clusterPool);
    } catch (err) {
      if (isIpamError(err, 'E_IPAM_CONFIG')) throw new OperatorConfigError(`config: ipam.clusterPool.${err.message}`, { cause: err });
      throw err;
    }
  } else if (ipam.clusterPool) {
    throw new OperatorConfigError(`config: ipam.clusterPool: is set, but ipam.mode is ${JSON.stringify(ipam.mode)} (Kubernetes allocates the pod CIDRs): remove one`);
  }
  const timing = leaderElectionProblem({ leaseDurationSeconds: le.leaseDurationSeconds, renewDeadlineMs: le.renewDeadlineSeconds * 1000, retryPeriodMs: le.retryPeriodSeconds * 1000 });
  if (timing) throw new OperatorConfigError(`config: leaderElection.${timing}`);
  // The Deployment names each replica by its pod (HYPHA_OPERATOR_IDENTITY from metadata.name).
  le.identity ??= opts.defaultIdentity ?? (process.env.HYPHA_OPERATOR_IDENTITY || `${hostname()}_${randomBytes(4).toString('hex')}`);
  if (cfg.kubernetes.kubeconfig) cfg.kubernetes.kubeconfig = path.resolve(opts.baseDir ?? process.cwd(), cfg.kubernetes.kubeconfig);
  return cfg;
}

export function loadOperatorConfig(file: string, opts: Omit<ParseOptions, 'baseDir'> = {}): OperatorConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OperatorConfigError(`config ${file}: cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new OperatorConfigError(`config ${file}: is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseOperatorConfig(data, { ...opts, baseDir: path.dirname(path.resolve(file)) });
  } catch (err) {
    if (err instanceof OperatorConfigError) throw new OperatorConfigError(err.message.replace(/^config:/, `config ${file}:`), { cause: err });
    throw err;
  }
}
