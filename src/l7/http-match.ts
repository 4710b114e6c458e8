// L7 HTTP policy, the pure part: the request as the rules see it (its target
// checked and normalised) and the judgement of one request against the
// checks of its flow (src/l7/types.ts says what a check is).
//
// Rules are allow-lists: a request passes when every check passes, a check
// passes when it is 'all' or some rule of it matches, and a flow with no
// checks passes nothing (fail closed).
//
// Paths are matched as sent (raw, percent-encoding kept), without the query.
// A prefix rule ('/public/') must not be escapable by a path that the server
// resolves elsewhere ('/public/../admin'), so targets that a server may
// normalise differently are refused with 400 before any rule is consulted
// (requestProblem): dot-segments ('/./', '/../', a trailing '/.' or '/..',
// also with ';params' as Tomcat reads them: '/..;/'), a backslash (some
// servers take it for '/'), and '%2e', '%2f', '%5c' (and the same
// double-encoded as '%252e' ...) that decode to '.', '/' or '\'. Other
// percent-encoding is not decoded: '/adm%69n' does not match a rule for
// '/admin', which can only refuse more (fail closed), never allow more.
//
// Regular expressions are RE2 (the re2 package: Google's RE2, linear time,
// no backtracking, so a rule cannot be made to take exponential time), whole
// path anchored; no backreferences, no lookaround (RE2 refuses them).
// Each pattern is compiled once per rule object and cached.
import RE2 from 're2';

import type { DirectionCheck, HttpRule, PathMatch } from './types.ts';

/** A request as the rules see it. */
export interface HttpRequestView {
  /** As sent: upper case for the standard methods. */
  method: string;
  /** The path without its query string, as sent (not decoded). */
  path: string;
  /** Lower case, without a port ('' when the request has none). */
  host: string;
  /** Lower-case names; a header sent more than once has its values joined
   *  with ', ' (so a value rule for 'x-role: admin' does not match
   *  'x-role: user, admin' nor the other way round). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface RuleMatch {
  direction: 'ingress' | 'egress';
  endpoint: string;
  /** Absent for an 'all' check. */
  policy?: string;
  rule?: string;
}

/** One interface for both verdicts (callers read the fields they need). */
export interface Judgement {
  verdict: 'allow' | 'deny';
  /** allow: the rule that allowed the request in the first check with http
   *  rules (absent when every check is 'all'); deny: the first check that
   *  refused (absent when there are no checks). */
  direction?: 'ingress' | 'egress';
  endpoint?: string;
  /** allow: that rule's policy; deny: the first of `policies`. */
  policy?: string;
  rule?: string;
  /** deny: the policies of the refusing check's rules, sorted, no repeats. */
  policies?: string[];
  /** allow: one per check, in order. */
  matches?: RuleMatch[];
  /** deny: one line for the 403 body and the log. */
  message?: string;
}

// ---------------------------------------------------------------- regexes

/** Compiled patterns per PathMatch object; null: the pattern does not compile. */
const compiled = new WeakMap<PathMatch, RE2 | null>();

function anchored(pattern: string): RE2 {
  return new RE2(`^(?:${pattern})$`, 'u');
}

/** What RE2 refuses that JS users reach for, said plainly. */
const NOT_RE2 = [
  { re: /\\[1-9]/, why: 'backreferences (\\1) are not RE2' },
  { re: /\\k</, why: 'named backreferences (\\k<name>) are not RE2' },
  { re: /\(\?<?[=!]/, why: 'lookaround ((?=, (?!, (?<=, (?<!) is not RE2' },
];

/** Why pattern is not a usable RE2 path expression, or undefined when it is. */
export function compileRegexProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'an empty regular expression';
  try {
    new RE2(pattern, 'u'); // errors name the pattern as written
    anchored(pattern); // and what only fails anchored (an unclosed \Q swallows the anchor)
    return undefined;
  } catch (err) {
    const hint = NOT_RE2.find((h) => h.re.test(pattern));
    return hint?.why ?? (err as Error).message;
  }
}

/** The same (the name the policy reader imports). */
export const regexProblem = compileRegexProblem;

function regexOf(path: PathMatch): RE2 | null {
  let re = compiled.get(path);
  if (re === undefined) {
    re = compileRegexProblem(path.value) === undefined ? anchored(path.value) : null;
    compiled.set(path, re);
  }
  return re;
}

// ---------------------------------------------------------------- matching

function pathMatches(m: PathMatch, path: string): boolean {
  switch (m.kind) {
    case 'exact': return path === m.value;
    case 'prefix': return path.startsWith(m.value);
    case 'regex': {
      const re = regexOf(m);
      // A pattern that does not compile matches nothing (the compiler reports it).
      return re !== null && re.test(path);
    }
  }
}

/** Every field the rule gives matches the request. */
export function matchRule(rule: HttpRule, req: HttpRequestView): boolean {
  if (rule.method !== undefined && rule.method !== req.method) return false;
  if (rule.host !== undefined && rule.host.toLowerCase() !== req.host) return false;
  if (rule.path !== undefined && !pathMatches(rule.path, req.path)) return false;
  for (const h of rule.headers ?? []) {
    const got = req.headers[h.name.toLowerCase()];
    if (got === undefined) return false;
    if (h.value !== undefined && (Array.isArray(got) ? got.join(', ') : got) !== h.value) return false;
  }
  return true;
}

function policiesOf(check: DirectionCheck): string[] {
  if (check.rules === 'all') return [];
  return [...new Set(check.rules.map((r) => r.policy))].sort();
}

