// Does an HTTP request pass the checks of its flow (src/l7/types.ts)? Pure.
//
// A request passes when every check passes; a check passes when its rules
// are 'all' or one of them matches. No checks at all: refused (fail closed:
// the flow was sent to the proxy, but nothing says what it may do now).
//
// Regular expressions are RE2 syntax in the policy; they run on JS RegExp
// (no RE2 engine is installed here). regexProblem refuses what RE2 refuses
// and JS would take (backreferences, lookaround), so a pattern means the same
// in both; JS RegExp backtracks where RE2 would not, so a pathological
// pattern can be slow (it is the policy author's, never a client's).
import type { DirectionCheck, HttpRule } from './types.ts';

export interface HttpRequestView {
  /** As sent (upper case for the standard methods). */
  method: string;
  /** The path, without the query string. */
  path: string;
  /** Lower case, without a port; '' when absent. */
  host: string;
  /** Names in lower case (Node's req.headers). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface Judgement {
  verdict: 'allow' | 'deny';
  /** allow: the rule that let it through (of the last check that has rules);
   *  deny: the check that refused it. */
  direction?: 'ingress' | 'egress';
  endpoint?: string;
  policy?: string;
  rule?: string;
  /** deny: the policies whose rules were consulted. */
  policies?: string[];
}

const NOT_RE2 = [
  { re: /\\[1-9]/, why: 'backreferences (\\1) are not RE2' },
  { re: /\\k</, why: 'named backreferences (\\k<name>) are not RE2' },
  { re: /\(\?<?[=!]/, why: 'lookaround ((?=, (?!, (?<=, (?<!) is not RE2' },
];

/** Why a pattern cannot be a path regex; undefined when it can. */
export function regexProblem(pattern: string): string | undefined {
  for (const { re, why } of NOT_RE2) if (re.test(pattern)) return why;
  try {
    new RegExp(`^(?:${pattern})$`, 'u');
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

const compiled = new Map<string, RegExp>();
function regexOf(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(`^(?:${pattern})$`, 'u');
    if (compiled.size > 4096) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

/**
 * Why a request target cannot be judged by path rules (a 400), or undefined.
 * Only origin-form ('/...') is taken. Dot segments and percent-encoded '.',
 * '/' or '\' are refused: a server that resolves them would serve a path
 * other than the one a prefix rule judged ('/public/../admin').
 */
export function requestTargetProblem(target: string): string | undefined {
  if (!target.startsWith('/')) return `request target ${JSON.stringify(target.slice(0, 64))} is not origin-form ('/path')`;
  const path = pathOf(target);
  if (/%(2e|2f|5c)/i.test(path)) return `path ${JSON.stringify(path.slice(0, 64))} has a percent-encoded '.', '/' or '\\'`;
  if (/(^|\/)\.\.?(\/|$)/.test(path)) return `path ${JSON.stringify(path.slice(0, 64))} has a dot segment`;
  if (path.includes('\\')) return `path ${JSON.stringify(path.slice(0, 64))} has a backslash`;
  return undefined;
}

export function pathOf(target: string): string {
  const q = target.indexOf('?');
  const h = target.indexOf('#');
  const end = Math.min(q < 0 ? target.length : q, h < 0 ? target.length : h);
  return target.slice(0, end);
}

/** The Host header without its port, lower case. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

export function matchRule(rule: HttpRule, req: HttpRequestView): boolean {
  if (rule.method !== undefined && rule.method !== req.method) return false;
  if (rule.path !== undefined) {
    const p = rule.path;
    if (p.kind === 'exact' && req.path !== p.value) return false;
    if (p.kind === 'prefix' && !req.path.startsWith(p.value)) return false;
    if (p.kind === 'regex' && !regexOf(p.value).test(req.path)) return false;
  }
  if (rule.host !== undefined && rule.host.toLowerCase() !== req.host) return false;
  for (const h of rule.headers ?? []) {
    const v = req.headers[h.name.toLowerCase()];
    if (v === undefined) return false;
    if (h.value !== undefined && !(Array.isArray(v) ? v.includes(h.value) : v === h.value)) return false;
  }
  return true;
}

export function judge(checks: readonly DirectionCheck[], req: HttpRequestView): Judgement {
  if (checks.length === 0) return { verdict: 'deny', policies: [] };
  let last: Judgement = { verdict: 'allow' };
  for (const c of checks) {
    if (c.rules === 'all') continue;
    const hit = c.rules.find((r) => matchRule(r, req));
    if (!hit) {
      return {
        verdict: 'deny', direction: c.direction, endpoint: c.endpoint,
        policies: [...new Set(c.rules.map((r) => r.policy))].sort(),
      };
    }
    last = { verdict: 'allow', direction: c.direction, endpoint: c.endpoint, policy: hit.policy, rule: hit.rule };
  }
  return last;
}
