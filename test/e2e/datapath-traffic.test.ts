// The datapath under real traffic (issue 11): what a production node sees
// every day, in namespaces with real agents and real sockets.
//
// Two nodes and a host outside the cluster on one fabric, standalone agents
// following Kubernetes YAML: n1 with XDP on its external device, n2 with the tc
// program alone, so NodePort cases go through both hooks.
//   1. a client whose source port is another Service's NodePort, and the
//      node's own connections from NodePort-range ports;
//   2. a UDP flow with a fixed source port moves off a removed backend;
//   3. a 4 KB UDP answer, and a 4 KB request, through a ClusterIP (fragments);
//   4. a client that closes with an RST: both conntrack entries close, and the
//      tuple is free at once.
// Then, in a topology of its own, 5: path MTU discovery through a ClusterIP and
// a NodePort when the link between the nodes takes less than the pods send.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CtDir, CtFlags } from '../../src/abi/abi.gen.ts';
import { TestAgent, eventually } from './lib/agent.ts';
import { ManifestDir, type ServiceSpec, serviceObject, sliceObject } from './lib/manifests.ts';
import { type Host, type Node, type Pod, type Proc, Topology, toolArgv } from './lib/topology.ts';

interface OnceResult { ok: boolean; reply?: string; error?: string; ms: number; localPort?: number }
interface StreamResult { ok: boolean; reply?: string; error?: string; sent: number; echoed: number }
interface DatagramResult { ok: boolean; from?: string; bytes?: number; reply?: string; error?: string }
interface UploadResult { ok: boolean; reply?: string; answer?: string; error?: string; sent: number; ms: number }
interface Answer { t: number; from: string; reply: string }

/** The agents' default NodePort range. */
const NODEPORT_MIN = 30000;
const NODEPORT_MAX = 32767;
const inNodePortRange = (p: number) => p >= NODEPORT_MIN && p <= NODEPORT_MAX;
const TCP = 6;

const ep = (p: Pod) => ({ ip: p.ip, node: p.node.name });
/** `b2 192.168.77.11:40000` -> { name, addr, port } (echo-server --peer-port). */
function peerOf(greeting: string | undefined): { name: string; addr: string; port: number } | undefined {
  const m = /^(\S+) ([\d.]+):(\d+)/.exec(greeting ?? '');
  return m ? { name: m[1]!, addr: m[2]!, port: Number(m[3]) } : undefined;
}

// NodePort A's only backend is on n2, B's on n1: a client of A entering at n1
// whose source port is B, and a client of B entering at n2 from port A.
const npA: ServiceSpec = { name: 'np-a', type: 'NodePort', clusterIP: '10.96.8.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30410 }] };
const npB: ServiceSpec = { name: 'np-b', type: 'NodePort', clusterIP: '10.96.8.11', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30411 }] };
const udp: ServiceSpec = { name: 'udp', clusterIP: '10.96.8.53', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }] };
const big: ServiceSpec = { name: 'big', clusterIP: '10.96.8.54', ports: [{ name: 'dns', port: 53, targetPort: 5300, protocol: 'UDP' }] };
const tcp: ServiceSpec = { name: 'tcp', clusterIP: '10.96.8.80', ports: [{ name: 'http', port: 80, targetPort: 8080 }] };
const httpPorts = [{ name: 'http', port: 8080 }];
const udpPorts = [{ name: 'dns', port: 5353, protocol: 'UDP' as const }];

