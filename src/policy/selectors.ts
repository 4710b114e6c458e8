// Label selectors (metav1.LabelSelector): reading one from an object with
// the API server's validation, and matching labels against it.
//  - matchLabels and matchExpressions are ANDed; an empty selector matches all;
//  - In: the label is present with one of the values; NotIn: absent, or
//    present with none of them; Exists / DoesNotExist: presence only;
//  - In and NotIn need values, Exists and DoesNotExist take none.
import type { LabelRequirement, LabelSelector, SelectorOperator } from './model.ts';

export interface FieldProblem {
  field: string;
  value: unknown;
  why: string;
}

const NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

/** Why `key` is not a valid label key (a qualified name), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return 'is not a valid label key: the prefix must be a DNS subdomain (lowercase, at most 253 characters)';
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return 'is not a valid label key: the name must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric';
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !NAME.test(value)) {
    return 'is not a valid label value: at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric';
  }
  return undefined;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a selector at `field`. Any problem makes the whole selector
 *  unreadable (selector undefined): the caller decides what fails closed. */
export function parseSelector(raw: unknown, field: string): { selector?: LabelSelector; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const bad = (f: string, value: unknown, why: string): void => {
    problems.push({ field: f, value, why });
  };
  if (!isObj(raw)) {
    bad(field, raw, 'is not a label selector (an object with matchLabels and/or matchExpressions)');
    return { problems };
  }
  const matchLabels: Record<string, string> = {};
  if (raw.matchLabels !== undefined && raw.matchLabels !== null) {
    if (!isObj(raw.matchLabels)) {
      bad(`${field}.matchLabels`, raw.matchLabels, 'is not a map of label keys to values');
    } else {
      for (const [k, v] of Object.entries(raw.matchLabels)) {
        const kp = labelKeyProblem(k);
        if (kp) bad(`${field}.matchLabels`, k, kp);
        else if (typeof v !== 'string') bad(`${field}.matchLabels[${JSON.stringify(k)}]`, v, 'is not a string');
        else {
          const vp = labelValueProblem(v);
          if (vp) bad(`${field}.matchLabels[${JSON.stringify(k)}]`, v, vp);
          else matchLabels[k] = v;
        }
      }
    }
  }
  const matchExpressions: LabelRequirement[] = [];
  if (raw.matchExpressions !== undefined && raw.matchExpressions !== null) {
    if (!Array.isArray(raw.matchExpressions)) {
      bad(`${field}.matchExpressions`, raw.matchExpressions, 'is not a list');
    } else {
      raw.matchExpressions.forEach((e, i) => {
        const f = `${field}.matchExpressions[${i}]`;
        if (!isObj(e)) return bad(f, e, 'is not an object with key, operator and values');
        if (typeof e.key !== 'string') return bad(`${f}.key`, e.key, 'is required');
        const kp = labelKeyProblem(e.key);
        if (kp) return bad(`${f}.key`, e.key, kp);
        const op = e.operator;
        if (typeof op !== 'string' || !OPERATORS.includes(op as SelectorOperator)) {
          return bad(`${f}.operator`, op, `is not a valid selector operator (${OPERATORS.join(', ')})`);
        }
        const values = e.values === undefined || e.values === null ? [] : e.values;
        if (!Array.isArray(values)) return bad(`${f}.values`, e.values, 'is not a list');
        const badValue = values.findIndex((v) => typeof v !== 'string' || labelValueProblem(v) !== undefined);
        if (badValue >= 0) {
          const v = values[badValue];
          return bad(`${f}.values[${badValue}]`, v, typeof v === 'string' ? labelValueProblem(v)! : 'is not a string');
        }
        if ((op === 'In' || op === 'NotIn') && values.length === 0) {
          return bad(`${f}.values`, e.values, `must be non-empty when operator is ${op}`);
        }
        if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) {
          return bad(`${f}.values`, e.values, `must be empty when operator is ${op}`);
        }
        matchExpressions.push({ key: e.key, operator: op as SelectorOperator, values: [...(values as string[])] });
      });
    }
  }
  if (problems.length > 0) return { problems };
  return { selector: { matchLabels, matchExpressions }, problems };
}

export function isEmptySelector(s: LabelSelector): boolean {
  return Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0;
}

export function matches(s: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const k in s.matchLabels) {
    if (labels[k] !== s.matchLabels[k]) return false;
  }
  for (const r of s.matchExpressions) {
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case 'In':
        if (!has || !r.values.includes(labels[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && r.values.includes(labels[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** A stable text form (memo keys, and people reading `hypha policy get`). */
export function selectorText(s: LabelSelector): string {
  const parts = Object.keys(s.matchLabels).sort().map((k) => `${k}=${s.matchLabels[k]}`);
  for (const r of s.matchExpressions) {
    if (r.operator === 'Exists') parts.push(r.key);
    else if (r.operator === 'DoesNotExist') parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${r.operator === 'In' ? 'in' : 'notin'} (${[...r.values].sort().join(',')})`);
  }
  return parts.length === 0 ? '(all)' : parts.join(', ');
}
