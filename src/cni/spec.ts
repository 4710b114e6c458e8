// The CNI spec layer: versions, the network configuration a runtime passes on
// stdin, CNI_ARGS, results in each version and the error object. Pure: plain
// data in, plain data (or a CniError naming the field and value) out.
//
// Versions: 0.3.1, 0.4.0, 1.0.0, 1.1.0. What differs between them here:
//   - CHECK exists from 0.4.0, GC and STATUS from 1.1.0. A command the
//     configuration's version does not have is refused with code 1
//     (incompatible version), as libcni's plugin skeleton does; a command no
//     version has is code 4 (invalid CNI_COMMAND).
//   - 0.3.1 and 0.4.0 results carry `version: "4" | "6"` on each ip; 1.0.0
//     dropped it.
//   - 1.1.0 results add route mtu/advmss/priority/table/scope and interface
//     mtu/socketPath/pciID.
import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { CNI_ERR, CniError } from './errors.ts';
import type { CniResult, NetConf } from './types.ts';

export const CNI_VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof CNI_VERSIONS)[number];
export const LATEST_CNI_VERSION: CniVersion = '1.1.0';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** The first version that has each command. */
export const COMMAND_SINCE: Readonly<Record<CniCommand, CniVersion>> = {
  ADD: '0.3.1',
  DEL: '0.3.1',
  VERSION: '0.3.1',
  CHECK: '0.4.0',
  GC: '1.1.0',
  STATUS: '1.1.0',
};

/** CNI_ARGS keys Hypha knows; others are an error unless IgnoreUnknown is set. */
export const KNOWN_CNI_ARGS: readonly string[] = [
  'IgnoreUnknown',
  'K8S_POD_NAMESPACE',
  'K8S_POD_NAME',
  'K8S_POD_INFRA_CONTAINER_ID',
  'K8S_POD_UID',
];

/** Longest container ID accepted (the DEL queue names a file after it). */
export const MAX_CONTAINER_ID_LENGTH = 200;
/** Linux IFNAMSIZ - 1. */
export const MAX_IFNAME_LENGTH = 15;

export function isCniVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (CNI_VERSIONS as readonly string[]).includes(v);
}

export function isCniCommand(c: unknown): c is CniCommand {
  return typeof c === 'string' && (CNI_COMMANDS as readonly string[]).includes(c);
}

/** Compare two supported versions: negative, 0 or positive. */
export function compareVersions(a: CniVersion, b: CniVersion): number {
  return CNI_VERSIONS.indexOf(a) - CNI_VERSIONS.indexOf(b);
}

/** A value for a message: JSON, strings cut at 100 characters. */
const quote = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}...` : v);
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
};

/** The cniVersion of a config, or code 1 naming the value. A missing cniVersion means 0.1.0 (as libcni reads it). */
export function parseCniVersion(v: unknown): CniVersion {
  if (isCniVersion(v)) return v;
  if (v === undefined) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `cniVersion is missing (read as 0.1.0); supported: ${CNI_VERSIONS.join(', ')}`);
  }
  throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `cniVersion ${quote(v)} is not supported; supported: ${CNI_VERSIONS.join(', ')}`);
}

/** A command as given in CNI_COMMAND, or code 4 naming the value. */
export function parseCniCommand(c: unknown): CniCommand {
  if (isCniCommand(c)) return c;
  if (c === undefined || c === '') throw new CniError(CNI_ERR.INVALID_ENV, 'CNI_COMMAND is not set');
  throw new CniError(CNI_ERR.INVALID_ENV, `CNI_COMMAND ${quote(c)} is not one of ${CNI_COMMANDS.join(', ')}`);
}

/** Code 1 when `command` does not exist in `version` (CHECK < 0.4.0, GC and STATUS < 1.1.0). */
export function checkCommandVersion(command: CniCommand, version: CniVersion): void {
  const since = COMMAND_SINCE[command];
  if (compareVersions(version, since) < 0) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `CNI_COMMAND ${command} needs cniVersion ${since} or later; the configuration has cniVersion "${version}"`,
    );
  }
}

// ---------------------------------------------------------------------------
// Environment values

const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** CNI_CONTAINERID: non-empty, alphanumeric first, then alphanumerics, '_', '.', '-'. Code 4. */
export function validateContainerId(id: string): void {
  if (id === '') throw new CniError(CNI_ERR.INVALID_ENV, 'CNI_CONTAINERID is not set');
  if (id.length > MAX_CONTAINER_ID_LENGTH) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_CONTAINERID ${quote(id)} is longer than ${MAX_CONTAINER_ID_LENGTH} characters`);
  }
  if (!CONTAINER_ID_RE.test(id)) {
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `CNI_CONTAINERID ${quote(id)} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'`,
    );
  }
}

