// Edges of the control plane, against a real kube-apiserver: objects the API
// server accepts that must not mislead the datapath.
//  - An ExternalIP naming another Service's ClusterIP never takes it, also
//    across a delete and recreate of the owner (CVE-2020-8554 class), and
//    services.externalIPs.allowedCIDRs keeps other ExternalIPs off; hypha
//    status says what is not served and why.
//  - An endpoint with `serving` unset and `terminating: true` keeps serving.
//  - An EndpointSlice without the service-name label is ignored silently.
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import type { AgentStatus } from '../../src/agent/status.ts';
import { HYPHA_BIN, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import type { ServiceSpec } from './lib/manifests.ts';
import { type Pod, toolArgv } from './lib/topology.ts';

interface LoopResult { attempts: number; ok: number; failed: number; errors: Record<string, number>; replies: Record<string, number> }

const httpPort = [{ name: 'http', port: 8080 }];
const X = '10.96.0.50';
const a: ServiceSpec = { name: 'a', clusterIP: X, ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
// B lists A's ClusterIP, and an address outside the allowed prefixes.
const b: ServiceSpec = { name: 'b', clusterIP: '10.96.0.51', externalIPs: [X, '203.0.113.9'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

describe('control-plane edges against a real API server', () => {
  let c: Cluster;
  let client: Pod;
  let pods: Record<'b1' | 'b2' | 'b3', Pod>;
  const agent = () => c.agents[0]!;
  const loop = (to: string, count: number) =>
    c.topo.execJson<LoopResult>(client, toolArgv('client', ['loop', '--to', to, '--count', String(count), '--timeout', '2000']));
  const status = async (): Promise<AgentStatus> => JSON.parse((await agent().http('/status')).body) as AgentStatus;

  before(async () => {
    c = await Cluster.create({ name: 'edges', nodes: 1, noAgents: true });
    // The agent's config with the ExternalIP limit (the harness writes the rest).
    const cfg = parse(readFileSync(agent().configPath, 'utf8')) as Record<string, unknown>;
    cfg.services = { externalIPs: { allowedCIDRs: ['10.96.0.0/12', '198.51.100.0/24'] } };
    writeFileSync(agent().configPath, stringify(cfg));
    await agent().start(60_000);
    const node = c.nodes[0]!;
    client = await c.topo.addPod(node, 'client');
    pods = { b1: await c.addServingPod(node, 'b1'), b2: await c.addServingPod(node, 'b2'), b3: await c.addServingPod(node, 'b3') };
  });

  after(async () => {
    await c?.destroy();
  });

  test('an ExternalIP on another Service\'s ClusterIP never takes it, also when the owner is deleted and recreated', async () => {
    await c.applyService(a);
    await c.applySlice(a, Cluster.endpoints([pods.b1]), httpPort);
    await c.applyService(b);
    await c.applySlice(b, Cluster.endpoints([pods.b2]), httpPort);
    await eventually('B programmed on its ClusterIP', () => agent().backendsOf('10.96.0.51:80/TCP')?.[0] === `${pods.b2.ip}:8080`);
    assert.deepEqual(agent().backendsOf(`${X}:80/TCP`), [`${pods.b1.ip}:8080`]);
    assert.deepEqual(Object.keys((await loop(`${X}:80`, 10)).replies), ['b1']);

    // A goes: nobody owns X, B's ExternalIP is served (as kube-proxy would).
    await c.deleteService('a');
    await eventually('X served by B', () => agent().backendsOf(`${X}:80/TCP`)?.[0] === `${pods.b2.ip}:8080`);
    // A comes back with X, after B: the API server's allocation wins.
    await eventually('A recreated with X', async () => (await c.applyService(a)).spec?.clusterIP === X, 20_000);
    await eventually('X back to A', () => agent().backendsOf(`${X}:80/TCP`)?.[0] === `${pods.b1.ip}:8080`);
    const r = await loop(`${X}:80`, 20);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.deepEqual(Object.keys(r.replies), ['b1'], 'every connection to X reaches A\'s backend');
    assert.equal(agent().frontends().some((f) => f.frontend.startsWith('203.0.113.9:')), false, 'an ExternalIP outside the allowed prefixes is not programmed');

    const st = await status();
    assert.deepEqual(st.notServed.filter((n) => n.service === 'default/b').map((n) => `${n.kind} ${n.frontend}: ${n.reason}`).sort(), [
      `ExternalIP ${X}:80/TCP: address ${X} is the ClusterIP of Service default/a`,
      'ExternalIP 203.0.113.9:80/TCP: 203.0.113.9 is outside services.externalIPs.allowedCIDRs (10.96.0.0/12, 198.51.100.0/24)',
    ]);
    const out = await c.topo.exec(c.nodes[0]!, [HYPHA_BIN, 'status', '--pin-root', agent().opts.pinRoot]);
    assert.match(out.stdout, /not served\s+2 frontends asked for by Services and not programmed:/);
    assert.match(out.stdout, new RegExp(`default/b ExternalIP ${X.replace(/\./g, '\\.')}:80/TCP: address ${X.replace(/\./g, '\\.')} is the ClusterIP of Service default/a`));
    // Logged when it started (each time), never per resync.
    const warned = agent().logs().filter((l) => String(l.msg) === `not served: address ${X} is the ClusterIP of Service default/a`);
    assert.equal(warned.length, 2, 'once while A was first there, once after it came back');
  });

  test('an endpoint with serving unset and terminating true keeps its Service serving', async () => {
    const t: ServiceSpec = { name: 't', clusterIP: '10.96.0.52', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
    await c.applyService(t);
    const body = {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: 't-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 't' } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: [pods.b3.ip], conditions: { ready: false, terminating: true }, nodeName: pods.b3.node.name }],
    } as unknown as k8s.V1EndpointSlice;
    await c.discovery.createNamespacedEndpointSlice({ namespace: 'default', body });
    // What the API server stores: serving stays unset (no defaulting).
    const stored = await c.discovery.readNamespacedEndpointSlice({ namespace: 'default', name: 't-1' });
    const cond = stored.endpoints?.[0]?.conditions;
    assert.deepEqual([cond?.ready, cond?.serving, cond?.terminating], [false, undefined, true]);
    await eventually('t programmed with its terminating endpoint', () => agent().frontends().find((f) => f.frontend === '10.96.0.52:80/TCP')?.scopes[0]?.backends.length === 1);
    const r = await loop('10.96.0.52:80', 10);
    assert.equal(r.failed, 0, JSON.stringify(r.errors));
    assert.deepEqual(Object.keys(r.replies), ['b3']);
  });

  test('an EndpointSlice without the service-name label is ignored without a warning', async () => {
    const body = {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: 'unlabelled', namespace: 'default', labels: { app: 'mirror' } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: [pods.b1.ip] }],
    } as unknown as k8s.V1EndpointSlice;
    await c.discovery.createNamespacedEndpointSlice({ namespace: 'default', body });
    // A slice created after it on the same watch: once that one is
    // programmed, the unlabelled one has been handled.
    await c.applySlice(a, Cluster.endpoints([pods.b1, pods.b3]), httpPort, 'a-2');
    await eventually('a-2 programmed', () => agent().backendsOf(`${X}:80/TCP`)?.length === 2);
    const noisy = agent().logs().filter((l) => Number(l.level) >= 40 && JSON.stringify(l).includes('unlabelled'));
    assert.deepEqual(noisy, []);
    assert.equal((await agent().http('/healthz')).status, 200);
  });
});
