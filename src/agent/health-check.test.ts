import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { layouts } from '../abi/abi.gen.ts';
import { BACKENDS_MAP, LbReconciler, SERVICES_MAP } from '../datapath/lb-reconciler.ts';
import { MemoryMapIO } from '../datapath/map-io.ts';
import { slice, svc } from '../services/fixtures.ts';
import { LbTable } from '../services/lb-table.ts';
import { normalizeService } from '../services/normalize.ts';
import { HealthCheckServers } from './health-check.ts';
import { LbSync } from './lb-sync.ts';

const freePort = () => new Promise<number>((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const port = (s.address() as { port: number }).port;
    s.close(() => resolve(port));
  });
});

test('healthCheckNodePort is read from the Service; a bad one is named', () => {
  const base = { metadata: { name: 'lb', namespace: 'default' }, spec: { type: 'LoadBalancer', clusterIP: '10.96.0.40', externalTrafficPolicy: 'Local', ports: [{ port: 80, targetPort: 8080, nodePort: 30040 }] } };
  assert.equal(normalizeService({ ...base, spec: { ...base.spec, healthCheckNodePort: 32000 } }).value?.healthCheckNodePort, 32000);
  assert.equal(normalizeService(base).value?.healthCheckNodePort, undefined);
  const bad = normalizeService({ ...base, spec: { ...base.spec, healthCheckNodePort: 70000 } });
  assert.match(bad.problems.map((p) => p.message).join(' '), /spec\.healthCheckNodePort.*70000.*is not a port/);
});

test('the agent counts a Service\'s ready endpoints on its node (terminating ones not); its server answers 200 with them, 503 without, and closes with the Service', async () => {
  const services = new MemoryMapIO(SERVICES_MAP, layouts.hypha_lb4_svc_key.size, layouts.hypha_lb4_svc_val.size, 100);
  const backends = new MemoryMapIO(BACKENDS_MAP, 4, layouts.hypha_lb4_backend.size, 100);
  const sync = new LbSync({ table: new LbTable({ services: 100, backends: 100 }), reconciler: new LbReconciler({ services, backends }), node: { name: 'n1', addresses: [] }, log: pino({ level: 'silent' }) });
  const port = await freePort();
  sync.setService('default/lb', svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: port }));
  sync.setSlice('default/lb-abc', slice('lb', [{ ip: '10.244.0.5', node: 'n1' }, { ip: '10.244.0.6', node: 'n1', ready: false, serving: true, terminating: true }, { ip: '10.244.1.5', node: 'n2' }]));
  assert.deepEqual(sync.healthChecks(), [{ port, namespace: 'default', name: 'lb', localEndpoints: 1 }]);
  const hc = new HealthCheckServers(pino({ level: 'silent' }), '127.0.0.1');
  try {
    hc.update(sync.healthChecks());
    await new Promise((r) => setTimeout(r, 100));
    let r = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { service: { namespace: 'default', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
    // Only terminating endpoints left here: 503.
    sync.setSlice('default/lb-abc', slice('lb', [{ ip: '10.244.0.6', node: 'n1', ready: false, serving: true, terminating: true }]));
    hc.update(sync.healthChecks());
    r = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { localEndpoints: number }).localEndpoints, 0);
    sync.setService('default/lb', undefined);
    hc.update(sync.healthChecks());
    await new Promise((r2) => setTimeout(r2, 100));
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`));
  } finally {
    hc.close();
  }
});
