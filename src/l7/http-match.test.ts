import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  compileRegexProblem, hostOf, isTargetProblem, judge, matchRule, parseTarget, pathProblem, regexProblem, requestTargetProblem,
  type HttpRequestView,
} from './http-match.ts';
import type { DirectionCheck, HttpRule } from './types.ts';

const req = (method: string, path: string, extra: { host?: string; headers?: HttpRequestView['headers'] } = {}): HttpRequestView =>
  ({ method, path, host: extra.host ?? '', headers: extra.headers ?? {} });
const rule = (r: Partial<HttpRule>, i = 0): HttpRule => ({ policy: 'hnp:ns/web', rule: `ingress[0].ports[0].http[${i}]`, ...r });

describe('HTTP rule matching', () => {
  test('method: exact, case-sensitive', () => {
    assert.ok(matchRule(rule({ method: 'GET' }), req('GET', '/x')));
    assert.ok(!matchRule(rule({ method: 'GET' }), req('POST', '/x')));
    assert.ok(!matchRule(rule({ method: 'GET' }), req('get', '/x')));
  });

  test('path exact and prefix, on the raw path', () => {
    assert.ok(matchRule(rule({ path: { kind: 'exact', value: '/a' } }), req('GET', '/a')));
    assert.ok(!matchRule(rule({ path: { kind: 'exact', value: '/a' } }), req('GET', '/a/')));
    assert.ok(!matchRule(rule({ path: { kind: 'exact', value: '/admin' } }), req('GET', '/adm%69n')), 'not decoded: can only refuse more');
    assert.ok(matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/public/x/y')));
    assert.ok(matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/public/')));
    assert.ok(!matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/public')));
    assert.ok(!matchRule(rule({ path: { kind: 'prefix', value: '/public/' } }), req('GET', '/private')));
  });

  test('path regex: RE2, anchored at both ends', () => {
    const items = rule({ path: { kind: 'regex', value: '/items/[0-9]+' } });
    assert.ok(matchRule(items, req('GET', '/items/42')));
    assert.ok(!matchRule(items, req('GET', '/items/42/x')), 'anchored at the end');
    assert.ok(!matchRule(items, req('GET', '/x/items/42')), 'anchored at the start');
    assert.ok(!matchRule(rule({ path: { kind: 'regex', value: '/a|/b' } }), req('GET', '/a/c')), 'alternation anchored as a whole');
    assert.ok(matchRule(rule({ path: { kind: 'regex', value: '/v[[:digit:]]+/(?P<id>[a-z]+)' } }), req('GET', '/v2/abc')), 'RE2 classes and named groups');
    assert.ok(matchRule(rule({ path: { kind: 'regex', value: '(?i)/API/.*' } }), req('GET', '/api/x')), 'RE2 flags');
    assert.ok(!matchRule(rule({ path: { kind: 'regex', value: '/(a)\\1' } }), req('GET', '/aa')), 'a pattern that does not compile matches nothing');
  });

  test('path regex runs in linear time (RE2: a pattern that backtracks exponentially in JS does not here)', () => {
    const evil = rule({ path: { kind: 'regex', value: '/(a+)+b' } });
    const t0 = performance.now();
    assert.ok(!matchRule(evil, req('GET', `/${'a'.repeat(5000)}`)));
    assert.ok(performance.now() - t0 < 500, `took ${performance.now() - t0} ms`);
  });

  test('host: case-insensitive, without port', () => {
    assert.ok(matchRule(rule({ host: 'Web.Example' }), req('GET', '/', { host: hostOf('WEB.example:8080') })));
    assert.ok(!matchRule(rule({ host: 'web.example' }), req('GET', '/', { host: 'other' })));
    assert.ok(!matchRule(rule({ host: 'web.example' }), req('GET', '/', { host: '' })));
    assert.equal(hostOf('[::1]:80'), '[::1]');
    assert.equal(hostOf('[::1]'), '[::1]');
    assert.equal(hostOf(undefined), '');
  });

  test('headers: presence, value, several at once, repeated headers joined', () => {
    assert.ok(matchRule(rule({ headers: [{ name: 'X-Token' }] }), req('GET', '/', { headers: { 'x-token': '' } })), 'present, even empty');
    assert.ok(!matchRule(rule({ headers: [{ name: 'X-Token' }] }), req('GET', '/')));
    const env = rule({ headers: [{ name: 'x-env', value: 'prod' }] });
    assert.ok(matchRule(env, req('GET', '/', { headers: { 'x-env': 'prod' } })));
    assert.ok(!matchRule(env, req('GET', '/', { headers: { 'x-env': 'Prod' } })), 'values compare exactly');
    assert.ok(!matchRule(env, req('GET', '/', { headers: { 'x-env': 'dev, prod' } })), 'a repeated header is all its values');
    assert.ok(!matchRule(env, req('GET', '/', { headers: { 'x-env': ['prod', 'dev'] } })));
    const both = rule({ headers: [{ name: 'x-env', value: 'prod' }, { name: 'x-token' }] });
    assert.ok(matchRule(both, req('GET', '/', { headers: { 'x-env': 'prod', 'x-token': 't' } })));
    assert.ok(!matchRule(both, req('GET', '/', { headers: { 'x-env': 'prod' } })));
  });

  test('every field of a rule must match; a rule with none matches every request', () => {
    const r = rule({ method: 'POST', path: { kind: 'exact', value: '/upload' }, host: 'web', headers: [{ name: 'x-a' }] });
    assert.ok(matchRule(r, req('POST', '/upload', { host: 'web', headers: { 'x-a': '1' } })));
    assert.ok(!matchRule(r, req('GET', '/upload', { host: 'web', headers: { 'x-a': '1' } })));
    assert.ok(!matchRule(r, req('POST', '/upload', { host: 'other', headers: { 'x-a': '1' } })));
    assert.ok(matchRule(rule({}), req('DELETE', '/anything')));
  });
});

describe('judge', () => {
  const ingress: DirectionCheck = { direction: 'ingress', endpoint: 'ns/web', rules: [rule({ method: 'GET' }, 0), rule({ method: 'POST', path: { kind: 'exact', value: '/upload' } }, 1)] };
  const egress: DirectionCheck = {
    direction: 'egress', endpoint: 'ns/client',
    rules: [{ ...rule({ path: { kind: 'prefix', value: '/up' } }), policy: 'hnp:ns/out' }, { ...rule({ method: 'HEAD' }), policy: 'hnp:ns/a' }, { ...rule({ method: 'PUT' }), policy: 'hnp:ns/out' }],
  };

  test('one check: the first rule that matches names the verdict', () => {
    const j = judge([ingress], req('POST', '/upload'));
    assert.equal(j.verdict, 'allow');
    assert.equal(j.policy, 'hnp:ns/web');
    assert.equal(j.rule, 'ingress[0].ports[0].http[1]');
    assert.equal(j.direction, 'ingress');
    assert.equal(judge([ingress], req('PUT', '/upload')).verdict, 'deny');
  });

  test('several checks: every one must allow; the first refusal is named with its policies', () => {
    const d = judge([egress, ingress], req('GET', '/x', { host: 'web' }));
    assert.equal(d.verdict, 'deny');
    assert.equal(d.direction, 'egress');
    assert.equal(d.endpoint, 'ns/client');
    assert.deepEqual(d.policies, ['hnp:ns/a', 'hnp:ns/out']);
    assert.equal(d.policy, 'hnp:ns/a');
    assert.equal(d.message, 'no http rule allows GET web/x (egress of ns/client; policies consulted: hnp:ns/a, hnp:ns/out)');
    const i = judge([egress, ingress], req('PUT', '/upload'));
    assert.equal(i.verdict, 'deny');
    assert.equal(i.direction, 'ingress', 'egress allowed it, ingress did not');
    const a = judge([egress, ingress], req('GET', '/upload'));
    assert.equal(a.verdict, 'allow');
    assert.equal(a.policy, 'hnp:ns/out', 'the first check names the allow');
    assert.deepEqual(a.matches?.map((m) => `${m.direction}:${m.policy}:${m.rule}`), ['egress:hnp:ns/out:ingress[0].ports[0].http[0]', 'ingress:hnp:ns/web:ingress[0].ports[0].http[0]']);
  });

  test("'all' allows every request in its direction", () => {
    assert.equal(judge([{ ...ingress, rules: 'all' }], req('PUT', '/x')).verdict, 'allow');
    const a = judge([{ ...egress, rules: 'all' }, ingress], req('GET', '/x'));
    assert.equal(a.verdict, 'allow');
    assert.equal(a.policy, 'hnp:ns/web', "named by the check with rules, not the 'all' one");
    const only = judge([{ ...ingress, rules: 'all' }], req('GET', '/'));
    assert.equal(only.policy, undefined);
    assert.equal(judge([{ ...ingress, rules: 'all' }, egress], req('GET', '/x')).verdict, 'deny', "'all' in one direction, refused in the other");
  });

  test('fail closed: no checks, or a check with no rules', () => {
    const none = judge([], req('GET', '/'));
    assert.equal(none.verdict, 'deny');
    assert.deepEqual(none.policies, []);
    assert.match(none.message ?? '', /no policy/);
    assert.equal(judge([{ ...ingress, rules: [] }], req('GET', '/')).verdict, 'deny', 'a port whose rules were all invalid allows nothing');
  });
});

describe('regular expressions', () => {
  test('compileRegexProblem: what RE2 refuses, with the reason', () => {
    assert.equal(compileRegexProblem('/items/[0-9]+'), undefined);
    assert.equal(compileRegexProblem('/\\Qa.b\\E'), undefined);
    assert.match(compileRegexProblem('(a)\\1') ?? '', /backreferences/);
    assert.match(compileRegexProblem('/(?=admin)') ?? '', /lookaround/);
    assert.match(compileRegexProblem('/(?<!x)y') ?? '', /lookaround/);
    assert.match(compileRegexProblem('/(?<name>a)\\k<name>') ?? '', /named backreferences/);
    assert.match(compileRegexProblem('/[a-') ?? '', /missing \]/);
    assert.match(compileRegexProblem('/(a') ?? '', /missing \)/);
    assert.match(compileRegexProblem('/\\Qab') ?? '', /missing \)/, 'an unclosed \\Q would swallow the anchor');
    assert.match(compileRegexProblem('/a{1,2000}') ?? '', /repetition/);
    assert.match(compileRegexProblem('') ?? '', /empty/);
    assert.equal(regexProblem, compileRegexProblem);
  });
});

