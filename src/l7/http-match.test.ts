import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { hostOf, judge, matchRule, regexProblem, requestTargetProblem } from './http-match.ts';
import type { DirectionCheck, HttpRule } from './types.ts';

const req = (method: string, path: string, extra: { host?: string; headers?: Record<string, string> } = {}) =>
  ({ method, path, host: extra.host ?? '', headers: extra.headers ?? {} });
const rule = (r: Partial<HttpRule>, i = 0): HttpRule => ({ policy: 'hnp:ns/web', rule: `ingress[0].ports[0].http[${i}]`, ...r });

describe('HTTP rule matching', () => {
  test('each field: method, path exact / prefix / regex, host, headers', () => {
    assert.ok(matchRule(rule({ method: 'GET' }), req('GET', '/x')));
    assert.ok(!matchRule(rule({ method: 'GET' }), req('POST', '/x')));
    assert.ok(matchRule(rule({ path: { kind: 'exact', value: '/a' } }), req('GET', '/a')));
    assert.ok(!matchRule(rule({ path: { kind: 'exact', value: '/a' } }), req('GET', '/a/b')));
    assert.ok(matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/public/x')));
    assert.ok(!matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/private')));
    assert.ok(matchRule(rule({ path: { kind: 'regex', value: '/items/[0-9]+' } }), req('GET', '/items/42')));
    assert.ok(!matchRule(rule({ path: { kind: 'regex', value: '/items/[0-9]+' } }), req('GET', '/items/42/x')), 'anchored at both ends');
    assert.ok(matchRule(rule({ host: 'Web.Example' }), req('GET', '/', { host: 'web.example' })));
    assert.ok(!matchRule(rule({ host: 'web.example' }), req('GET', '/', { host: 'other' })));
    assert.ok(matchRule(rule({ headers: [{ name: 'X-Token' }] }), req('GET', '/', { headers: { 'x-token': 'anything' } })));
    assert.ok(!matchRule(rule({ headers: [{ name: 'X-Token' }] }), req('GET', '/')));
    assert.ok(matchRule(rule({ headers: [{ name: 'x-env', value: 'prod' }] }), req('GET', '/', { headers: { 'x-env': 'prod' } })));
    assert.ok(!matchRule(rule({ headers: [{ name: 'x-env', value: 'prod' }] }), req('GET', '/', { headers: { 'x-env': 'dev' } })));
    assert.ok(matchRule(rule({}), req('DELETE', '/anything')), 'a rule with no field matches every request');
  });

  test('judge: every check must pass; all; no checks is a refusal', () => {
    const ingress: DirectionCheck = { direction: 'ingress', endpoint: 'ns/web', rules: [rule({ method: 'GET' }, 0), rule({ method: 'POST', path: { kind: 'exact', value: '/upload' } }, 1)] };
    const egress: DirectionCheck = { direction: 'egress', endpoint: 'ns/client', rules: [{ ...rule({ path: { kind: 'prefix', value: '/up' } }), policy: 'hnp:ns/out' }] };
    assert.deepEqual(judge([ingress], req('POST', '/upload')), { verdict: 'allow', direction: 'ingress', endpoint: 'ns/web', policy: 'hnp:ns/web', rule: 'ingress[0].ports[0].http[1]' });
    assert.equal(judge([ingress], req('PUT', '/upload')).verdict, 'deny');
    assert.deepEqual(judge([egress, ingress], req('GET', '/x')), { verdict: 'deny', direction: 'egress', endpoint: 'ns/client', policies: ['hnp:ns/out'] });
    assert.equal(judge([egress, ingress], req('GET', '/upload')).verdict, 'allow');
    assert.equal(judge([{ ...ingress, rules: 'all' }], req('PUT', '/x')).verdict, 'allow');
    assert.equal(judge([], req('GET', '/')).verdict, 'deny', 'fail closed');
    assert.equal(judge([{ ...ingress, rules: [] }], req('GET', '/')).verdict, 'deny', 'a port whose rules were all invalid allows nothing');
  });

  test('regexProblem refuses what RE2 would, and what does not compile', () => {
    assert.equal(regexProblem('/items/[0-9]+'), undefined);
    assert.match(regexProblem('(a)\\1') ?? '', /backreferences/);
    assert.match(regexProblem('/(?=admin)') ?? '', /lookaround/);
    assert.match(regexProblem('/(?<!x)y') ?? '', /lookaround/);
    assert.ok(regexProblem('/[a-') !== undefined);
  });

  test('request targets that could slip past a prefix rule are refused', () => {
    assert.equal(requestTargetProblem('/public/a?x=../..'), undefined, 'the query is not the path');
    assert.match(requestTargetProblem('/public/../admin') ?? '', /dot segment/);
    assert.match(requestTargetProblem('/public/..') ?? '', /dot segment/);
    assert.match(requestTargetProblem('/./admin') ?? '', /dot segment/);
    assert.match(requestTargetProblem('/public/%2E%2E/admin') ?? '', /percent-encoded/);
    assert.match(requestTargetProblem('/public%2fadmin') ?? '', /percent-encoded/);
    assert.match(requestTargetProblem('http://web/admin') ?? '', /origin-form/);
    assert.match(requestTargetProblem('*') ?? '', /origin-form/);
    assert.equal(hostOf('Web.Example:8080'), 'web.example');
    assert.equal(hostOf('[::1]:80'), '[::1]');
  });
});