/** CNI_IFNAME: a Linux interface name (1-15 bytes, not . or .., no '/', ':' or whitespace). Code 4. */
export function validateIfname(name: string): void {
  if (name === '') throw new CniError(CNI_ERR.INVALID_ENV, 'CNI_IFNAME is not set');
  if (Buffer.byteLength(name) > MAX_IFNAME_LENGTH) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${quote(name)} is longer than ${MAX_IFNAME_LENGTH} bytes`);
  }
  if (name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${quote(name)} is not a valid interface name (no '/', ':', whitespace, '.' or '..')`);
  }
}

const TRUE_WORDS = new Set(['1', 'true']);
const FALSE_WORDS = new Set(['0', 'false']);

/**
 * CNI_ARGS (`K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;IgnoreUnknown=1`) as a record.
 * Empty segments are skipped; a value may contain '='; a repeated key keeps
 * its last value. A key outside `known` is code 4 unless IgnoreUnknown is
 * 1/true (case-insensitive); the record then keeps it too.
 */
export function parseCniArgs(raw: string, known: readonly string[] = KNOWN_CNI_ARGS): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === '') return out;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: ${quote(pair)} is not a KEY=VALUE pair`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  let ignoreUnknown = false;
  const flag = out.IgnoreUnknown;
  if (flag !== undefined) {
    const word = flag.toLowerCase();
    if (TRUE_WORDS.has(word)) ignoreUnknown = true;
    else if (!FALSE_WORDS.has(word)) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: IgnoreUnknown=${quote(flag)} is not 1, true, 0 or false`);
  }
  if (!ignoreUnknown) {
    const unknown = Object.keys(out).filter((k) => !known.includes(k));
    if (unknown.length > 0) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: unknown key ${quote(unknown[0])} (known: ${known.join(', ')}; set IgnoreUnknown=1 to allow others)`);
    }
  }
  return out;
}

/** CNI_PATH as a list of directories. */
export function parseCniPath(raw: string): string[] {
  return raw.split(':').filter((p) => p !== '');
}

// ---------------------------------------------------------------------------
// Schemas (ajv): structure and types; addresses and cross-field rules by hand.

const str = { type: 'string' } as const;
const strList = { type: 'array', items: str } as const;
const uint = { type: 'integer', minimum: 0, maximum: 4294967295 } as const;
const dnsSchema = {
  type: 'object',
  properties: { nameservers: strList, domain: str, search: strList, options: strList },
} as const;

function resultSchema(v: CniVersion): object {
  const legacy = compareVersions(v, '1.0.0') < 0;
  const v11 = compareVersions(v, '1.1.0') >= 0;
  return {
    type: 'object',
    properties: {
      cniVersion: str,
      interfaces: {
        type: ['array', 'null'],
        items: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1 },
            mac: str,
            sandbox: str,
            ...(v11 ? { mtu: uint, socketPath: str, pciID: str } : {}),
          },
        },
      },
      ips: {
        type: ['array', 'null'],
        items: {
          type: 'object',
          required: legacy ? ['version', 'address'] : ['address'],
          properties: {
            ...(legacy ? { version: { enum: ['4', '6'] } } : {}),
            address: str,
            gateway: str,
            interface: uint,
          },
        },
      },
      routes: {
        type: ['array', 'null'],
        items: {
          type: 'object',
          required: ['dst'],
          properties: {
            dst: str,
            gw: str,
            ...(v11 ? { mtu: uint, advmss: uint, priority: uint, table: uint, scope: { type: 'integer', minimum: 0, maximum: 255 } } : {}),
          },
        },
      },
      dns: dnsSchema,
    },
  };
}

const absPath = (max: number): object => ({ type: 'string', minLength: 2, maxLength: max, pattern: '^/' });

const netConfSchema = {
  type: 'object',
  required: ['name', 'type'],
  properties: {
    cniVersion: str,
    name: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
    type: { type: 'string', minLength: 1, pattern: '^[^/\\\\]+$' },
    args: { type: 'object' },
    runtimeConfig: { type: 'object' },
    capabilities: { type: 'object' },
    ipam: { type: 'object', properties: { type: { type: 'string', minLength: 1, pattern: '^[^/\\\\]+$' } } },
    dns: dnsSchema,
    ipMasq: { type: 'boolean' },
    prevResult: { type: 'object' },
    // Hypha's plugin fields, read by the shim (sun_path holds 107 bytes and a NUL).
    agentSocket: absPath(107),
    delQueueDir: absPath(4000),
    agentTimeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
    'cni.dev/valid-attachments': { $ref: '#/$defs/attachments' },
    'cni.dev/attachments': { $ref: '#/$defs/attachments' },
  },
  $defs: {
    attachments: {
      type: ['array', 'null'],
      items: {
        type: 'object',
        required: ['containerID', 'ifname'],
        properties: { containerID: { type: 'string', minLength: 1 }, ifname: { type: 'string', minLength: 1 } },
      },
    },
  },
} as const;

/** What a schema rule means, for the message (keyword -> text). */
const PATTERN_TEXT: Record<string, string> = {
  name: "must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
  type: "must not contain '/' or '\\'",
  'ipam.type': "must not contain '/' or '\\'",
  agentSocket: 'must be an absolute path',
  delQueueDir: 'must be an absolute path',
};

const ajv = new Ajv({ allErrors: true, strict: false });
const validateNetConfSchema = ajv.compile(netConfSchema);
const validateResultSchema = Object.fromEntries(CNI_VERSIONS.map((v) => [v, ajv.compile(resultSchema(v))])) as Record<
  CniVersion,
  ReturnType<typeof ajv.compile>
>;

/** `prevResult.ips[0].address` from ['prevResult', 'ips', '0', 'address']. */
function fieldName(parts: readonly string[]): string {
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

function describe(e: ErrorObject, data: unknown, prefix: readonly string[]): string {
  const parts = e.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let value: unknown = data;
  for (const p of parts) value = (value as Record<string, unknown> | undefined)?.[p];
  const all = [...prefix, ...parts];
  if (e.keyword === 'required') {
    return `${fieldName([...all, (e.params as { missingProperty: string }).missingProperty])} is required`;
  }
  const field = fieldName(all) || '(top level)';
  if (e.keyword === 'pattern') return `${field}: ${quote(value)} ${PATTERN_TEXT[fieldName(parts)] ?? `must match ${e.params.pattern}`}`;
  if (e.keyword === 'enum') return `${field}: ${quote(value)} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((x) => quote(x)).join(', ')}`;
  return `${field}: ${quote(value)} ${e.message ?? 'is invalid'}`;
}

function schemaError(errors: ErrorObject[] | null | undefined, data: unknown, prefix: readonly string[], what: string): CniError {
  const msgs = [...new Set((errors ?? []).map((e) => describe(e, data, prefix)))];
  return new CniError(CNI_ERR.INVALID_CONFIG, `${what}: ${msgs[0] ?? 'invalid'}`, msgs.join('; '));
}

// ---------------------------------------------------------------------------
// Addresses

/** An IP prefix in CIDR notation ("10.0.0.5/24", "fd00::1/64")? */
export function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const family = isIP(s.slice(0, slash));
  const len = s.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(len)) return false;
  return Number(len) <= (family === 4 ? 32 : 128);
}

export function ipFamily(cidrOrIp: string): 4 | 6 | 0 {
  const family = isIP(cidrOrIp.split('/')[0] ?? '');
  return family === 4 || family === 6 ? family : 0;
}

/** Semantic checks on a result-shaped value: addresses, gateways, interface indexes. Returns the problems. */
function resultProblems(r: CniResult, field: string, legacyVersions?: readonly (string | undefined)[]): string[] {
  const problems: string[] = [];
  r.interfaces.forEach((itf, i) => {
    if (typeof itf.name !== 'string' || itf.name === '') problems.push(`${field}.interfaces[${i}].name: ${quote(itf.name)} must be a non-empty string`);
  });
  r.ips.forEach((ip, i) => {
    const f = `${field}.ips[${i}]`;
    if (!isCidr(ip.address)) problems.push(`${f}.address: ${quote(ip.address)} is not an IP address in CIDR notation`);
    if (ip.gateway !== undefined && isIP(ip.gateway) === 0) problems.push(`${f}.gateway: ${quote(ip.gateway)} is not an IP address`);
    if (ip.interface !== undefined && (!Number.isInteger(ip.interface) || ip.interface < 0 || ip.interface >= r.interfaces.length)) {
      problems.push(`${f}.interface: ${quote(ip.interface)} is not an index into interfaces (${r.interfaces.length} entries)`);
    }
    const declared = legacyVersions?.[i];
    if (declared !== undefined && isCidr(ip.address) && declared !== String(ipFamily(ip.address))) {
      problems.push(`${f}.version: ${quote(declared)} does not match address ${quote(ip.address)}`);
    }
  });
  r.routes.forEach((rt, i) => {
    const f = `${field}.routes[${i}]`;
    if (!isCidr(rt.dst)) problems.push(`${f}.dst: ${quote(rt.dst)} is not an IP prefix in CIDR notation`);
    if (rt.gw !== undefined && isIP(rt.gw) === 0) problems.push(`${f}.gw: ${quote(rt.gw)} is not an IP address`);
  });
  return problems;
}

// ---------------------------------------------------------------------------
// Results

/** Interface fields 1.1.0 results have beyond the neutral type (carried through when present). */
interface InterfaceExtras {
  socketPath?: string;
  pciID?: string;
}

const defined = <T extends object>(o: T): T => {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
};

/**
 * A result (prevResult) in `version` as the neutral type, or code 7 naming the
 * field (`prevResult.ips[0].address: "10.0.0.5" is not an IP address in CIDR
 * notation`). A cniVersion inside the value, when supported, takes precedence
 * over `version`. Fields the version does not define are dropped.
 */
export function parsePrevResult(raw: unknown, version: CniVersion, field = 'prevResult'): CniResult {
  const obj = raw as Record<string, unknown>;
  const v = obj !== null && typeof obj === 'object' && isCniVersion(obj.cniVersion) ? obj.cniVersion : version;
  const validate = validateResultSchema[v];
  if (!validate(raw)) throw schemaError(validate.errors, raw, [field], 'invalid network configuration');
  const v11 = compareVersions(v, '1.1.0') >= 0;
  const legacy = compareVersions(v, '1.0.0') < 0;
  type Raw = Record<string, unknown>;
  const list = (x: unknown): Raw[] => (Array.isArray(x) ? (x as Raw[]) : []);
  const result: CniResult = {
    interfaces: list(obj.interfaces).map((i) =>
      defined({
        name: i.name as string,
        mac: i.mac as string | undefined,
        sandbox: i.sandbox as string | undefined,
        ...(v11 ? { mtu: i.mtu as number | undefined, socketPath: i.socketPath as string | undefined, pciID: i.pciID as string | undefined } : {}),
      }),
    ),
    ips: list(obj.ips).map((i) =>
      defined({ address: i.address as string, gateway: i.gateway as string | undefined, interface: i.interface as number | undefined }),
    ),
    routes: list(obj.routes).map((r) =>
      defined({
        dst: r.dst as string,
        gw: r.gw as string | undefined,
        ...(v11
          ? {
              mtu: r.mtu as number | undefined,
              advmss: r.advmss as number | undefined,
              priority: r.priority as number | undefined,
              table: r.table as number | undefined,
              scope: r.scope as number | undefined,
            }
          : {}),
      }),
    ),
  };
  if (obj.dns !== undefined) result.dns = structuredClone(obj.dns) as CniResult['dns'];
  const problems = resultProblems(result, field, legacy ? list(obj.ips).map((i) => i.version as string) : undefined);
  if (problems.length > 0) throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid network configuration: ${problems[0]}`, problems.join('; '));
  return result;
}

