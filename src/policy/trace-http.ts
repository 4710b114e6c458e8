// `hypha policy trace --http 'GET /path' [--header k=v ...] [--host h]`, the
// pure part: one HTTP request judged the way the L7 proxy judges it, on a
// flow that trace() already judged at L3/L4. The flow's L7 checks come from
// the same compile (l7ChecksFor), the verdict from the proxy's own judge(),
// so the trace and the proxy cannot disagree; the rule that decides is named
// ('hnp:x/web ingress[0].ports[0].http[1]'), or why none does.
//
//   not-reached  L3/L4 denies the flow: no request gets as far as HTTP
//   plain        no check carries http rules: the datapath does not send the
//                flow to the proxy, every request passes
//   bad-request  the proxy answers 400 before any rule: CONNECT, or a target
//                a server could resolve past a path rule (dot segments,
//                encoded separators)
//
// Without --host (or a host header) the request carries the address
// connected to as its Host, as an HTTP client sends it.
//   allowed      every check passes ('all', or a rule matches)
//   denied       a check with http rules has none that matches: 403
//
// Only the node's own checks are seen: a direction judged at a pod of
// another node is judged by that node's proxy (trace() notes it).
import type { HttpRequestView } from '../l7/http-match.ts';
import { hostOf, judge, matchRule, pathOf, requestTargetProblem } from '../l7/http-match.ts';
import type { DirectionCheck, HttpRule } from '../l7/types.ts';
import type { CompiledPolicy } from './compile.ts';
import { l7ChecksFor, type L7Party } from './l7.ts';
import { type ResolvedParty, type TraceProto, type TraceResult, TraceInputError } from './trace.ts';

/** The request to judge: what --http, --header and --host say. */
export interface HttpTraceRequest {
  method: string;
  /** As given ('/api?x=1'). */
  target: string;
  /** Without the query, as the rules see it. */
  path: string;
  /** Lower case, without a port ('' when none was given). */
  host: string;
  /** Lower-case names; a name given twice has its values joined with ', '. */
  headers: Record<string, string>;
}

export type HttpVerdict = 'not-reached' | 'plain' | 'bad-request' | 'allowed' | 'denied';

/** One rule of a refusing check and the first of its fields that does not match. */
export interface RuleMiss {
  policy: string;
  rule: string;
  /** The rule in words: 'GET, path prefix /api/'. */
  what: string;
  why: string;
}

export interface HttpCheckTrace {
  direction: 'ingress' | 'egress';
  endpoint: string;
  /** all: a plain L3/L4 allow covers the flow in this direction. */
  verdict: 'all' | 'allowed' | 'denied';
  /** allowed: the first rule that matches. */
  policy?: string;
  rule?: string;
  what?: string;
  /** denied: every rule consulted and why it does not match. */
  misses?: RuleMiss[];
}

export interface HttpTrace {
  request: { method: string; path: string; host: string; headers: Record<string, string> };
  verdict: HttpVerdict;
  /** The proxy's own answer: 403 (denied) or 400 (bad-request). */
  status?: 400 | 403;
  /** The deciding rule of an allowed request (absent when every check is 'all'). */
  policy?: string;
  rule?: string;
  /** not-reached, bad-request, denied: why, in words. */
  reason?: string;
  checks: HttpCheckTrace[];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const METHOD = /^[A-Z][A-Z-]*$/;

/** --http 'METHOD /path' (an 'HTTP/1.1' after it is allowed), --header
 *  NAME=VALUE (repeatable), --host. Bad input: a TraceInputError naming
 *  the field and the value. */
export function parseHttpTraceRequest(http: string, headers: readonly string[] = [], host?: string): HttpTraceRequest {
  const m = /^\s*(\S+)\s+(\S+)(?:\s+HTTP\/1\.[01])?\s*$/.exec(http);
  if (!m) throw new TraceInputError('http', http, "is not 'METHOD /path' (e.g. 'GET /api/v1')");
  const method = m[1]!;
  const target = m[2]!;
  if (!METHOD.test(method)) throw new TraceInputError('http', http, `has method ${JSON.stringify(method)}: methods are upper case (GET, POST, ...), as the proxy compares them`);
  if (!target.startsWith('/')) throw new TraceInputError('http', http, `has target ${JSON.stringify(target)}, not a path starting with '/'`);
  const out: Record<string, string> = {};
  for (const h of headers) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new TraceInputError('header', h, 'is not NAME=VALUE (e.g. x-env=prod)');
    const name = h.slice(0, eq).trim();
    const value = h.slice(eq + 1).trim();
    if (!TOKEN.test(name)) throw new TraceInputError('header', h, `has name ${JSON.stringify(name)}, which is not an HTTP header name`);
    if (/[\r\n\0]/.test(value)) throw new TraceInputError('header', h, 'has a line break or NUL in its value');
    const key = name.toLowerCase();
    out[key] = out[key] === undefined ? value : `${out[key]}, ${value}`;
  }
  if (host !== undefined) {
    if (out.host !== undefined) throw new TraceInputError('host', host, `is given twice: also as --header host=${out.host}`);
    if (host.trim() === '' || /[\s/]/.test(host.trim())) throw new TraceInputError('host', host, 'is not a host name (e.g. web.example or web.example:8080)');
    out.host = host.trim();
  }
  return { method, target, path: pathOf(target), host: hostOf(out.host), headers: out };
}