describe('request targets', () => {
  const ok = (method: string, target: string) => {
    const t = parseTarget(method, target);
    assert.ok(!isTargetProblem(t), `${target}: ${isTargetProblem(t) ? t.reason : ''}`);
    return t;
  };
  const refused = (method: string, target: string, status: number, why: RegExp) => {
    const t = parseTarget(method, target);
    assert.ok(isTargetProblem(t), `${target} should be refused`);
    assert.equal(t.status, status, target);
    assert.match(t.reason, why, target);
  };

  test('origin-form: the path without the query for the rules, the whole target upstream', () => {
    assert.deepEqual(ok('GET', '/public/a?x=../..'), { path: '/public/a', originForm: '/public/a?x=../..' });
    assert.deepEqual(ok('GET', '/'), { path: '/', originForm: '/' });
    for (const p of ['/a..b', '/.well-known/acme', '/a/.../b', '/a/..b/', '/%41dmin', '/a;b=c']) ok('GET', p);
  });

  test('absolute-form http://host/path is made origin-form; its authority stands for Host', () => {
    assert.deepEqual(ok('GET', 'http://Web.Example:8080/x?y'), { path: '/x', originForm: '/x?y', authority: 'web.example', rawAuthority: 'Web.Example:8080' });
    assert.deepEqual(ok('GET', 'HTTP://web'), { path: '/', originForm: '/', authority: 'web', rawAuthority: 'web' });
    assert.deepEqual(ok('GET', 'http://web?q'), { path: '/', originForm: '/?q', authority: 'web', rawAuthority: 'web' });
    refused('GET', 'https://web/x', 400, /neither origin-form nor http absolute-form/);
    refused('GET', 'http://user@web/x', 400, /userinfo/);
    refused('GET', 'http:///x', 400, /without a host/);
    refused('GET', 'http://web/../admin', 400, /dot segment/);
  });

  test('CONNECT and the asterisk-form are refused with 403: no http rule can judge them', () => {
    refused('CONNECT', 'web:443', 403, /CONNECT/);
    refused('OPTIONS', '*', 403, /asterisk/);
  });

  test('paths a server could resolve past a prefix rule are refused with 400', () => {
    for (const p of ['/public/../admin', '/public/..', '/./admin', '/public/.', '/..', '/public/..;/admin', '/public/.;x/a']) {
      refused('GET', p, 400, /dot segment/);
    }
    for (const p of ['/public/%2E%2E/admin', '/public/%2e./admin', '/public%2fadmin', '/public%2F..', '/public/..%5cadmin', '/public/%252e%252e/admin']) {
      refused('GET', p, 400, /percent-encoded/);
    }
    refused('GET', '/public/..\\admin', 400, /backslash/);
    refused('GET', '/a#frag', 400, /fragment/);
    refused('GET', 'admin', 400, /neither/);
    assert.equal(pathProblem('/ok/path'), undefined);
    assert.equal(requestTargetProblem('/public/x'), undefined);
    assert.match(requestTargetProblem('/public/../x') ?? '', /dot segment/);
    assert.match(requestTargetProblem('http://web/x') ?? '', /not origin-form/);
  });
});
