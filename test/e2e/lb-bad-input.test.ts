// Bad Services and EndpointSlices: each gets one clear log line naming the
// object, field and value; nothing of it stays in the maps; every other
// Service keeps answering.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AgentStatus } from '../../src/agent/status.ts';
import { HYPHA_BIN, TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

interface LoopResult { failed: number; errors: Record<string, number>; replies: Record<string, number> }

const good: ServiceSpec = { name: 'good', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const changing: ServiceSpec = { name: 'changing', clusterIP: '10.96.0.11', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

describe('bad input never breaks other Services and leaves nothing behind', () => {
  let topo: Topology;
  let node: Node;
  let client: Pod;
  let backend: Pod;
  let agent: TestAgent;
  let m: ManifestDir;
  let work: string;

  const goodStillWorks = async (): Promise<void> => {
    const r = await topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', '10.96.0.10:80', '--count', '10', '--timeout', '2000']));
    assert.deepEqual([r.failed, Object.keys(r.replies)], [0, ['b1']], JSON.stringify(r));
  };
  const warned = (re: RegExp) => eventually(`a log line matching ${re}`, () => agent.logs().find((l) => l.level === 40 && re.test(String(l.msg))));
  const frontendKeys = () => agent.frontends().map((f) => f.frontend).sort();

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'bad' });
    node = await topo.addNode('n1');
    m = new ManifestDir(path.join(work, 'services'));
    // Small maps, so "more backends than the map holds" is cheap to reach.
    agent = new TestAgent(topo, node, {
      pinRoot: `/sys/fs/bpf/${topo.prefix}hypha`, servicesDir: m.dir, workDir: work,
      mapSizes: { services: 256, backends: 64, affinity: 256, ct: 4096 },
    });
    await agent.start();
    client = await topo.addPod(node, 'client');
    backend = await topo.addPod(node, 'b1');
    await topo.spawnReady(backend, toolArgv('echo-server', ['--name', 'b1', '--port', '8080']));
    const ep = [{ ip: backend.ip, node: node.name }];
    m.write('good.yaml', [serviceObject(good), sliceObject(good, ep, [{ name: 'http', port: 8080 }])]);
    m.write('changing.yaml', [serviceObject(changing), sliceObject(changing, ep, [{ name: 'http', port: 8080 }])]);
    await agent.waitForFrontends(['10.96.0.10:80/TCP', '10.96.0.11:80/TCP'], 1);
    await goodStillWorks();
  });

  after(async () => {
    await agent?.stop();
    await topo?.destroy();
    agent?.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('an invalid cluster IP', async () => {
    m.write('bad-ip.yaml', [serviceObject({ name: 'bad-ip', clusterIP: '10.96.0.300', ports: [{ name: 'http', port: 80 }] })]);
    await warned(/^Service default\/bad-ip: spec.clusterIP: "10.96.0.300" is not a valid IP address$/);
    await goodStillWorks();
  });

  test('a port of 0 and a port of 70000', async () => {
    m.write('bad-port.yaml', [
      serviceObject({ name: 'port-zero', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 0 }] }),
      serviceObject({ name: 'port-big', clusterIP: '10.96.0.21', ports: [{ name: 'http', port: 70000 }] }),
    ]);
    await warned(/^Service default\/port-zero: spec.ports\[0\].port: 0 is not a valid port number \(1-65535\)$/);
    await warned(/^Service default\/port-big: spec.ports\[0\].port: 70000 is not a valid port number \(1-65535\)$/);
    assert.ok(!frontendKeys().some((f) => f.startsWith('10.96.0.20') || f.startsWith('10.96.0.21')));
    await goodStillWorks();
  });

  test('an empty backend list: programmed to refuse connections at once, never a black hole', async () => {
    m.write('empty.yaml', [serviceObject({ name: 'empty', clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] })]);
    await eventually('the empty Service programmed', () => agent.backendsOf('10.96.0.30:80/TCP')?.length === 0);
    const r = await topo.execJson<{ ok: boolean; error: string; ms: number }>(client, toolArgv('client', ['once', '--to', '10.96.0.30:80', '--timeout', '2000']), { allowFail: true });
    assert.deepEqual([r.ok, r.error], [false, 'ECONNREFUSED']);
  });

  test('more backends than the map holds', async () => {
    const many = Array.from({ length: 100 }, (_, i) => ({ ip: `10.244.50.${i + 1}`, node: node.name }));
    const big: ServiceSpec = { name: 'big', clusterIP: '10.96.0.40', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    m.write('big.yaml', [serviceObject(big), sliceObject(big, many, [{ name: 'http', port: 8080 }])]);
    await warned(/^Service default\/big: endpoints: 100 do not fit the maps: the Service needs 100 backend entries, \d+ of 64 are free; not programmed$/);
    assert.ok(!frontendKeys().includes('10.96.0.40:80/TCP'));
    await goodStillWorks();
  });

  test('an endpoint address that is not an IP drops that endpoint only', async () => {
    const s: ServiceSpec = { name: 'badep', clusterIP: '10.96.0.50', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    m.write('badep.yaml', [serviceObject(s), sliceObject(s, [{ ip: backend.ip }, { ip: '10.244.0.x' }], [{ name: 'http', port: 8080 }])]);
    await warned(/^EndpointSlice default\/badep-1: endpoints\[1\].addresses\[0\]: "10.244.0.x" is not an IPv4 address$/);
    assert.deepEqual(await eventually('badep programmed', () => agent.backendsOf('10.96.0.50:80/TCP')), [`${backend.ip}:8080`]);
  });

  test('a file that is not YAML is reported by name; the rest of the directory still applies', async () => {
    m.write('broken.yaml', 'kind: Service\nmetadata: {name: x\n  spec: [');
    await warned(/broken\.yaml \(document 1\): yaml: .* cannot be parsed/);
    await goodStillWorks();
  });

  test('a Service that turns invalid is removed completely: no stale entry remains', async () => {
    assert.ok(frontendKeys().includes('10.96.0.11:80/TCP'));
    m.write('changing.yaml', [serviceObject({ ...changing, ports: [{ name: 'http', port: 70000 }] })]);
    await warned(/^Service default\/changing: spec.ports\[0\].port: 70000/);
    await eventually('changing removed', () => !frontendKeys().includes('10.96.0.11:80/TCP'));
    const standby = agent.frontends().flatMap((f) => f.standby);
    assert.deepEqual(standby, [], 'no orphaned backend');
    const r = await topo.execJson<{ ok: boolean; error: string }>(client, toolArgv('client', ['once', '--to', '10.96.0.11:80', '--timeout', '1000']), { allowFail: true });
    assert.equal(r.ok, false);
    await goodStillWorks();
  });

  test('each problem is logged once, however often the files are re-read', async () => {
    const reads = async (): Promise<number> => {
      const { source } = JSON.parse((await agent.http('/status')).body) as AgentStatus;
      return source.kind === 'files' ? source.reads : -1;
    };
    const before = await reads();
    m.write('touch.yaml', []);
    await eventually('the files re-read', async () => (await reads()) > before);
    const lines = agent.logs().filter((l) => /spec.clusterIP: "10.96.0.300"/.test(String(l.msg)));
    assert.equal(lines.length, 1);
  });

  test('40 Services that do not fit: one summary line, listed by hypha service list --problems, said by status and /readyz', async (t) => {
    const from = agent.logs().length;
    const specs: ServiceSpec[] = Array.from({ length: 40 }, (_, i) => ({ name: `many-${i}`, clusterIP: `10.96.1.${i + 1}`, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
    // 65 endpoints each: more than the backends map (64) holds.
    const eps = Array.from({ length: 65 }, (_, i) => ({ ip: `10.244.60.${i + 1}`, node: node.name }));
    m.write('many.yaml', specs.flatMap((s) => [serviceObject(s), sliceObject(s, eps, [{ name: 'http', port: 8080 }])]));
    const summary = await warned(/^40 Services: endpoints do not fit the maps \(e\.g\. Service default\/many-\d+: endpoints: 65 do not fit the maps: /);
    assert.equal(summary?.problems, 40);
    await new Promise((r) => setTimeout(r, 500));
    const loud = agent.logs().slice(from).filter((l) => Number(l.level) >= 30);
    t.diagnostic(`info+ lines during the sync of 40 Services that do not fit: ${loud.length}`);
    assert.ok(loud.length < 20, `${loud.length} info+ lines during the sync: ${JSON.stringify(loud.map((l) => l.msg))}`);
    assert.equal(agent.logs().slice(from).filter((l) => /do not fit the maps/.test(String(l.msg)) && l.level === 40).length, 1);

    const list = await topo.exec(node, [HYPHA_BIN, 'service', 'list', '--problems']);
    const many = list.stdout.split('\n').filter((l) => /^Service default\/many-\d+ +endpoints +65 +Service default\/many-\d+: endpoints: 65 do not fit the maps/.test(l));
    assert.equal(many.length, 40, list.stdout);
    const status = await topo.exec(node, [HYPHA_BIN, 'status', '--pin-root', `/sys/fs/bpf/${topo.prefix}hypha`]);
    assert.match(status.stdout, /^not programmed  41 Services: endpoints do not fit the maps \(Service default\/(big|many-\d+): /m, 'with big of the test above');
    assert.match(status.stdout, /every problem: hypha service list --problems/);
    const ready = await agent.http('/readyz');
    assert.equal(ready.status, 200);
    assert.match(ready.body, /^ready; \d+ Services not programmed \(hypha service list --problems\)\n$/);

    // Gone: one info line; the list no longer has them.
    const before = agent.logs().length;
    m.remove('many.yaml');
    const gone = await eventually('the problems gone', () => agent.logs().slice(before).find((l) => /^40 problems of objects gone/.test(String(l.msg))));
    assert.equal(gone?.level, 30);
    const after = await topo.exec(node, [HYPHA_BIN, 'service', 'list', '--problems']);
    assert.doesNotMatch(after.stdout, /many-/);
    await goodStillWorks();
  });
});
