// The protocol between the shim (/opt/cni/bin/hypha) and the agent, over the
// agent's UNIX socket: one JSON request per connection, written in full and
// followed by shutdown(SHUT_WR), then one JSON response (docs/cni.md).
//
//   request:  {"command","containerId","netns","ifname","args","path","pid","config"}
//             args is CNI_ARGS as the runtime set it, path is CNI_PATH, config
//             the parsed stdin object.
//   response: {"ok":true,"result":{...}}   (result only for ADD)
//             {"ok":false,"error":{"code","msg","details"}}
//
// Pure: parsing and encoding only.
import { CNI_ERR, CniError } from './errors.ts';
import {
  LATEST_CNI_VERSION,
  parseCniArgs,
  parseCniCommand,
  parseCniPath,
  parseNetConf,
  parseValidAttachments,
  validateContainerId,
  validateIfname,
  type CniCommand,
  type CniVersion,
} from './spec.ts';
import type { CniRequest, GcRequest, NetConf } from './types.ts';

/** Where the agent listens and the shim connects unless the config says otherwise (agentSocket). */
export const DEFAULT_CNI_SOCKET = '/var/run/hypha/cni.sock';

/** Largest request the agent reads (a config with a large prevResult fits many times over). */
export const MAX_REQUEST_BYTES = 1 << 20;

/** The request as it travels (what the shim writes, and what a DEL queue file holds). */
export interface WireRequest {
  command: string;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string;
  pid?: number;
  config: unknown;
}

export type AgentRequest =
  | { command: 'ADD' | 'DEL' | 'CHECK'; cniVersion: CniVersion; req: CniRequest }
  | { command: 'GC'; cniVersion: CniVersion; gc: GcRequest }
  | { command: 'STATUS'; cniVersion: CniVersion; config: NetConf }
  | { command: 'VERSION'; cniVersion: string };

export type AgentResponse =
  | { ok: true; result?: Record<string, unknown> }
  | { ok: false; error: { code: number; msg: string; details?: string } };

const field = (obj: Record<string, unknown>, name: string, env: string, required: boolean): string => {
  const v = obj[name];
  if (v === undefined || v === null || v === '') {
    if (required) throw new CniError(CNI_ERR.INVALID_ENV, `${env} is not set`);
    return '';
  }
  if (typeof v !== 'string') throw new CniError(CNI_ERR.INVALID_ENV, `${env}: request field ${name} must be a string, got ${typeof v}`);
  return v;
};

/** Which commands need which environment (the spec's "required environment parameters"). */
const NEEDS: Record<CniCommand, { attachment: boolean; netns: boolean }> = {
  ADD: { attachment: true, netns: true },
  CHECK: { attachment: true, netns: true },
  DEL: { attachment: true, netns: false },
  GC: { attachment: false, netns: false },
  STATUS: { attachment: false, netns: false },
  VERSION: { attachment: false, netns: false },
};

export interface ParseRequestOptions {
  onWarning?: (msg: string) => void;
}

/**
 * A decoded request, validated: code 4 naming the environment variable, 6/1/7
 * from the network configuration (spec.parseNetConf), 5 for a request that is
 * not shaped like one at all.
 */
export function parseAgentRequest(raw: unknown, opts: ParseRequestOptions = {}): AgentRequest {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(CNI_ERR.IO, 'the request is not a JSON object');
  }
  const obj = raw as Record<string, unknown>;
  const command = parseCniCommand(obj.command);
  if (command === 'VERSION') {
    const v = (obj.config as { cniVersion?: unknown } | undefined)?.cniVersion;
    return { command, cniVersion: typeof v === 'string' ? v : LATEST_CNI_VERSION };
  }
  const config = parseNetConf(obj.config, { command, onWarning: opts.onWarning });
  const cniVersion = config.cniVersion as CniVersion;
  if (command === 'STATUS') return { command, cniVersion, config };
  if (command === 'GC') return { command, cniVersion, gc: { config, validAttachments: parseValidAttachments(config) } };
  const needs = NEEDS[command];
  const containerId = field(obj, 'containerId', 'CNI_CONTAINERID', needs.attachment);
  validateContainerId(containerId);
  const ifname = field(obj, 'ifname', 'CNI_IFNAME', needs.attachment);
  validateIfname(ifname);
  const netns = field(obj, 'netns', 'CNI_NETNS', needs.netns);
  const args = parseCniArgs(field(obj, 'args', 'CNI_ARGS', false));
  const path = parseCniPath(field(obj, 'path', 'CNI_PATH', false));
  const req: CniRequest = { containerId, netns, ifname, args, path, config };
  if (obj.pid !== undefined && obj.pid !== null) {
    if (!Number.isInteger(obj.pid) || (obj.pid as number) <= 0) throw new CniError(CNI_ERR.IO, `request field pid: ${JSON.stringify(obj.pid)} is not a process id`);
    req.pid = obj.pid as number;
  }
  return { command, cniVersion, req };
}

export function okResponse(result?: Record<string, unknown>): AgentResponse {
  return result === undefined ? { ok: true } : { ok: true, result };
}

export function errorResponse(err: CniError): AgentResponse {
  return { ok: false, error: err.details ? { code: err.code, msg: err.message, details: err.details } : { code: err.code, msg: err.message } };
}

/**
 * The DEL queue's file for an attachment: `<containerId>.<ifname>.json`, the
 * ifname percent-encoded except [A-Za-z0-9_-] (so it has no '.', and the name
 * splits one way). The shim (hypha-cni.c, queue_file_name) builds the same name.
 */
export function delQueueFileName(containerId: string, ifname: string): string {
  let enc = '';
  for (const b of Buffer.from(ifname, 'utf8')) {
    const c = String.fromCharCode(b);
    enc += /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return `${containerId}.${enc}.json`;
}
