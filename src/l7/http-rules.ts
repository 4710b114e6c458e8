// The `http` list of one port of a HyphaNetworkPolicy rule, read into
// HttpRules (types.ts) with a problem for every field that cannot be, named
// with its value. Pure; the policy normaliser calls it per port.
//
// Failing closed: a rule with a bad field is dropped (it allows nothing), and
// a port whose rules are all dropped keeps an empty list, which allows no
// request, never every request. Only TCP ports can carry HTTP rules: on UDP
// or SCTP the port allows nothing.
//
//   http:
//   - method: GET
//     path: { prefix: /public/ }        # or exact: /x, or regex: /items/[0-9]+
//     host: web.example
//     headers: [{ name: x-token }, { name: x-env, value: prod }]
import { type Problem, problem } from '../services/problems.ts';
import { regexProblem } from './http-match.ts';
import type { HeaderMatch, HttpRule, PathMatch } from './types.ts';

/** RFC 9110 token: what a method or a header name may be made of. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PATH_KINDS = ['exact', 'prefix', 'regex'] as const;

export interface HttpRulesRead {
  /** undefined: the port has no `http` (a plain L3/L4 port). */
  rules?: HttpRule[];
  problems: Problem[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * raw: the port's `http` value; field: its place ('spec.ingress[0].ports[1].http');
 * object: 'HyphaNetworkPolicy ns/name'; policy: 'hnp:ns/name' (HttpRule.policy).
 */
export function readHttpRules(raw: unknown, o: { object: string; field: string; policy: string; protocol: string }): HttpRulesRead {
  const problems: Problem[] = [];
  const bad = (field: string, value: unknown, why: string): void => {
    problems.push(problem(o.object, field, value, why));
  };
  if (raw === undefined || raw === null) return { problems };
  if (!Array.isArray(raw)) {
    bad(o.field, raw, 'is not a list of HTTP rules; the port allows no request');
    return { rules: [], problems };
  }
  if (o.protocol !== 'TCP') {
    bad(o.field, raw, `HTTP rules need protocol TCP, not ${o.protocol}; the port allows nothing`);
    return { rules: [], problems };
  }
  const rules: HttpRule[] = [];
  const dropped = 'this HTTP rule is dropped (it allows nothing)';
  raw.forEach((r, i) => {
    const field = `${o.field}[${i}]`;
    if (!isObj(r)) {
      bad(field, r, `is not an HTTP rule object; ${dropped}`);
      return;
    }
    const rule: HttpRule = { policy: o.policy, rule: field.replace(/^spec\./, '') };
    let ok = true;
    for (const k of Object.keys(r)) {
      if (!['method', 'path', 'host', 'headers'].includes(k)) {
        bad(`${field}.${k}`, r[k], `is not a field of an HTTP rule (method, path, host, headers); ${dropped}`);
        ok = false;
      }
    }
    if (r.method !== undefined) {
      if (typeof r.method !== 'string' || !/^[A-Z]+$/.test(r.method)) {
        bad(`${field}.method`, r.method, `is not an upper-case HTTP method (GET, POST, ...); ${dropped}`);
        ok = false;
      } else rule.method = r.method;
    }
    if (r.path !== undefined) {
      const p = readPath(r.path);
      if (typeof p === 'string') {
        bad(`${field}.path`, r.path, `${p}; ${dropped}`);
        ok = false;
      } else rule.path = p;
    }
    if (r.host !== undefined) {
      if (typeof r.host !== 'string' || r.host === '' || /[\s/:]/.test(r.host)) {
        bad(`${field}.host`, r.host, `is not a host name (no port, scheme or path); ${dropped}`);
        ok = false;
      } else rule.host = r.host.toLowerCase();
    }
    if (r.headers !== undefined) {
      if (!Array.isArray(r.headers)) {
        bad(`${field}.headers`, r.headers, `is not a list of {name, value}; ${dropped}`);
        ok = false;
      } else {
        const headers: HeaderMatch[] = [];
        r.headers.forEach((h, j) => {
          const hf = `${field}.headers[${j}]`;
          if (!isObj(h) || typeof h.name !== 'string' || !TOKEN.test(h.name)) {
            bad(isObj(h) ? `${hf}.name` : hf, isObj(h) ? h.name : h, `is not a header name; ${dropped}`);
            ok = false;
            return;
          }
          if (h.value !== undefined && typeof h.value !== 'string') {
            bad(`${hf}.value`, h.value, `is not a string; ${dropped}`);
            ok = false;
            return;
          }
          headers.push(h.value === undefined ? { name: h.name.toLowerCase() } : { name: h.name.toLowerCase(), value: h.value });
        });
        rule.headers = headers;
      }
    }
    if (ok) rules.push(rule);
  });
  return { rules, problems };
}

function readPath(raw: unknown): PathMatch | string {
  if (!isObj(raw)) return 'is not an object with one of exact, prefix, regex';
  const kinds = PATH_KINDS.filter((k) => raw[k] !== undefined);
  const extra = Object.keys(raw).filter((k) => !(PATH_KINDS as readonly string[]).includes(k));
  if (extra.length > 0) return `has ${extra.join(', ')}, not one of exact, prefix, regex`;
  if (kinds.length !== 1) return `needs exactly one of exact, prefix, regex (has ${kinds.length})`;
  const kind = kinds[0]!;
  const value = raw[kind];
  if (typeof value !== 'string' || value === '') return `${kind} is not a non-empty string`;
  if (kind !== 'regex' && !value.startsWith('/')) return `${kind} does not start with '/'`;
  if (kind === 'regex') {
    const why = regexProblem(value);
    if (why) return `regex is not a valid RE2 pattern: ${why}`;
  }
  return { kind, value };
}
