// `hypha policy get ns/pod` and `hypha policy trace --from --to --port`: what
// the node's agent enforces, in words, from the very compile it wrote into
// the policy maps (GET /policy/endpoints, GET /policy/trace). With
// `--http 'GET /path' [--header k=v ...] [--host h]` the trace also judges
// that request as the L7 proxy would (src/policy/trace-http.ts, run by the
// agent) and names the rule that decides.
import { isIPv4 } from 'node:net';
import type { PolicyEndpointsDocument, PolicyTraceDocument } from '../agent/policy.ts';
import { parsePortProto } from '../agent/policy.ts';
import { checkHttpProto, parseHttpTraceRequest } from '../policy/trace-http.ts';
import { isTraceInputError } from '../policy/trace.ts';

export interface PolicyGetOptions {
  agent: string;
  json?: boolean;
}

export interface PolicyTraceOptions {
  agent: string;
  from?: string;
  to?: string;
  port?: string;
  /** 'GET /path' */
  http?: string;
  /** NAME=VALUE, repeatable */
  header?: string[];
  host?: string;
  json?: boolean;
}

/** A usage error: the flag and the value, exit code 2. */
function usage(cmd: string, flag: string, value: string | undefined, why: string): never {
  process.stderr.write(`hypha policy ${cmd}: ${flag}: ${value === undefined ? '(missing)' : JSON.stringify(value)} ${why}\n`);
  process.exit(2);
}

function checkPod(cmd: string, flag: string, value: string | undefined, ipAllowed: boolean): string {
  if (value === undefined || value === '') usage(cmd, flag, value, `is required: namespace/pod${ipAllowed ? ' or an IPv4 address' : ''}`);
  if (ipAllowed && isIPv4(value)) return value;
  const parts = value.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) usage(cmd, flag, value, `is not namespace/pod${ipAllowed ? ' or an IPv4 address' : ''}`);
  return value;
}

async function ask<T>(cmd: string, agent: string, path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(new URL(path, agent), { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    process.stderr.write(`hypha policy ${cmd}: the agent is not reachable at ${agent} (${(err as Error).message}); policy is known only to a running agent\n`);
    process.exit(1);
  }
  const body = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (res.status === 400) usage(cmd, 'agent', path, `refused: ${body.error ?? ''}`);
  if (!res.ok) {
    process.stderr.write(`hypha policy ${cmd}: the agent answered ${res.status}${body.error ? `: ${body.error}` : ''}\n`);
    process.exit(1);
  }
  return body;
}

export async function policyGet(pod: string | undefined, o: PolicyGetOptions): Promise<void> {
  const key = checkPod('get', 'pod', pod, false);
  const doc = await ask<PolicyEndpointsDocument>('get', o.agent, `/policy/endpoints?pod=${encodeURIComponent(key)}`);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  if (!doc.enabled || !doc.synced) {
    process.stderr.write(`hypha policy get: the agent enforces no policy yet: ${doc.waiting ?? 'not synced'}\n`);
    process.exit(1);
  }
  const ep = doc.endpoints.find((e) => e.key === key);
  if (!ep) {
    process.stderr.write(`hypha policy get: ${key} is not a pod of this node (policy is enforced by the node a pod runs on: ask its agent)\n`);
    process.exit(1);
  }
  process.stdout.write(`${ep.text.join('\n')}\n`);
}

export async function policyTrace(o: PolicyTraceOptions): Promise<void> {
  const from = checkPod('trace', '--from', o.from, true);
  const to = checkPod('trace', '--to', o.to, true);
  if (o.port === undefined) usage('trace', '--port', o.port, 'is required: PORT/PROTOCOL (e.g. 80/TCP) or ICMP');
  let proto;
  try {
    proto = parsePortProto(o.port, '--port').proto;
  } catch (err) {
    if (isTraceInputError(err)) usage('trace', '--port', o.port, err.message.slice(`${err.field}: ${JSON.stringify(err.value)} `.length));
    throw err;
  }
  const headers = o.header ?? [];
  if (o.http === undefined && headers.length > 0) usage('trace', '--header', headers[0], "needs --http (the request to judge: --http 'GET /path')");
  if (o.http === undefined && o.host !== undefined) usage('trace', '--host', o.host, "needs --http (the request to judge: --http 'GET /path')");
  if (o.http !== undefined) {
    try {
      checkHttpProto(o.http, proto);
      parseHttpTraceRequest(o.http, headers, o.host);
    } catch (err) {
      if (isTraceInputError(err)) usage('trace', `--${err.field}`, String(err.value), err.message.slice(`${err.field}: ${JSON.stringify(err.value)} `.length));
      throw err;
    }
  }
  const q = new URLSearchParams({ from, to, port: o.port });
  if (o.http !== undefined) q.set('http', o.http);
  for (const h of headers) q.append('header', h);
  if (o.host !== undefined) q.set('host', o.host);
  const doc = await ask<PolicyTraceDocument>('trace', o.agent, `/policy/trace?${q}`);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  for (const t of doc.traces) {
    if (t.service) out.push(`${t.frontend} is Service ${t.service}: judged at its backend ${t.backend}`);
    out.push(...t.text.map((l) => (t.service ? `  ${l}` : l)));
    for (const n of t.notes) out.push(`${t.service ? '  ' : ''}  note: ${n}`);
    if (o.http !== undefined && (t as { http?: unknown }).http === undefined && t.result.verdict === 'allowed') {
      out.push(`${t.service ? '  ' : ''}  note: the agent did not judge the HTTP request (an agent without trace --http)`);
    }
  }
  for (const n of doc.notes) out.push(`note: ${n}`);
  if (doc.traces.length > 1) out.push(`verdict over ${doc.traces.length} backends: ${doc.verdict.toUpperCase()}`);
  process.stdout.write(`${out.join('\n')}\n`);
  if (!doc.synced) process.exit(1);
}
