import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { readHttpRules } from './http-rules.ts';

const at = { object: 'HyphaNetworkPolicy ns/web', field: 'spec.ingress[0].ports[1].http', policy: 'hnp:ns/web', protocol: 'TCP' };

describe('HTTP rules of a HyphaNetworkPolicy port', () => {
  test('every field read; the rule names its place', () => {
    const r = readHttpRules([
      { method: 'GET', path: { prefix: '/public/' }, host: 'Web.Example', headers: [{ name: 'X-Token' }, { name: 'x-env', value: 'prod' }] },
      { path: { regex: '/items/[0-9]+' } },
      {},
    ], at);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.rules, [
      { policy: 'hnp:ns/web', rule: 'ingress[0].ports[1].http[0]', method: 'GET', path: { kind: 'prefix', value: '/public/' }, host: 'web.example', headers: [{ name: 'x-token' }, { name: 'x-env', value: 'prod' }] },
      { policy: 'hnp:ns/web', rule: 'ingress[0].ports[1].http[1]', path: { kind: 'regex', value: '/items/[0-9]+' } },
      { policy: 'hnp:ns/web', rule: 'ingress[0].ports[1].http[2]' },
    ]);
    assert.deepEqual(readHttpRules(undefined, at), { problems: [] }, 'no http: a plain port');
  });

  test('bad fields are named with their value; the rule is dropped; a port left with none allows nothing', () => {
    const r = readHttpRules([
      { method: 'get' },
      { path: { exact: 'x' } },
      { path: { exact: '/a', prefix: '/b' } },
      { path: { regex: '(a)\\1' } },
      { path: { glob: '/*' } },
      { headers: [{ value: 'v' }] },
      { host: 'web:80' },
      { verb: 'GET' },
    ], at);
    assert.deepEqual(r.rules, [], 'every rule dropped: the port allows no request');
    const msgs = r.problems.map((p) => p.message);
    assert.equal(msgs.length, 8);
    assert.match(msgs[0]!, /spec\.ingress\[0\]\.ports\[1\]\.http\[0\]\.method: "get" is not an upper-case HTTP method/);
    assert.match(msgs[1]!, /http\[1\]\.path: .* exact does not start with '\/'/);
    assert.match(msgs[2]!, /http\[2\]\.path: .* needs exactly one of exact, prefix, regex \(has 2\)/);
    assert.match(msgs[3]!, /http\[3\]\.path: .* regex is not a valid RE2 pattern: backreferences/);
    assert.match(msgs[4]!, /http\[4\]\.path: .* has glob, not one of exact, prefix, regex/);
    assert.match(msgs[5]!, /http\[5\]\.headers\[0\]\.name: \(missing\) is not a header name/);
    assert.match(msgs[6]!, /http\[6\]\.host: "web:80" is not a host name/);
    assert.match(msgs[7]!, /http\[7\]\.verb: "GET" is not a field of an HTTP rule/);
  });

  test('HTTP rules on a UDP port, or not a list: the port allows nothing', () => {
    const udp = readHttpRules([{ method: 'GET' }], { ...at, protocol: 'UDP' });
    assert.deepEqual(udp.rules, []);
    assert.match(udp.problems[0]!.message, /HTTP rules need protocol TCP, not UDP/);
    const notList = readHttpRules({ method: 'GET' }, at);
    assert.deepEqual(notList.rules, []);
    assert.match(notList.problems[0]!.message, /is not a list of HTTP rules/);
  });
});