/**
 * The neutral result as the ADD result object of `version`. Fields the version
 * does not have are left out. A result the handler got wrong (an address not in
 * CIDR notation, an interface index out of range) is code 5 naming the field.
 */
export function renderResult(result: CniResult, version: CniVersion): Record<string, unknown> {
  const r: CniResult = { interfaces: result.interfaces ?? [], ips: result.ips ?? [], routes: result.routes ?? [], dns: result.dns };
  const problems = resultProblems(r, 'result');
  if (problems.length > 0) throw new CniError(CNI_ERR.IO, `the agent produced an invalid result: ${problems[0]}`, problems.join('; '));
  const legacy = compareVersions(version, '1.0.0') < 0;
  const v11 = compareVersions(version, '1.1.0') >= 0;
  const out: Record<string, unknown> = {
    cniVersion: version,
    interfaces: r.interfaces.map((i) => {
      const x = i as typeof i & InterfaceExtras;
      return defined({
        name: x.name,
        mac: x.mac,
        ...(v11 ? { mtu: x.mtu, socketPath: x.socketPath, pciID: x.pciID } : {}),
        sandbox: x.sandbox,
      });
    }),
    ips: r.ips.map((ip) =>
      defined({
        ...(legacy ? { version: String(ipFamily(ip.address)) } : {}),
        address: ip.address,
        gateway: ip.gateway,
        interface: ip.interface,
      }),
    ),
    routes: r.routes.map((rt) =>
      defined({
        dst: rt.dst,
        gw: rt.gw,
        ...(v11 ? { mtu: rt.mtu, advmss: rt.advmss, priority: rt.priority, table: rt.table, scope: rt.scope } : {}),
      }),
    ),
  };
  if (r.dns !== undefined) {
    const dns = defined({ nameservers: r.dns.nameservers, domain: r.dns.domain, search: r.dns.search, options: r.dns.options });
    if (Object.keys(dns).length > 0) out.dns = dns;
  }
  return out;
}

