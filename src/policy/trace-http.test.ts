// `hypha policy trace --http`: one request judged on a traced flow, from a
// real compile of HyphaNetworkPolicy objects (pods of the xyz fixture), and
// the request text, headers and host checked with the field named.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compilePolicies } from './compile.ts';
import { policy, xyz } from './fixtures.ts';
import type { NetworkPolicy } from './model.ts';
import { normalizeHyphaNetworkPolicy } from './normalize.ts';
import { trace } from './trace.ts';
import { formatHttpTrace, httpTraceQuery, parseHttpTraceRequest, traceHttp } from './trace-http.ts';

function hnp(namespace: string, name: string, spec: Record<string, unknown>): NetworkPolicy {
  const { value, problems } = normalizeHyphaNetworkPolicy({ apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy', metadata: { namespace, name }, spec });
  assert.deepEqual(problems.map((p) => `${p.field}: ${p.message}`), []);
  return value!;
}

const k = xyz();
const web = hnp('x', 'web', {
  podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'],
  ingress: [{
    from: [{ podSelector: { matchLabels: { pod: 'b' } } }],
    ports: [{
      port: 80,
      http: [
        { method: 'POST', path: { exact: '/login' } },
        { method: 'GET', path: { prefix: '/api/' }, host: 'web.x' },
        { path: { regex: '/v[0-9]+/items' }, headers: [{ name: 'X-Env', value: 'prod' }, { name: 'x-user' }] },
      ],
    }],
  }],
});
// x/c reaches x/a on 80 with a plain allow next to the http rules: every request.
const plainFromC = policy('x', 'c-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'c' } } }], ports: [{ port: 80 }] }] });
// x/b's egress: plain on any port.
const bOut = policy('x', 'b-out', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{}] });
const compiled = compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies: [web, plainFromC, bOut] });

function run(from: string, to: string, http: string, headers: string[] = [], host?: string, port = 80) {
  const r = trace(compiled, { from: { endpoint: from }, to: { endpoint: to }, proto: 'TCP', port });
  return traceHttp(compiled, r, parseHttpTraceRequest(http, headers, host));
}

describe('trace --http: the verdict and the rule that decides', () => {
  test('allowed: the matching rule is named, with the plain egress at the source', () => {
    const t = run('x/b', 'x/a', 'GET /api/v1?x=1', [], 'web.x:80');
    assert.deepEqual([t.verdict, t.policy, t.rule, t.status], ['allowed', 'hnp:x/web', 'ingress[0].ports[0].http[1]', undefined]);
    assert.deepEqual(formatHttpTrace(t), [
      '  HTTP GET web.x/api/v1: ALLOWED by hnp:x/web ingress[0].ports[0].http[1]',
      '    egress at the source (x/b): a plain L3/L4 allow: every request passes',
      '    ingress at the destination (x/a): allowed by hnp:x/web ingress[0].ports[0].http[1] (GET, path prefix /api/, host web.x)',
    ]);
  });

  test('regex path and headers: value and presence, names compared case-insensitively', () => {
    const ok = run('x/b', 'x/a', 'DELETE /v2/items', ['x-env=prod', 'X-User=ann'], 'web.x');
    assert.deepEqual([ok.verdict, ok.rule], ['allowed', 'ingress[0].ports[0].http[2]']);
    const noUser = run('x/b', 'x/a', 'DELETE /v2/items', ['x-env=prod'], 'web.x');
    assert.equal(noUser.verdict, 'denied');
    assert.equal(noUser.checks[1]!.misses![2]!.why, 'no header x-user');
  });

  test('denied: 403, every rule consulted with the first field it fails', () => {
    const t = run('x/b', 'x/a', 'GET /admin', ['x-env=dev', 'x-user=bob'], 'web.x');
    assert.deepEqual([t.verdict, t.status], ['denied', 403]);
    assert.match(t.reason!, /no http rule allows GET web\.x\/admin \(ingress of x\/a; policies consulted: hnp:x\/web\)/);
    assert.deepEqual(formatHttpTrace(t), [
      '  HTTP GET web.x/admin: DENIED: the L7 proxy answers 403 (no rule allows it)',
      '    egress at the source (x/b): a plain L3/L4 allow: every request passes',
      '    ingress at the destination (x/a): no rule allows it (policies consulted: hnp:x/web)',
      '      hnp:x/web ingress[0].ports[0].http[0] (POST, path exact /login): method is GET',
      '      hnp:x/web ingress[0].ports[0].http[1] (GET, path prefix /api/, host web.x): path is /admin',
      '      hnp:x/web ingress[0].ports[0].http[2] (path regex /v[0-9]+/items, header x-env: prod, header x-user present): path is /admin',
    ]);
    const wrongHost = run('x/b', 'x/a', 'GET /api/x', [], 'other.x');
    assert.equal(wrongHost.checks[1]!.misses![1]!.why, 'host is other.x');
    const wrongValue = run('x/b', 'x/a', 'GET /v1/items', ['x-env=dev', 'x-user=u'], 'web.x');
    assert.equal(wrongValue.checks[1]!.misses![2]!.why, 'header x-env is "dev"');
  });

  test("a plain allow of the same flow: 'plain', not sent to the proxy", () => {
    const t = run('x/c', 'x/a', 'PUT /anything');
    assert.equal(t.verdict, 'plain');
    assert.deepEqual(formatHttpTrace(t), [
      '  HTTP PUT 10.0.1.1/anything: ALLOWED: no http rule covers this flow (not sent to the L7 proxy: every request passes)',
      '    ingress at the destination (x/a): a plain L3/L4 allow: every request passes',
    ]);
    // no policy at all on either side: no check
    assert.deepEqual(run('y/a', 'y/b', 'GET /').checks, []);
    assert.equal(run('y/a', 'y/b', 'GET /').verdict, 'plain');
  });

  test('L3/L4 denies the flow: not judged', () => {
    const t = run('x/b', 'x/a', 'GET /api/v1', [], 'web.x', 8080);
    assert.deepEqual(formatHttpTrace(t), ['  HTTP GET web.x/api/v1: not judged: the connection is denied at L3/L4: no request is sent']);
  });

  test("what the proxy answers 400 before any rule: dot segments, CONNECT; without --host the address connected to is the Host", () => {
    const noHost = run('x/b', 'x/a', 'GET /api/v1');
    assert.notEqual(noHost.verdict, 'bad-request', 'judged with the destination address as its Host');
    assert.match(noHost.request.host, /^10\./);
    const dots = run('x/b', 'x/a', 'GET /api/../admin', [], 'web.x');
    assert.deepEqual([dots.verdict, dots.reason], ['bad-request', 'a dot segment in the path (refused: a server could resolve it past a path rule)']);
    assert.equal(run('x/b', 'x/a', 'GET /api/%2e%2e/admin', [], 'web.x').verdict, 'bad-request');
    assert.equal(run('x/b', 'x/a', 'CONNECT /x', [], 'web.x').verdict, 'bad-request');
  });
});

