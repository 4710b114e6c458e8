import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies } from './compile.ts';
import { describe as describeEndpoint } from './describe.ts';
import { policy, xyz } from './fixtures.ts';
import { CIDR_IDENTITY_BASE, IDENTITY_HOST, IDENTITY_WORLD } from './model.ts';
import { formatTrace, isTraceInputError, trace } from './trace.ts';

const k = xyz();
const compiled = compilePolicies({
  identities: k.identities,
  endpoints: k.endpoints,
  policies: [
    policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    policy('x', 'a-from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ port: 80 }, { port: 'serve-81-udp', protocol: 'UDP' }] }] }),
    policy('x', 'b-to-a', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { pod: 'a' } } }] }, { to: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }], ports: [{ port: 443 }] }] }),
    policy('y', 'from-x-cidr', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ ipBlock: { cidr: '10.0.1.0/24', except: ['10.0.1.3/32'] } }], ports: [{ protocol: 'SCTP', port: 80 }] }] }),
  ],
});

describe('trace', () => {
  test('allowed both ways, naming the entries and rules', () => {
    const r = trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'TCP', port: 80 });
    assert.equal(r.verdict, 'allowed');
    assert.equal(r.egress.verdict, 'allowed');
    assert.deepEqual(r.egress.allowedBy.map((e) => [e.identity, e.proto, e.ports, e.because]), [[k.id('x/a'), 'any', 'any', [{ policy: 'x/b-to-a', direction: 'egress', rule: 0, peer: 0, port: 'all' }]]]);
    assert.equal(r.ingress.verdict, 'allowed');
    assert.deepEqual(r.ingress.allowedBy.map((e) => e.because), [[{ policy: 'x/a-from-b', direction: 'ingress', rule: 0, peer: 0, port: 0 }]]);
    assert.deepEqual(formatTrace(r, { identities: k.identities }), [
      `x/b 10.0.1.2 [identity ${k.id('x/b')} (x: pod=b), in cidr:10.0.1.0/24 (${CIDR_IDENTITY_BASE})] -> ` +
        `x/a 10.0.1.1 [identity ${k.id('x/a')} (x: pod=a), in cidr:10.0.1.0/24 (${CIDR_IDENTITY_BASE})] 80/TCP: ALLOWED`,
      '  egress at the source (x/b): allowed',
      `    by the entry for identity ${k.id('x/a')} (x: pod=a) on any protocol, any port`,
      '      because x/b-to-a spec.egress[0]: to[0], any port (no ports)',
      '  ingress at the destination (x/a): allowed',
      `    by the entry for identity ${k.id('x/b')} (x: pod=b) on TCP port 80`,
      '      because x/a-from-b spec.ingress[0]: from[0], ports[0]',
    ]);
  });

  test('denied by default deny, naming the policies that select the pod', () => {
    const r = trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'TCP', port: 81 });
    assert.deepEqual([r.verdict, r.egress.verdict, r.ingress.verdict], ['denied', 'allowed', 'denied']);
    assert.deepEqual(r.ingress.selectedBy, ['x/a-from-b', 'x/deny-all']);
    assert.equal(formatTrace(r)[4], '  ingress at the destination (x/a): DENIED by default deny (selected by x/a-from-b, x/deny-all); no entry allows it');
  });

  test('named port resolved on the destination; UDP is not TCP', () => {
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'UDP', port: 81 }).ingress.verdict, 'allowed');
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'UDP', port: 80 }).ingress.verdict, 'denied');
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'SCTP', port: 80 }).ingress.verdict, 'denied');
  });

  test('open: not enforced; elsewhere: not a compiled endpoint', () => {
    const r = trace(compiled, { from: { endpoint: 'y/b' }, to: { endpoint: 'y/c' }, proto: 'TCP', port: 80 });
    assert.deepEqual([r.verdict, r.egress.verdict, r.ingress.verdict], ['allowed', 'open', 'open']);
    const w = trace(compiled, { from: { ip: '203.0.113.9' }, to: { endpoint: 'y/c' }, proto: 'TCP', port: 80 });
    assert.deepEqual([w.from.identity, w.egress.verdict, w.ingress.verdict], [IDENTITY_WORLD, 'elsewhere', 'open']);
    assert.match(formatTrace(w)[1]!, /egress at the source: not a local endpoint, not judged here/);
  });

  test('ipBlock: the source address\'s CIDR identity, except honoured; SCTP kept apart', () => {
    const fromXa = trace(compiled, { from: { ip: k.ipOf('x/a') }, to: { endpoint: 'y/a' }, proto: 'SCTP', port: 80 });
    assert.deepEqual([fromXa.from.endpoint, fromXa.from.cidr?.cidr, fromXa.ingress.verdict], ['x/a', '10.0.1.0/24', 'allowed']);
    assert.deepEqual(fromXa.ingress.peerIdentities, [k.id('x/a'), CIDR_IDENTITY_BASE]);
    const fromXc = trace(compiled, { from: { endpoint: 'x/c' }, to: { endpoint: 'y/a' }, proto: 'SCTP', port: 80 });
    assert.deepEqual([fromXc.from.cidr?.cidr, fromXc.ingress.verdict], ['10.0.1.3/32', 'denied']);
    assert.equal(trace(compiled, { from: { endpoint: 'x/a' }, to: { endpoint: 'y/a' }, proto: 'TCP', port: 80 }).ingress.verdict, 'denied');
    assert.equal(trace(compiled, { from: { identity: k.id('x/a') }, to: { endpoint: 'y/a' }, proto: 'SCTP', port: 80 }).ingress.verdict, 'denied',
      'an identity alone has no address: no ipBlock matches it');
  });

  test('egress to an outside address through a block with except', () => {
    const ok = trace(compiled, { from: { endpoint: 'x/b' }, to: { ip: '192.0.2.10' }, proto: 'TCP', port: 443 });
    assert.deepEqual([ok.verdict, ok.egress.verdict, ok.ingress.verdict], ['allowed', 'allowed', 'elsewhere']);
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { ip: '192.0.2.200' }, proto: 'TCP', port: 443 }).verdict, 'denied');
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { ip: '192.0.2.10' }, proto: 'TCP', port: 80 }).verdict, 'denied');
  });

  test('the ipcache lookup names remote addresses; the host is always let in', () => {
    const r = trace(compiled, { from: { ip: '10.9.0.5' }, to: { endpoint: 'x/c' }, proto: 'TCP', port: 80 }, { ipcache: (ip) => (ip === '10.9.0.5' ? k.id('x/b') : undefined) });
    assert.equal(r.from.identity, k.id('x/b'));
    const host = trace(compiled, { from: { identity: IDENTITY_HOST }, to: { endpoint: 'x/c' }, proto: 'TCP', port: 8080 });
    assert.equal(host.verdict, 'allowed');
    assert.match(formatTrace(host).join('\n'), /implicit: the node's own traffic to its pods is never restricted/);
  });

  test('ICMP is allowed only by entries for every protocol', () => {
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'ICMP' }).verdict, 'denied');
    assert.equal(trace(compiled, { from: { endpoint: 'x/b' }, to: { endpoint: 'x/a' }, proto: 'ICMP' }).egress.verdict, 'allowed');
  });

  test('bad queries name the field and value', () => {
    const cases: [Parameters<typeof trace>[1], string][] = [
      [{ from: { endpoint: 'x/nope' }, to: { endpoint: 'x/a' }, proto: 'TCP', port: 80 }, 'from.endpoint: "x/nope" is not a compiled endpoint'],
      [{ from: { ip: '10.0.0.300' }, to: { endpoint: 'x/a' }, proto: 'TCP', port: 80 }, 'from.ip: "10.0.0.300" is not an IPv4 address'],
      [{ from: { endpoint: 'x/a' }, to: { endpoint: 'x/b' }, proto: 'TCP' }, 'port: undefined is not a valid port number (1-65535), which TCP needs'],
      [{ from: { endpoint: 'x/a' }, to: { identity: 0 }, proto: 'TCP', port: 1 }, 'to.identity: 0 is not a valid identity'],
      [{ from: { endpoint: 'x/a' }, to: { endpoint: 'x/b' }, proto: 'GRE' as 'TCP', port: 1 }, 'proto: "GRE" is not one of TCP, UDP, SCTP, ICMP'],
    ];
    for (const [q, msg] of cases) {
      assert.throws(() => trace(compiled, q), (err: unknown) => isTraceInputError(err) && err.message.startsWith(msg), msg);
    }
  });
});