describe('real traffic through the datapath: replies, stale flows, fragments, one-sided close', () => {
  let topo: Topology;
  let n1: Node;
  let n2: Node;
  let outside: Host;
  const pods: Record<string, Pod> = {};
  const agents: TestAgent[] = [];
  let m: ManifestDir;
  let work: string;

  const json = <T>(where: Pod | Host | Node, args: string[]) => topo.execJson<T>(where, toolArgv('client', args), { allowFail: true });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'dptraffic' });
    n1 = await topo.addNode('n1');
    n2 = await topo.addNode('n2');
    outside = await topo.addExternalHost('outside');
    m = new ManifestDir(path.join(work, 'services'));
    for (const [node, mode] of [[n1, 'xdp'], [n2, 'tc']] as const) {
      const other = node === n1 ? n2 : n1;
      const a = new TestAgent(topo, node, {
        pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`, servicesDir: m.dir, workDir: path.join(work, node.name), external: 'eth0', externalMode: mode,
        routing: { nodes: [{ name: other.name, addresses: [other.ip], podCIDRs: [other.podCidr] }] },
      });
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.start()));
    for (const [name, node] of [['c1', n1], ['b1', n1], ['u1', n1], ['u2', n1], ['big', n1], ['c2', n2], ['b2', n2], ['u3', n2]] as const) {
      pods[name] = await topo.addPod(node, name);
    }
    await Promise.all([
      ...['b1', 'b2'].map((n) => topo.spawnReady(pods[n]!, toolArgv('echo-server', ['--name', n, '--port', '8080', '--peer-port']))),
      ...['u1', 'u2', 'u3'].map((n) => topo.spawnReady(pods[n]!, toolArgv('echo-server', ['--name', n, '--port', '5353', '--udp']))),
      topo.spawnReady(pods.big!, toolArgv('echo-server', ['--name', 'big', '--port', '5300', '--udp', '--udp-answer-bytes', '4000'])),
      topo.spawnReady(outside, toolArgv('echo-server', ['--name', 'outside', '--port', '9000', '--peer-port'])),
    ]);
    m.write('np-a.yaml', [serviceObject(npA), sliceObject(npA, [ep(pods.b2!)], httpPorts)]);
    m.write('np-b.yaml', [serviceObject(npB), sliceObject(npB, [ep(pods.b1!)], httpPorts)]);
    m.write('udp.yaml', [serviceObject(udp), sliceObject(udp, [ep(pods.u1!), ep(pods.u2!)], udpPorts)]);
    m.write('big.yaml', [serviceObject(big), sliceObject(big, [ep(pods.big!)], [{ name: 'dns', port: 5300, protocol: 'UDP' }])]);
    m.write('tcp.yaml', [serviceObject(tcp), sliceObject(tcp, [ep(pods.b2!)], httpPorts)]);
    for (const a of agents) {
      await a.waitForFrontends(['10.96.8.10:80/TCP', '10.96.8.11:80/TCP', '10.96.8.54:53/UDP', '10.96.8.80:80/TCP'], 1);
      await a.waitForFrontends(['10.96.8.53:53/UDP'], 2);
    }
  });

  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await topo?.destroy();
    for (const a of agents) a.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // 1. Replies before new flows; source NAT never keeps a NodePort-range port.
  const entries = () => [
    { entry: n1, hook: 'XDP', to: 30410, from: 30411, backend: 'b2' },
    { entry: n2, hook: 'tc', to: 30411, from: 30410, backend: 'b1' },
  ];

  for (const i of [0, 1]) {
    test(`outside -> NodePort whose backend is on the other node, from a source port that is a NodePort with a local backend: data both ways (entry ${i === 0 ? 'n1, XDP' : 'n2, tc'})`, async () => {
      const e = entries()[i]!;
      const r = await json<StreamResult>(outside, ['stream', '--to', `${e.entry.ip}:${e.to}`, '--from-port', String(e.from), '--duration', '1', '--interval', '10', '--timeout', '3000']);
      assert.equal(r.ok, true, `${e.hook} on ${e.entry.name}: the connection from port ${e.from} failed (its replies taken for a new flow to NodePort ${e.from}?): ${JSON.stringify(r)}`);
      assert.equal(peerOf(r.reply)?.name, e.backend, JSON.stringify(r));
      assert.ok(r.sent > 50 && r.echoed === r.sent, `every line echoed: ${JSON.stringify(r)}`);
    });
  }

  test('a client port in the NodePort range is not kept by the source NAT to a remote backend', async () => {
    const seen: string[] = [];
    for (const [i, e] of entries().entries()) {
      // A port in the range that is no Service's NodePort: the connection works
      // today; what the backend sees as its source is the point.
      const from = 30498 + i;
      const r = await json<OnceResult>(outside, ['once', '--to', `${e.entry.ip}:${e.to}`, '--from-port', String(from), '--timeout', '3000']);
      const peer = peerOf(r.reply);
      assert.equal(peer?.name, e.backend, `${e.hook}: ${JSON.stringify(r)}`);
      assert.equal(peer?.addr, e.entry.ip, `${e.hook}: the backend sees the entry node's address: ${JSON.stringify(r)}`);
      seen.push(`${e.hook}: client port ${from} -> ${peer?.port}`);
      assert.ok(!inNodePortRange(peer?.port ?? 0), `${e.hook}: source NAT kept a port in the NodePort range (${seen.join('; ')})`);
    }
  });

  for (const i of [0, 1]) {
    test(`the node's own connection from a NodePort's port to an outside server works (${i === 0 ? 'n1, XDP' : 'n2, tc'})`, async () => {
      const e = entries()[i]!;
      // The node's own socket on the port of the NodePort whose backend is local.
      const r = await json<StreamResult>(e.entry, ['stream', '--to', `${outside.ip}:9000`, '--from-port', String(e.from), '--duration', '1', '--interval', '10', '--timeout', '3000']);
      assert.equal(r.ok, true, `${e.hook} on ${e.entry.name}: the answers to port ${e.from} were taken for NodePort traffic: ${JSON.stringify(r)}`);
      assert.equal(r.reply, `outside ${e.entry.ip}:${e.from}`);
      assert.ok(r.sent > 50 && r.echoed === r.sent, JSON.stringify(r));
    });
  }

  // 2. Open flows re-check their backend.
  test('a UDP flow with a fixed source port moves to another backend within 1 s of its backend leaving the EndpointSlice, and of the Service being recreated', async (t) => {
    const watch = topo.spawn(pods.c1!, toolArgv('client', ['udp-watch', '--to', '10.96.8.53:53', '--from-port', '40053', '--interval', '50', '--duration', '30']));
    try {
      const answerAfter = async (t0: number, match: (a: Answer) => boolean, what: string, timeoutMs = 5000): Promise<Answer> => {
        const line = await watch.waitForLine((l) => {
          const a = parseAnswer(l);
          return a !== undefined && a.t >= t0 && match(a);
        }, { timeoutMs }).catch((err: Error) => {
          const after = answers(watch).filter((a) => a.t >= t0);
          const by = Object.entries(countBy(after.map((a) => a.reply))).map(([k, v]) => `${k}: ${v}`).join(', ');
          throw new Error(`${what}: not within ${timeoutMs} ms (answers since the change: ${by || 'none'}): ${err.message}`);
        });
        return parseAnswer(line)!;
      };
      const first = await answerAfter(0, () => true, 'a first answer');
      const victim = first.reply;
      assert.ok(['u1', 'u2'].includes(victim), JSON.stringify(first));
      const stay = victim === 'u1' ? 'u2' : 'u1';
      // A few answers in a row from one backend: the flow is settled.
      await answerAfter(first.t + 200, (a) => a.reply === victim, `${victim} still answering`);

      // The backend leaves the EndpointSlice (its pod keeps running, as a
      // terminating or misbehaving pod would, and would keep answering).
      const t0 = Date.now();
      m.write('udp.yaml', [serviceObject(udp), sliceObject(udp, [ep(pods[stay]!)], udpPorts)]);
      const moved = await answerAfter(t0, (a) => a.reply === stay, `the flow on ${stay} after ${victim} left the EndpointSlice`);
      const lag = moved.t - t0;
      const lastVictim = answers(watch).filter((a) => a.reply === victim).at(-1);
      t.diagnostic(`EndpointSlice change -> first answer from ${stay}: ${lag} ms (last answer from ${victim} ${lastVictim ? lastVictim.t - t0 : '-'} ms after the change)`);
      assert.ok(lag < 1000, `the flow moved after ${lag} ms`);
      assert.equal(moved.from, '10.96.8.53:53', 'answers come from the ClusterIP');

      // The Service is deleted, then recreated with the same ClusterIP and another backend.
      m.remove('udp.yaml');
      await eventually('the Service gone from the maps', () => agents[0]!.backendsOf('10.96.8.53:53/UDP') === undefined);
      const t1 = Date.now();
      m.write('udp.yaml', [serviceObject(udp), sliceObject(udp, [ep(pods.u3!)], udpPorts)]);
      const recreated = await answerAfter(t1, (a) => a.reply === 'u3', `the flow on u3 after the Service was recreated with it`);
      const lag2 = recreated.t - t1;
      t.diagnostic(`Service recreated (same ClusterIP, backend u3) -> first answer from u3: ${lag2} ms`);
      assert.ok(lag2 < 1000, `the flow moved to the recreated Service's backend after ${lag2} ms`);
    } finally {
      await watch.stop({ graceMs: 500 });
      m.write('udp.yaml', [serviceObject(udp), sliceObject(udp, [ep(pods.u1!), ep(pods.u2!)], udpPorts)]);
    }
  });

  // 3. Fragments of translated datagrams.
  test('a 4000-byte UDP answer through a ClusterIP reaches a client on the same node and on the other node whole, from the ClusterIP', async () => {
    const got: Record<string, DatagramResult> = {};
    for (const c of ['c1', 'c2']) got[c] = await json<DatagramResult>(pods[c]!, ['datagram', '--to', '10.96.8.54:53', '--size', '10', '--timeout', '3000']);
    const want = { ok: true, from: '10.96.8.54:53', bytes: 4000, reply: 'big 10' };
    const seen = Object.fromEntries(Object.entries(got).map(([c, r]) => [c, { ok: r.ok, from: r.from, bytes: r.bytes, reply: r.reply }]));
    assert.deepEqual(seen, { c1: want, c2: want }, JSON.stringify(got));
  });

  test('a 4000-byte UDP request to a ClusterIP (fragmented on its way) reaches the backend whole, from a client on either node', async () => {
    const got: Record<string, DatagramResult> = {};
    for (const c of ['c1', 'c2']) got[c] = await json<DatagramResult>(pods[c]!, ['datagram', '--to', '10.96.8.54:53', '--size', '4000', '--timeout', '3000']);
    const seen = Object.fromEntries(Object.entries(got).map(([c, r]) => [c, { ok: r.ok, from: r.from, reply: r.reply }]));
    const want = { ok: true, from: '10.96.8.54:53', reply: 'big 4000' };
    assert.deepEqual(seen, { c1: want, c2: want }, JSON.stringify(got));
  });

  // 4. One-sided close.
  test('a client that resets its connection through a ClusterIP closes both conntrack entries, and the tuple can be reused at once straight to the backend', async () => {
    const c1 = pods.c1!;
    const b2 = pods.b2!;
    const port = 40080;
    const r = await json<OnceResult>(c1, ['once', '--to', '10.96.8.80:80', '--from-port', String(port), '--reset', '--timeout', '3000']);
    assert.equal(peerOf(r.reply)?.name, 'b2', JSON.stringify(r));
    const agent = agents[0]!;
    const flow = () => {
      const ct = agent.conntrack();
      const svc = ct.find((e) => e.key.dir === CtDir.SERVICE && e.key.proto === TCP && e.key.saddr === c1.ip && e.key.sport === port && e.key.daddr === '10.96.8.80' && e.key.dport === 80);
      const reply = ct.find((e) => e.key.dir === CtDir.REPLY && e.key.proto === TCP && e.key.saddr === b2.ip && e.key.sport === 8080 && e.entry.nat_addr2 === c1.ip && e.entry.nat_port2 === port);
      return { svc, reply };
    };
    const show = (e: ReturnType<typeof flow>['svc']) => (e ? `flags ${e.entry.flags} expires ${e.entry.expires}` : 'missing');
    let last = flow();
    try {
      await eventually('both entries closing', () => {
        last = flow();
        return last.svc && last.reply && last.svc.entry.flags & CtFlags.CLOSING && last.reply.entry.flags & CtFlags.CLOSING;
      }, 3000);
    } catch {
      assert.fail(`after the client's RST: service entry ${show(last.svc)}, reply entry ${show(last.reply)} (CLOSING = ${CtFlags.CLOSING})`);
    }
    const { svc, reply } = last;
    assert.ok(Math.abs(reply!.entry.expires - svc!.entry.expires) <= 2, `the reply entry expires with the flow (${show(reply)}; service entry ${show(svc)})`);
    // The same source port, straight to the backend: its SYN-ACK is not the old flow's.
    const direct = await json<OnceResult>(c1, ['once', '--to', `${b2.ip}:8080`, '--from-port', String(port), '--timeout', '3000']);
    assert.deepEqual([direct.ok, direct.reply], [true, `b2 ${c1.ip}:${port}`], JSON.stringify(direct));
  });
});