describe('trace --http: bad input named by field and value', () => {
  const bad: [string, () => unknown, string, string][] = [
    ['no path', () => parseHttpTraceRequest('GET'), 'http', `http: "GET" is not 'METHOD /path' (e.g. 'GET /api/v1')`],
    ['three words', () => parseHttpTraceRequest('GET /a b'), 'http', `http: "GET /a b" is not 'METHOD /path' (e.g. 'GET /api/v1')`],
    ['lower-case method', () => parseHttpTraceRequest('get /a'), 'http', 'http: "get /a" has method "get": methods are upper case (GET, POST, ...), as the proxy compares them'],
    ['not a path', () => parseHttpTraceRequest('GET api'), 'http', `http: "GET api" has target "api", not a path starting with '/'`],
    ['header without =', () => parseHttpTraceRequest('GET /', ['x-env']), 'header', 'header: "x-env" is not NAME=VALUE (e.g. x-env=prod)'],
    ['header with = first', () => parseHttpTraceRequest('GET /', ['=v']), 'header', 'header: "=v" is not NAME=VALUE (e.g. x-env=prod)'],
    ['header name not a token', () => parseHttpTraceRequest('GET /', ['x env=v']), 'header', 'header: "x env=v" has name "x env", which is not an HTTP header name'],
    ['host twice', () => parseHttpTraceRequest('GET /', ['host=a'], 'b'), 'host', 'host: "b" is given twice: also as --header host=a'],
    ['host with a path', () => parseHttpTraceRequest('GET /', [], 'a/b'), 'host', 'host: "a/b" is not a host name (e.g. web.example or web.example:8080)'],
    ['UDP', () => httpTraceQuery(new URLSearchParams({ http: 'GET /' }), 'UDP'), 'http', 'http: "GET /" needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not UDP'],
    ['ICMP', () => httpTraceQuery(new URLSearchParams({ http: 'GET /' }), 'ICMP'), 'http', 'http: "GET /" needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not ICMP'],
    ['header without http', () => httpTraceQuery(new URLSearchParams({ header: 'a=b' }), 'TCP'), 'header', 'header: "a=b" needs http (the request to judge: http=GET /path)'],
  ];
  for (const [what, f, field, message] of bad) {
    test(what, () => assert.throws(f, { name: 'TraceInputError', field, message }));
  }

  test('good input: the query with repeated headers, host and HTTP/1.1', () => {
    const q = new URLSearchParams([['http', 'GET /a?b=1 HTTP/1.1'], ['header', 'X-A=1'], ['header', 'x-a= 2 '], ['header', 'x-empty='], ['host', 'Web.X:8080']]);
    assert.deepEqual(httpTraceQuery(q, 'TCP'), {
      method: 'GET', target: '/a?b=1', path: '/a', host: 'web.x', headers: { 'x-a': '1, 2', 'x-empty': '', host: 'Web.X:8080' },
    });
    assert.equal(httpTraceQuery(new URLSearchParams({ from: 'x/a' }), 'UDP'), undefined);
  });
});
