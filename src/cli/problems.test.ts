import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ObjectProblems } from '../agent/object-problems.ts';
import type { AgentStatus } from '../agent/status.ts';
import { problem } from '../services/problems.ts';
import { problemRows, problemStatusLines } from './problems.ts';

const fit = (i: number) => problem(`Service default/s${i}`, 'endpoints', 12, `do not fit the maps: the Service needs 12 service entries, 4 of 65536 are free; not programmed`);
const badEp = problem('EndpointSlice default/e-1', 'endpoints[1].addresses[0]', '10.0.0.x', 'is not an IPv4 address');

function kinds() {
  const p = new ObjectProblems({ log: pino({ level: 'silent' }) });
  for (let i = 0; i < 4539; i++) p.set(`compiled default/s${i}`, [fit(i)]);
  p.set('source e', [badEp]);
  return p.summary((o) => o.startsWith('Service '));
}

test('hypha status: a line per kind, Services not programmed first, the first objects, where to see all', () => {
  assert.deepEqual(problemStatusLines(kinds()), [
    'not programmed  4539 Services: endpoints do not fit the maps (Service default/s0: endpoints: 12 do not fit the maps: the Service needs 12 service entries, 4 of 65536 are free; not programmed)',
    '                Service default/s0, Service default/s1, Service default/s2, Service default/s3, Service default/s4 and 4534 more',
    'problem         1 EndpointSlice: endpoints[*].addresses[*] is not an IPv4 address (EndpointSlice default/e-1: endpoints[1].addresses[0]: "10.0.0.x" is not an IPv4 address)',
    '                EndpointSlice default/e-1',
    '                every problem: hypha service list --problems',
  ]);
  assert.deepEqual(problemStatusLines([]), []);
});

test('hypha service list --problems: one line per problem', () => {
  assert.deepEqual(problemRows([badEp]), [
    'OBJECT                     FIELD                      VALUE       MESSAGE',
    'EndpointSlice default/e-1  endpoints[1].addresses[0]  "10.0.0.x"  EndpointSlice default/e-1: endpoints[1].addresses[0]: "10.0.0.x" is not an IPv4 address',
  ]);
  assert.deepEqual(problemRows([]), ['no problems']);
});

const CLI = fileURLToPath(new URL('./main.ts', import.meta.url));
/** The CLI in a child process (asynchronously: the fake agent answers from this one). */
function hypha(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('hypha service list --problems and hypha status ask the agent; unreachable: said, exit 1', async () => {
  const problems = [badEp, fit(0)];
  const st: AgentStatus = {
    node: { name: 'n1', addresses: ['192.168.1.10'] }, ready: true, source: { kind: 'files', paths: ['/etc/hypha/services'], reads: 1, lastReadAt: null },
    lastSync: null, lastFullSync: null, lastError: null, services: 10_000, notServed: [], problems, problemKinds: kinds(), notProgrammed: 4539,
    maps: [{ map: 'hypha_lb4_services_v1', entries: 65532, capacity: 65536 }], conntrackGc: null,
    devices: { external: null, externalMode: null, pods: [] }, pods: null, routing: null, pinRoot: '/sys/fs/bpf/hypha',
  };
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/status' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(req.url === '/status' ? st : {}));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const list = await hypha(['service', 'list', '--problems', '--agent', url]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(list.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/).slice(0, 3)), [
      ['OBJECT', 'FIELD', 'VALUE'], ['EndpointSlice default/e-1', 'endpoints[1].addresses[0]', '"10.0.0.x"'], ['Service default/s0', 'endpoints', '12'],
    ]);
    const json = await hypha(['service', 'list', '--problems', '--json', '--agent', url]);
    assert.deepEqual(JSON.parse(json.stdout), problems);
    const status = await hypha(['status', '--agent', url]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^not programmed  4539 Services: endpoints do not fit the maps \(Service default\/s0: endpoints: 12 do not fit the maps: /m);
    assert.match(status.stdout, /^ +every problem: hypha service list --problems$/m);
    assert.match(status.stdout, /^map +hypha_lb4_services_v1 +65532 \/ 65536 +100\.0%$/m, 'map pressure still shown');
  } finally {
    await new Promise((r) => server.close(r));
  }
  const down = await hypha(['service', 'list', '--problems', '--agent', url]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /the agent is not reachable at http:\/\/127\.0\.0\.1:\d+/);
});
