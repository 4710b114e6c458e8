import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { PolicyEpFlags, layouts } from '../abi/abi.gen.ts';
import { MemoryMapIO } from '../datapath/map-io.ts';
import { POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, policyEpKeyCodec, policyEpValCodec } from '../datapath/policy-maps.ts';
import { isTraceInputError } from '../policy/trace.ts';
import { compileService } from '../services/compile.ts';
import { slice, svc } from '../services/fixtures.ts';
import { LbTable } from '../services/lb-table.ts';
import { AgentPolicy, lbServiceLookup, parsePortProto } from './policy.ts';

function maps() {
  return {
    policy: new MemoryMapIO(POLICY_MAP, layouts.hypha_policy_key.size, layouts.hypha_policy_val.size, 1000),
    eps: new MemoryMapIO(POLICY_EPS_MAP, 4, layouts.hypha_policy_ep.size, 100),
    cidrs: new MemoryMapIO(POLICY_CIDR_MAP, layouts.hypha_ipcache_key.size, layouts.hypha_policy_cidr_val.size, 100),
  };
}

const until = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), what);
};

describe('AgentPolicy', () => {
  test('standalone (no API server): every local endpoint gets an open entry, the generation is bumped once', async () => {
    const m = maps();
    let bumps = 0;
    const p = new AgentPolicy({
      nodeName: 'n1', log: pino({ level: 'silent' }), registry: new Registry(), silenceMs: 1000, resyncMs: 0, maps: m,
      identities: () => undefined, endpoints: () => [{ ip: '10.0.0.1', pod: { namespace: 'x', name: 'a' } }, { ip: '10.0.0.2' }],
      changed: () => bumps++, debounceMs: 1,
    });
    p.start();
    await until('first write', () => p.synced);
    const eps = [...m.eps.entries].map(([k, v]) => [policyEpKeyCodec.decode(Buffer.from(k, 'latin1')).value, policyEpValCodec.decode(v)]);
    assert.deepEqual(eps.sort(), [['10.0.0.1', { identity: 0, flags: 0 }], ['10.0.0.2', { identity: 0, flags: 0 }]]);
    assert.equal(bumps, 1);
    p.request();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(bumps, 1, 'nothing changed, nothing written');
    const doc = p.endpointsDocument(new URLSearchParams({ pod: 'x/a' }));
    assert.deepEqual(doc.endpoints.map((e) => e.text), [['x/a (identity 0)', '  ingress: open (no policy selects this pod for ingress)', '  egress: open (no policy selects this pod for egress)']]);
    const t = p.traceDocument(new URLSearchParams({ from: '10.9.9.9', to: 'x/a', port: '80/TCP' }));
    assert.equal(t.verdict, 'allowed');
    assert.throws(() => p.traceDocument(new URLSearchParams({ from: 'x', to: 'x/a', port: '80/TCP' })), /from: "x" is neither namespace\/pod nor an IPv4 address/);
    assert.throws(() => p.traceDocument(new URLSearchParams({ from: 'x/zz', to: 'x/a', port: '80/TCP' })), /from: "x\/zz" is not a pod of this node/);
    // A Service address is traced at each programmed backend.
    const table = new LbTable({ services: 100, backends: 100 });
    table.set('default/web', compileService(svc('web'), [slice('web', ['10.0.0.1', '10.0.0.7'])], { name: 'node-a', addresses: ['192.168.77.10'] }));
    const lookup = lbServiceLookup(table);
    assert.deepEqual(lookup('10.96.0.10', 80, 'TCP'), { service: 'default/web', frontend: '10.96.0.10:80/TCP', backends: [{ ip: '10.0.0.1', port: 8080 }, { ip: '10.0.0.7', port: 8080 }] });
    assert.equal(lookup('10.96.0.10', 81, 'TCP'), undefined);
    const s = p.traceDocument(new URLSearchParams({ from: '10.0.0.2', to: '10.96.0.10', port: '80/TCP' }), { services: lookup });
    assert.deepEqual(s.traces.map((t) => [t.service, t.backend, t.result.to.endpoint, t.result.port, t.result.verdict]), [
      ['default/web', '10.0.0.1:8080', 'x/a', 8080, 'allowed'], ['default/web', '10.0.0.7:8080', undefined, 8080, 'allowed'],
    ]);
    p.stop();
  });

  test('a pod being added is closed both ways at once, ADD\'s wait ends with the write that names it, a failed ADD leaves nothing', async () => {
    const m = maps();
    const records: { ip: string; pod?: { namespace: string; name: string } }[] = [{ ip: '10.0.0.1' }];
    const p = new AgentPolicy({
      nodeName: 'n1', log: pino({ level: 'silent' }), registry: new Registry(), silenceMs: 1000, resyncMs: 0, maps: m,
      identities: () => undefined, endpoints: () => records, changed: () => undefined, debounceMs: 1,
    });
    const epsNow = () => new Map([...m.eps.entries].map(([k, v]) => [policyEpKeyCodec.decode(Buffer.from(k, 'latin1')).value, policyEpValCodec.decode(v)]));
    const CLOSED = { identity: 0, flags: PolicyEpFlags.INGRESS | PolicyEpFlags.EGRESS };
    // Before the first write (policies not listed): closed, and a bounded wait says no.
    p.closeEndpoint('10.0.0.5');
    assert.deepEqual(epsNow().get('10.0.0.5'), CLOSED, 'written at once, outside a compile');
    assert.equal(await p.whenEnforced('10.0.0.5', 30), false, 'nothing written yet: the wait ends at its bound');
    assert.deepEqual(epsNow().get('10.0.0.5'), CLOSED, 'still closed after the timeout');
    p.start();
    await until('first write', () => p.synced);
    assert.deepEqual(epsNow().get('10.0.0.5'), CLOSED, 'a compile without its record keeps it closed');
    assert.deepEqual(epsNow().get('10.0.0.1'), { identity: 0, flags: 0 });
    // Its record appears (ADD put it): the next write judges it and the wait ends true.
    const wait = p.whenEnforced('10.0.0.5', 2000);
    records.push({ ip: '10.0.0.5' });
    assert.equal(await wait, true);
    assert.deepEqual(epsNow().get('10.0.0.5'), { identity: 0, flags: 0 }, 'judged: open (no pod metadata, standalone)');
    // A second ADD that fails: release removes the closed entry at once and later writes keep it gone.
    p.closeEndpoint('10.0.0.6');
    assert.deepEqual(epsNow().get('10.0.0.6'), CLOSED);
    p.releaseEndpoint('10.0.0.6');
    assert.equal(epsNow().has('10.0.0.6'), false);
    p.request();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([...epsNow().keys()].sort(), ['10.0.0.1', '10.0.0.5']);
    // A pod closed, then deleted before any compile named it: release after DEL drops it too.
    p.closeEndpoint('10.0.0.7');
    p.releaseEndpoint('10.0.0.7');
    p.releaseEndpoint('10.0.0.5'); // a judged pod's release is a no-op: its record's removal is what removes it
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([...epsNow().keys()].sort(), ['10.0.0.1', '10.0.0.5']);
    p.stop();
    assert.equal(await p.whenEnforced('10.0.0.8', 1000), false, 'stopped: no wait');
  });

  test('parsePortProto: N/PROTO in any case, or ICMP; anything else names the field and value', () => {
    assert.deepEqual(parsePortProto('80/tcp', 'port'), { proto: 'TCP', port: 80 });
    assert.deepEqual(parsePortProto('icmp', 'port'), { proto: 'ICMP' });
    for (const [text, why] of [['80', /is not PORT\/PROTOCOL/], ['80/HTTP', /has protocol HTTP/], ['0/UDP', /outside 1-65535/], ['70000/UDP', /outside 1-65535/]] as const) {
      assert.throws(() => parsePortProto(text, '--port'), (e: unknown) => isTraceInputError(e) && e.field === '--port' && e.value === text && why.test(e.message));
    }
  });
});