/** An answer line of client udp-watch. */
function parseAnswer(line: string): Answer | undefined {
  if (!line.startsWith('{"t":')) return undefined;
  try {
    return JSON.parse(line) as Answer;
  } catch {
    return undefined;
  }
}

function answers(p: Proc): Answer[] {
  return p.lines.map(parseAnswer).filter((a): a is Answer => a !== undefined);
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

// 5. Path MTU through Services. The nodes reach each other's pods over a link
// of their own with MTU 1400 (eth1, a veth pair between the two node
// namespaces); the fabric, where the outside host and the nodes' NodePort
// addresses are, and the pods' veths stay at 1500. So a pod's full-size
// segments, and an outside client's, are 100 bytes too large for the path to
// the backend: only ICMP "fragmentation needed", translated back to the
// Service the sender knows, gets the transfer through.
const INTERNODE_MTU = 1400;
const up: ServiceSpec = { name: 'up', type: 'NodePort', clusterIP: '10.96.9.10', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30420 }] };
const UPLOAD_BYTES = 8 * 1024 * 1024;

describe('path MTU discovery through a Service across a link with a smaller MTU', () => {
  let topo: Topology;
  let n1: Node;
  let n2: Node;
  let outside: Host;
  let c1: Pod;
  let b2: Pod;
  const agents: TestAgent[] = [];
  let work: string;
  const link = { n1: '192.168.78.1', n2: '192.168.78.2' };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hypha-e2e-'));
    topo = await Topology.create({ name: 'dppmtu' });
    n1 = await topo.addNode('n1');
    n2 = await topo.addNode('n2');
    outside = await topo.addExternalHost('outside');
    // The link between the nodes, made inside their namespaces (gone with them).
    await topo.exec(n1, ['ip', 'link', 'add', 'eth1', 'mtu', String(INTERNODE_MTU), 'type', 'veth', 'peer', 'name', 'eth1', 'mtu', String(INTERNODE_MTU), 'netns', topo.netnsPath(n2)]);
    for (const [node, addr] of [[n1, link.n1], [n2, link.n2]] as const) {
      await topo.exec(node, ['ip', 'addr', 'add', `${addr}/24`, 'dev', 'eth1']);
      await topo.exec(node, ['ip', 'link', 'set', 'eth1', 'up']);
    }
    // No receive offload on the entry node's external device (a veth's
    // default, said here so it stays so): the outside host's segments reach
    // the FIB lookup as they were sent. A coalesced super-packet would pass
    // it and go on whole over veths that never check it against the 1400 of
    // the next link, where a real NIC's wire would drop its segments.
    await topo.exec(n1, ['ethtool', '-K', 'eth0', 'gro', 'off']);
    const m = new ManifestDir(path.join(work, 'services'));
    for (const node of [n1, n2]) {
      const other = node === n1 ? n2 : n1;
      // Pods' traffic to the other node goes via its address on the 1400 link.
      agents.push(new TestAgent(topo, node, {
        pinRoot: `/sys/fs/bpf/${topo.prefix}${node.name}`, servicesDir: m.dir, workDir: path.join(work, node.name), external: 'eth0', externalMode: 'xdp',
        routing: { nodes: [{ name: other.name, addresses: [other === n1 ? link.n1 : link.n2, other.ip], podCIDRs: [other.podCidr] }] },
      }));
    }
    await Promise.all(agents.map((a) => a.start()));
    c1 = await topo.addPod(n1, 'c1');
    b2 = await topo.addPod(n2, 'b2');
    await topo.spawnReady(b2, toolArgv('echo-server', ['--name', 'b2', '--port', '8080', '--sink']));
    m.write('up.yaml', [serviceObject(up), sliceObject(up, [ep(b2)], httpPorts)]);
    for (const a of agents) await a.waitForFrontends(['10.96.9.10:80/TCP'], 1);
    const route = await topo.exec(n1, ['ip', '-o', 'route', 'get', b2.ip]);
    assert.match(route.stdout, /dev eth1/, `n1 reaches b2 over the 1400 link: ${route.stdout}`);
    // (ip, not /sys/class/net: nsenter keeps the sysfs of the namespace it came from.)
    const [podLink] = JSON.parse((await topo.exec(c1, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])).stdout) as { mtu?: number }[];
    assert.equal(podLink?.mtu, 1500, 'the pod\'s interface stays at 1500');
  });

  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await topo?.destroy();
    for (const a of agents) a.cleanupPins();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test(`a pod's ${UPLOAD_BYTES >> 20} MB upload through a ClusterIP to a backend behind the ${INTERNODE_MTU} link completes; the pod learns the path MTU for the ClusterIP`, async () => {
    const r = await topo.execJson<UploadResult>(c1, toolArgv('client', ['upload', '--to', '10.96.9.10:80', '--bytes', String(UPLOAD_BYTES), '--timeout', '15000']), { allowFail: true });
    assert.deepEqual([r.ok, r.answer], [true, `b2 ${UPLOAD_BYTES}`], JSON.stringify(r));
    const route = await topo.exec(c1, ['ip', '-o', 'route', 'get', '10.96.9.10']);
    assert.match(route.stdout, new RegExp(`mtu ${INTERNODE_MTU}`), `the translated ICMP error set the path MTU: ${route.stdout}`);
  });

  test(`an outside host's ${UPLOAD_BYTES >> 20} MB upload through the NodePort (link 1500) to a backend behind the ${INTERNODE_MTU} link completes; the host learns the path MTU for the node`, async () => {
    const r = await topo.execJson<UploadResult>(outside, toolArgv('client', ['upload', '--to', `${n1.ip}:30420`, '--bytes', String(UPLOAD_BYTES), '--timeout', '15000']), { allowFail: true });
    assert.deepEqual([r.ok, r.answer], [true, `b2 ${UPLOAD_BYTES}`], JSON.stringify(r));
    const route = await topo.exec(outside, ['ip', '-o', 'route', 'get', n1.ip]);
    assert.match(route.stdout, new RegExp(`mtu ${INTERNODE_MTU}`), `the node's ICMP error set the path MTU: ${route.stdout}`);
  });
});