/** The http part of GET /policy/trace: http=, header= (repeated), host=.
 *  Undefined when http= is absent (header= or host= alone is refused). */
export function httpTraceQuery(q: URLSearchParams, proto: TraceProto): HttpTraceRequest | undefined {
  const http = q.get('http');
  const headers = q.getAll('header');
  const host = q.get('host') ?? undefined;
  if (http === null) {
    if (headers.length > 0) throw new TraceInputError('header', headers[0], 'needs http (the request to judge: http=GET /path)');
    if (host !== undefined) throw new TraceInputError('host', host, 'needs http (the request to judge: http=GET /path)');
    return undefined;
  }
  checkHttpProto(http, proto);
  return parseHttpTraceRequest(http, headers, host);
}

/** HTTP rules judge TCP flows only. */
export function checkHttpProto(http: string, proto: TraceProto): void {
  if (proto !== 'TCP') throw new TraceInputError('http', http, `needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not ${proto}`);
}

function l7Party(p: ResolvedParty): L7Party {
  return { ip: p.address ?? '', identity: p.identity, ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}) };
}

/** 'hnp:x/web ingress[0].ports[0].http[1]' */
export function ruleName(policy: string, rule: string | undefined): string {
  return rule === undefined ? policy : `${policy} ${rule}`;
}

function pathText(r: HttpRule): string | undefined {
  if (!r.path) return undefined;
  return `path ${r.path.kind} ${r.path.value}`;
}

/** The rule's conditions in words: 'GET, path prefix /api/, host web.x, header x-env: prod'. */
export function ruleText(r: HttpRule): string {
  const parts = [r.method, pathText(r), r.host !== undefined ? `host ${r.host}` : undefined,
    ...(r.headers ?? []).map((h) => `header ${h.name}${h.value !== undefined ? `: ${h.value}` : ' present'}`)].filter((x) => x !== undefined);
  return parts.length > 0 ? parts.join(', ') : 'any request';
}

/** The first field of the rule the request fails, each judged by matchRule itself. */
function whyNot(r: HttpRule, req: HttpRequestView): string {
  const only = (part: Partial<HttpRule>): boolean => matchRule({ policy: r.policy, rule: r.rule, ...part }, req);
  if (r.method !== undefined && !only({ method: r.method })) return `method is ${req.method}`;
  if (r.host !== undefined && !only({ host: r.host })) return req.host === '' ? 'no host' : `host is ${req.host}`;
  if (r.path !== undefined && !only({ path: r.path })) return `path is ${req.path}`;
  for (const h of r.headers ?? []) {
    if (only({ headers: [h] })) continue;
    const got = req.headers[h.name.toLowerCase()];
    return got === undefined ? `no header ${h.name.toLowerCase()}` : `header ${h.name.toLowerCase()} is ${JSON.stringify(got)}`;
  }
  return 'does not match';
}

function checkTrace(c: DirectionCheck, req: HttpRequestView): HttpCheckTrace {
  const base = { direction: c.direction, endpoint: c.endpoint };
  if (c.rules === 'all') return { ...base, verdict: 'all' };
  const hit = c.rules.find((r) => matchRule(r, req));
  if (hit) return { ...base, verdict: 'allowed', policy: hit.policy, rule: hit.rule, what: ruleText(hit) };
  return { ...base, verdict: 'denied', misses: c.rules.map((r) => ({ policy: r.policy, rule: r.rule, what: ruleText(r), why: whyNot(r, req) })) };
}