/** The verdict for one request of a flow whose checks are `checks`. */
export function judge(checks: readonly DirectionCheck[], req: HttpRequestView): Judgement {
  if (checks.length === 0) {
    return { verdict: 'deny', policies: [], message: 'no policy allows this flow any more' };
  }
  const matches: RuleMatch[] = [];
  for (const check of checks) {
    if (check.rules === 'all') {
      matches.push({ direction: check.direction, endpoint: check.endpoint });
      continue;
    }
    const rule = check.rules.find((r) => matchRule(r, req));
    if (rule === undefined) {
      const policies = policiesOf(check);
      const what = `${req.method} ${req.host}${req.path}`;
      const consulted = policies.length > 0 ? policies.join(', ') : 'none';
      return {
        verdict: 'deny',
        direction: check.direction,
        endpoint: check.endpoint,
        policies,
        ...(policies[0] !== undefined ? { policy: policies[0] } : {}),
        message: `no http rule allows ${what} (${check.direction} of ${check.endpoint}; policies consulted: ${consulted})`,
      };
    }
    matches.push({ direction: check.direction, endpoint: check.endpoint, policy: rule.policy, rule: rule.rule });
  }
  const first = matches.find((m) => m.policy !== undefined);
  return first === undefined
    ? { verdict: 'allow', matches }
    : { verdict: 'allow', direction: first.direction, endpoint: first.endpoint, policy: first.policy, rule: first.rule, matches };
}

// ---------------------------------------------------------------- targets

export interface RequestTarget {
  /** For the rules: the path without the query. */
  path: string;
  /** What the upstream is sent: origin-form, query kept. */
  originForm: string;
  /** The authority of an absolute-form target, lower case, port stripped
   *  (it stands for the Host header, RFC 9112 3.2.2). */
  authority?: string;
  /** The authority as sent, for the Host header sent upstream. */
  rawAuthority?: string;
}

export interface TargetProblem {
  status: 400 | 403;
  reason: string;
}

/** '%2e', '%2f', '%5c', also double-encoded ('%252e'), in any case. */
const ENCODED_SEPARATOR = /%(?:25)*(?:2e|2f|5c)/i;

/** Why the path would let a server see another path than the rules did. */
export function pathProblem(path: string): string | undefined {
  if (path.includes('\\')) return 'a backslash in the path';
  if (ENCODED_SEPARATOR.test(path)) return "a percent-encoded '.', '/' or '\\' in the path";
  for (const segment of path.split('/')) {
    const bare = segment.split(';', 1)[0];
    if (bare === '.' || bare === '..') return 'a dot segment in the path';
  }
  return undefined;
}

/**
 * The request target checked and made origin-form for the upstream.
 *  - origin-form '/...': kept;
 *  - absolute-form 'http://host[:port]/...': converted to origin-form, its
 *    authority stands for the Host header;
 *  - CONNECT's authority-form and OPTIONS' asterisk-form: 403 (a tunnel, or
 *    a request about no resource, that no http rule can judge);
 *  - anything else (another scheme, userinfo, no path): 400;
 *  - a path a server may resolve differently (pathProblem): 400.
 */
export function parseTarget(method: string, target: string): RequestTarget | TargetProblem {
  if (method === 'CONNECT') return { status: 403, reason: 'CONNECT tunnels are not allowed through the L7 proxy' };
  if (target === '*') return { status: 403, reason: "the asterisk-form target '*' is not allowed through the L7 proxy" };
  let originForm = target;
  let authority: string | undefined;
  let rawAuthority: string | undefined;
  if (!target.startsWith('/')) {
    const m = /^http:\/\/([^/?#]*)(.*)$/i.exec(target);
    if (m === null) return { status: 400, reason: `request target ${JSON.stringify(target.slice(0, 64))} is neither origin-form nor http absolute-form` };
    rawAuthority = m[1] ?? '';
    if (rawAuthority === '' || rawAuthority.includes('@')) return { status: 400, reason: 'absolute-form target without a host, or with userinfo' };
    authority = hostOf(rawAuthority);
    const rest = m[2] ?? '';
    originForm = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
    if (!originForm.startsWith('/')) return { status: 400, reason: 'absolute-form target with a bad path' };
  }
  if (originForm.includes('#')) return { status: 400, reason: 'a fragment in the request target' };
  const q = originForm.indexOf('?');
  const path = q < 0 ? originForm : originForm.slice(0, q);
  const problem = pathProblem(path);
  if (problem !== undefined) return { status: 400, reason: `${problem} (refused: a server could resolve it past a path rule)` };
  return authority === undefined ? { path, originForm } : { path, originForm, authority, rawAuthority };
}

export function isTargetProblem(t: RequestTarget | TargetProblem): t is TargetProblem {
  return 'status' in t;
}

/** Why an origin-form-only target is refused (parseTarget's reason, or not
 *  origin-form), or undefined. */
export function requestTargetProblem(target: string, method = 'GET'): string | undefined {
  const t = parseTarget(method, target);
  if (isTargetProblem(t)) return t.reason;
  return t.authority === undefined ? undefined : `request target ${JSON.stringify(target.slice(0, 64))} is not origin-form ('/path')`;
}

/** The target up to its query or fragment. */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  const h = target.indexOf('#');
  const end = Math.min(q < 0 ? target.length : q, h < 0 ? target.length : h);
  return target.slice(0, end);
}

/** A Host header value (or an authority) without its port, lower case: 'a.b:80' -> 'a.b', '[::1]:80' -> '[::1]'. */
export function hostOf(value: string | undefined): string {
  if (value === undefined) return '';
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    return end < 0 ? v : v.slice(0, end + 1);
  }
  const colon = v.lastIndexOf(':');
  return colon < 0 ? v : v.slice(0, colon);
}
