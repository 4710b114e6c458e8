// `hypha policy trace --http` in a child process: bad flags refused with
// exit 2 before the agent is asked, and a good one sent as http=, header=,
// host= to a stub agent that answers from a real compile (trace() and
// traceHttp(), as GET /policy/trace does), its lines printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { PolicyTraceDocument } from '../agent/policy.ts';
import { parsePortProto } from '../agent/policy.ts';
import { compilePolicies } from '../policy/compile.ts';
import { xyz } from '../policy/fixtures.ts';
import { normalizeHyphaNetworkPolicy } from '../policy/normalize.ts';
import { formatTrace, trace } from '../policy/trace.ts';
import { formatHttpTrace, httpTraceQuery, traceHttp } from '../policy/trace-http.ts';

const CLI = fileURLToPath(new URL('./main.ts', import.meta.url));
function hypha(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const k = xyz();
const web = normalizeHyphaNetworkPolicy({
  apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy', metadata: { namespace: 'x', name: 'web' },
  spec: { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 80, http: [{ method: 'POST' }, { method: 'GET', path: { prefix: '/api/' }, headers: [{ name: 'x-env', value: 'prod' }] }] }] }] },
}).value!;
const compiled = compilePolicies({ identities: k.identities, endpoints: k.endpoints, policies: [web] });

test('trace --http: bad flags exit 2 naming the flag; a good one reaches the agent and its verdict is printed', async () => {
  const bad: [string[], string][] = [
    [['--port', '80/TCP', '--http', 'GET'], `hypha policy trace: --http: "GET" is not 'METHOD /path' (e.g. 'GET /api/v1')`],
    [['--port', '53/UDP', '--http', 'GET /'], 'hypha policy trace: --http: "GET /" needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not UDP'],
    [['--port', 'ICMP', '--http', 'GET /'], 'hypha policy trace: --http: "GET /" needs a TCP port (e.g. 80/TCP): HTTP rules judge TCP flows, not ICMP'],
    [['--port', '80/TCP', '--http', 'GET /', '--header', 'x-env'], 'hypha policy trace: --header: "x-env" is not NAME=VALUE (e.g. x-env=prod)'],
    [['--port', '80/TCP', '--host', 'web.x'], `hypha policy trace: --host: "web.x" needs --http (the request to judge: --http 'GET /path')`],
  ];
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(req.url ?? '');
    const q = new URL(req.url ?? '', 'http://agent').searchParams;
    const { proto, port } = parsePortProto(q.get('port') ?? '', 'port');
    const http = httpTraceQuery(q, proto)!;
    const result = trace(compiled, { from: { endpoint: q.get('from')! }, to: { endpoint: q.get('to')! }, proto, ...(port !== undefined ? { port } : {}) });
    const h = traceHttp(compiled, result, http);
    const doc: PolicyTraceDocument = { verdict: result.verdict, synced: true, notes: [], traces: [{ result, http: h, text: [...formatTrace(result), ...formatHttpTrace(h)], notes: [] }] };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const runs = await Promise.all(bad.map(([args]) => hypha(['policy', 'trace', '--from', 'x/b', '--to', 'x/a', ...args, '--agent', url])));
    assert.deepEqual(runs.map((r) => [r.code, r.stderr.trim()]), bad.map(([, message]) => [2, message]));
    assert.deepEqual(asked, [], 'bad flags: the agent is not asked');

    const ok = await hypha(['policy', 'trace', '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP', '--http', 'GET /api/v1?x=1', '--header', 'x-env=prod', '--header', 'x-user=ann', '--host', 'web.x', '--agent', url]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual([...new URL(asked[0]!, url).searchParams], [
      ['from', 'x/b'], ['to', 'x/a'], ['port', '80/TCP'], ['http', 'GET /api/v1?x=1'], ['header', 'x-env=prod'], ['header', 'x-user=ann'], ['host', 'web.x'],
    ]);
    assert.match(ok.stdout, /^ {2}HTTP GET web\.x\/api\/v1: ALLOWED by hnp:x\/web ingress\[0\]\.ports\[0\]\.http\[1\]$/m);
    const denied = await hypha(['policy', 'trace', '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP', '--http', 'DELETE /api/v1', '--host', 'web.x', '--agent', url]);
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(denied.stdout, /^ {2}HTTP DELETE web\.x\/api\/v1: DENIED: the L7 proxy answers 403 \(no rule allows it\)$/m);
    assert.match(denied.stdout, /^ {6}hnp:x\/web ingress\[0\]\.ports\[0\]\.http\[0\] \(POST\): method is DELETE$/m);
    const json = await hypha(['policy', 'trace', '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP', '--http', 'GET /api/v1', '--host', 'web.x', '--header', 'x-env=prod', '--json', '--agent', url]);
    const doc = JSON.parse(json.stdout) as PolicyTraceDocument;
    assert.deepEqual([doc.traces[0]!.http!.verdict, doc.traces[0]!.http!.policy, doc.traces[0]!.http!.rule], ['allowed', 'hnp:x/web', 'ingress[0].ports[0].http[1]']);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