describe('describe', () => {
  test('a pod\'s entries in words', () => {
    const lines = describeEndpoint(compiled.endpoints.find((e) => e.key === 'x/b')!, { identities: k.identities, cidrs: compiled.cidrs });
    assert.deepEqual(lines, [
      `x/b (identity ${k.id('x/b')} (x: pod=b))`,
      '  ingress: enforced, default deny (selected by x/deny-all); 1 allow entry',
      '    allow from reserved:host (1) on any protocol, any port',
      "      because implicit: the node's own traffic to its pods is never restricted by NetworkPolicy",
      '  egress: enforced, default deny (selected by x/b-to-a, x/deny-all); 2 allow entries',
      `    allow to identity ${k.id('x/a')} (x: pod=a) on any protocol, any port`,
      '      because x/b-to-a spec.egress[0]: to[0], any port (no ports)',
      `    allow to cidr:192.0.2.0/24 (${CIDR_IDENTITY_BASE + 2}) on TCP port 443`,
      '      because x/b-to-a spec.egress[1]: to[0], ports[0]',
    ]);
    assert.deepEqual(describeEndpoint(compiled.endpoints.find((e) => e.key === 'z/a')!), [
      `z/a (identity ${k.id('z/a')})`,
      '  ingress: open (no policy selects this pod for ingress)',
      '  egress: open (no policy selects this pod for egress)',
    ]);
  });
});