export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** The error object a plugin prints (details left out when empty). */
export function renderError(err: CniError, version: string): CniErrorObject {
  return err.details ? { cniVersion: version, code: err.code, msg: err.message, details: err.details } : { cniVersion: version, code: err.code, msg: err.message };
}

/** The VERSION result: the asked version echoed, and every supported version. */
export function renderVersion(asked: string = LATEST_CNI_VERSION): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: asked, supportedVersions: [...CNI_VERSIONS] };
}

// ---------------------------------------------------------------------------
// Network configuration

export interface ParseNetConfOptions {
  /** Refuse a command the config's version does not have (code 1). */
  command?: CniCommand;
  /**
   * For DEL an invalid prevResult is dropped (and reported here) instead of
   * failing: DEL must be able to clean up whatever the runtime remembers.
   */
  onWarning?: (msg: string) => void;
}

/**
 * The plugin configuration a runtime passed on stdin (already JSON-decoded),
 * validated: code 6 when it is not an object, 1 for an unsupported cniVersion
 * (or a command that version lacks), 7 naming field and value otherwise. The
 * prevResult, in any supported version, is converted to the neutral type;
 * every other field is passed through unchanged.
 */
export function parseNetConf(raw: unknown, opts: ParseNetConfOptions = {}): NetConf {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(CNI_ERR.DECODE, `the network configuration is not a JSON object (got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw})`);
  }
  const obj = raw as Record<string, unknown>;
  const version = parseCniVersion(obj.cniVersion);
  if (opts.command !== undefined) checkCommandVersion(opts.command, version);
  if (!validateNetConfSchema(obj)) {
    const errs = validateNetConfSchema.errors ?? [];
    // For DEL, problems confined to prevResult are not fatal (handled below).
    const fatal = opts.command === 'DEL' ? errs.filter((e) => !e.instancePath.startsWith('/prevResult')) : errs;
    if (fatal.length > 0) throw schemaError(fatal, obj, [], 'invalid network configuration');
  }
  const conf: NetConf = { ...(structuredClone(obj) as NetConf), cniVersion: version };
  delete conf.prevResult;
  if (obj.prevResult !== undefined) {
    try {
      if (obj.prevResult === null || typeof obj.prevResult !== 'object' || Array.isArray(obj.prevResult)) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid network configuration: prevResult: ${quote(obj.prevResult)} must be object`);
      }
      conf.prevResult = parsePrevResult(obj.prevResult, version);
    } catch (err) {
      if (opts.command !== 'DEL') throw err;
      opts.onWarning?.(`prevResult ignored for DEL: ${(err as Error).message}`);
    }
  }
  return conf;
}

/**
 * GC's list of attachments still in use (`cni.dev/valid-attachments`, or the
 * older `cni.dev/attachments` libcni also sends). null means none. Absent
 * altogether is code 7: a GC without a list would remove everything.
 */
export function parseValidAttachments(conf: NetConf): { containerId: string; ifname: string }[] {
  const raw = conf['cni.dev/valid-attachments'] !== undefined ? conf['cni.dev/valid-attachments'] : conf['cni.dev/attachments'];
  if (raw === undefined) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, 'invalid network configuration: cni.dev/valid-attachments is required for GC');
  }
  if (raw === null) return [];
  return (raw as { containerID: string; ifname: string }[]).map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
}