/** The request judged on the traced flow (its backend, for a Service). */
export function traceHttp(compiled: CompiledPolicy, r: TraceResult, given: HttpTraceRequest): HttpTrace {
  // no host given: the address connected to, as a client sends it
  const req = given.host === '' && r.to.address ? { ...given, host: hostOf(r.to.address), headers: { ...given.headers, host: r.to.address } } : given;
  const request = { method: req.method, path: req.path, host: req.host, headers: req.headers };
  if (r.proto !== 'TCP' || r.port === undefined) {
    throw new TraceInputError('http', `${req.method} ${req.target}`, `needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not ${r.proto}`);
  }
  if (r.verdict === 'denied') {
    return { request, verdict: 'not-reached', reason: 'the connection is denied at L3/L4: no request is sent', checks: [] };
  }
  const checks = l7ChecksFor(compiled, { src: l7Party(r.from), dst: l7Party(r.to), proto: 'TCP', port: r.port });
  if (checks.every((c) => c.rules === 'all')) {
    return { request, verdict: 'plain', checks: checks.map((c) => ({ direction: c.direction, endpoint: c.endpoint, verdict: 'all' })) };
  }
  const view: HttpRequestView = { method: req.method, path: req.path, host: req.host, headers: req.headers };
  const traced = checks.map((c) => checkTrace(c, view));
  const problem = req.method === 'CONNECT'
    ? 'CONNECT is not passed on (only origin-form requests are)'
    : req.host === '' ? "no Host header: Node's HTTP/1.1 parser answers 400 before any rule (give --host)" : requestTargetProblem(req.target, req.method);
  if (problem !== undefined) return { request, verdict: 'bad-request', status: 400, reason: problem, checks: traced };
  const j = judge(checks, view);
  if (j.verdict === 'deny') return { request, verdict: 'denied', status: 403, reason: j.message ?? 'no rule allows it', checks: traced };
  return { request, verdict: 'allowed', ...(j.policy !== undefined ? { policy: j.policy } : {}), ...(j.rule !== undefined ? { rule: j.rule } : {}), checks: traced };
}

const WHERE = { egress: 'egress at the source', ingress: 'ingress at the destination' } as const;

/** The trace as lines, indented to sit under formatTrace's lines. */
export function formatHttpTrace(t: HttpTrace): string[] {
  const req = `HTTP ${t.request.method} ${t.request.host}${t.request.path}`;
  const lines: string[] = [];
  switch (t.verdict) {
    case 'not-reached':
      return [`  ${req}: not judged: ${t.reason}`];
    case 'plain':
      lines.push(`  ${req}: ALLOWED: no http rule covers this flow (not sent to the L7 proxy: every request passes)`);
      break;
    case 'bad-request':
      lines.push(`  ${req}: the L7 proxy answers 400: ${t.reason}`);
      break;
    case 'denied':
      lines.push(`  ${req}: DENIED: the L7 proxy answers 403 (no rule allows it)`);
      break;
    case 'allowed':
      lines.push(`  ${req}: ALLOWED${t.policy !== undefined ? ` by ${ruleName(t.policy, t.rule)}` : ': plain L3/L4 allows (every request)'}`);
      break;
  }
  for (const c of t.checks) {
    const at = `    ${WHERE[c.direction]} (${c.endpoint})`;
    if (c.verdict === 'all') lines.push(`${at}: a plain L3/L4 allow: every request passes`);
    else if (c.verdict === 'allowed') lines.push(`${at}: allowed by ${ruleName(c.policy!, c.rule)} (${c.what})`);
    else {
      const misses = c.misses ?? [];
      const policies = [...new Set(misses.map((m) => m.policy))].sort();
      lines.push(`${at}: no rule allows it${policies.length > 0 ? ` (policies consulted: ${policies.join(', ')})` : ': the port\'s http rules all failed to compile (fail closed)'}`);
      for (const m of misses) lines.push(`      ${ruleName(m.policy, m.rule)} (${m.what}): ${m.why}`);
    }
  }
  return lines;
}
