// NetworkPolicy in the agents against a real API server: two nodes, pods
// made through the CNI plugin with Pod objects and labels (their identities
// allocated by the agents). NetworkPolicy objects created, updated and
// deleted leave each node's pinned policy maps holding exactly the entries
// the policies call for (read with native map dumps, the expected entries
// written out by hand here, not by the compiler); `hypha policy get` and
// `hypha policy trace` print the deciding rule; a policy with a part Hypha
// cannot enforce gets one Warning Event; a restarted agent keeps the maps
// as pinned while it lists again (no flush) and then follows changes.
// Packet delivery is the reachability-matrix suite's (netpol-matrix).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as native from '../../native/index.ts';
import {
  POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, decodePolicyKey, policyCidrKeyCodec, policyCidrValCodec, policyEpKeyCodec, policyEpValCodec,
} from '../../src/datapath/policy-maps.ts';
import { labelsKey, podLabelSet, stringLabels } from '../../src/identity/labels.ts';
import { KubeClient } from '../../src/k8s/client.ts';
import { HYPHAIDENTITIES_PATH, type HyphaIdentityObject, LABELS_KEY_LABEL } from '../../src/k8s/hyphaidentity.ts';
import { HYPHA_BIN, type TestAgent, eventually } from './lib/agent.ts';
import { Cluster } from './lib/cluster.ts';
import { installIdentityPolicy } from './lib/crds.ts';
import type { Node, Pod } from './lib/topology.ts';

const NS = 'pol';
const NP = `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`;
const CIDR0 = 1 << 24;
const HOST = 1;
const TCP = 6;
const UDP = 17;

interface PolicyMaps {
  /** 'ep identity dir proto ports', sorted */
  policy: string[];
  /** 'ip identity flags', sorted */
  eps: string[];
  /** 'cidr identity', sorted */
  cidrs: string[];
}

function dump(pinRoot: string, name: string): { keys: Uint8Array; values: Uint8Array; count: number; ks: number; vs: number } {
  const h = native.openPinnedMap(path.join(pinRoot, name));
  try {
    const info = native.mapInfo(h);
    return { ...native.mapDump(h), ks: info.keySize, vs: info.valueSize };
  } finally {
    native.close(h);
  }
}

/** The three policy maps as pinned, in words. */
function policyMaps(a: TestAgent): PolicyMaps {
  const p = dump(a.opts.pinRoot, POLICY_MAP);
  const e = dump(a.opts.pinRoot, POLICY_EPS_MAP);
  const c = dump(a.opts.pinRoot, POLICY_CIDR_MAP);
  const rows = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).sort();
  return {
    policy: rows(p.count, (i) => {
      const r = decodePolicyKey(p.keys, i * p.ks);
      return `${r.ep} ${r.identity} ${r.dir} ${r.proto} ${r.ports}`;
    }),
    eps: rows(e.count, (i) => {
      const v = policyEpValCodec.decode(e.values, i * e.vs);
      return `${policyEpKeyCodec.decode(e.keys, i * e.ks).value} ${v.identity} ${v.flags}`;
    }),
    cidrs: rows(c.count, (i) => {
      const k = policyCidrKeyCodec.decode(c.keys, i * c.ks);
      return `${k.addr}/${k.prefixlen} ${policyCidrValCodec.decode(c.values, i * c.vs).identity}`;
    }),
  };
}

describe('NetworkPolicy in the agents: policy maps, policy get and trace, events, restart', () => {
  let c: Cluster;
  let client: KubeClient;
  const pods: Record<string, Pod> = {};
  const labels: Record<string, Record<string, string>> = {};
  const ids: Record<string, number> = {};

  const nsLabels = async (): Promise<Record<string, string>> => stringLabels((await client.get<{ metadata: { labels?: unknown } }>(`/api/v1/namespaces/${NS}`)).metadata.labels);
  const idOf = async (name: string): Promise<number | undefined> => {
    const key = labelsKey(podLabelSet(NS, labels[name]!, await nsLabels()));
    const list = await client.get<{ items: HyphaIdentityObject[] }>(HYPHAIDENTITIES_PATH, { labelSelector: `${LABELS_KEY_LABEL}=${key}` });
    return list.items.length === 1 ? Number(list.items[0]!.metadata.name) : undefined;
  };
  const ip = (name: string) => pods[name]!.ip;

  const addPod = async (node: Node, name: string, podLabels: Record<string, string>, ports: { name: string; containerPort: number; protocol?: string }[] = []): Promise<void> => {
    labels[name] = podLabels;
    await client.create(`/api/v1/namespaces/${NS}/pods`, {
      metadata: { name, labels: podLabels }, spec: { nodeName: node.name, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10.2', ports }] },
    });
    const pod = await c.topo.addPod(node, name, { namespace: NS });
    pods[name] = pod;
    await client.mergePatchStatus(`/api/v1/namespaces/${NS}/pods/${name}`, { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } });
  };

  /** Both agents' maps equal `want` (per agent), or fail showing what they hold and the policy log lines. */
  const mapsAre = (what: string, want: [PolicyMaps, PolicyMaps], timeoutMs = 15_000) => eventually(what, () => {
    return c.agents.every((a, i) => JSON.stringify(policyMaps(a)) === JSON.stringify(want[i]));
  }, timeoutMs).catch((err: Error) => {
    const seen = c.agents.map((a, i) => `${a.node.name}: holds ${JSON.stringify(policyMaps(a))}\n  want ${JSON.stringify(want[i])}`);
    const logs = c.agents.map((a) => a.logs().filter((l) => l.component === 'policy' || l.resource === 'networkpolicies' || Number(l.level) >= 40).map((l) => `${a.node.name}: ${String(l.msg)} ${JSON.stringify({ ...l, msg: undefined, time: undefined, pid: undefined, hostname: undefined })}`).join('\n'));
    throw new Error(`${err.message}\n${seen.join('\n')}\n${logs.join('\n')}`);
  });

  const hypha = (a: TestAgent, args: string[]) => c.topo.exec(a.node, [HYPHA_BIN, ...args], { allowFail: true });

  before(async () => {
    c = await Cluster.create({ name: 'polag', nodes: 2, ipam: 'cluster-pool' });
    await installIdentityPolicy(c.cp.hostKubeconfigPath);
    client = KubeClient.fromKubeconfig(c.cp.hostKubeconfigPath, { userAgent: 'hypha-e2e' });
    await client.create('/api/v1/namespaces', { metadata: { name: NS, labels: { team: 'pol' } } });
    const [n1, n2] = c.nodes as [Node, Node];
    await addPod(n1, 'a', { app: 'a' }, [{ name: 'http', containerPort: 8080 }]);
    await addPod(n1, 'c', { app: 'c' });
    await addPod(n2, 'b', { app: 'b' });
    await eventually('identities of a, b, c', async () => {
      for (const n of ['a', 'b', 'c']) {
        const id = await idOf(n);
        if (id === undefined) return false;
        ids[n] = id;
      }
      return true;
    }, 20_000);
  });

  after(async () => {
    client?.close();
    await c?.destroy();
  });

  const open = (): [PolicyMaps, PolicyMaps] => [
    { policy: [], eps: [`${ip('a')} ${ids.a} 0`, `${ip('c')} ${ids.c} 0`].sort(), cidrs: [] },
    { policy: [], eps: [`${ip('b')} ${ids.b} 0`], cidrs: [] },
  ];

  test('no policy: every local pod has an open entry with its identity, no policy entries', async () => {
    await mapsAre('every pod open', open());
  });

  test('an ingress policy: its entries on the selected pod\'s node only (named port resolved, a UDP range as one prefix, the host entry); policy get and trace name the rule', async () => {
    await client.create(NP, {
      metadata: { name: 'allow-b' },
      spec: { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 'http' }, { port: 9000, endPort: 9003, protocol: 'UDP' }] }] },
    });
    const [o1, o2] = open();
    await mapsAre('allow-b programmed', [{
      policy: [`${ip('a')} ${ids.b} ingress ${TCP} 8080/16`, `${ip('a')} ${ids.b} ingress ${UDP} 9000/14`, `${ip('a')} ${HOST} ingress 0 any`].sort(),
      eps: [`${ip('a')} ${ids.a} 1`, `${ip('c')} ${ids.c} 0`].sort(), cidrs: [],
    }, o2]);
    assert.deepEqual(o1.cidrs, []);
    const [a1, a2] = c.agents as [TestAgent, TestAgent];

    const get = await hypha(a1, ['policy', 'get', `${NS}/a`]);
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(get.stdout.trim().split('\n'), [
      `${NS}/a (identity ${ids.a} (${NS}: app=a))`,
      `  ingress: enforced, default deny (selected by ${NS}/allow-b); 3 allow entries`,
      `    allow from reserved:host (1) on any protocol, any port`,
      `      because implicit: the node's own traffic to its pods is never restricted by NetworkPolicy`,
      `    allow from identity ${ids.b} (${NS}: app=b) on TCP port 8080`,
      `      because ${NS}/allow-b spec.ingress[0]: from[0], ports[0]`,
      `    allow from identity ${ids.b} (${NS}: app=b) on UDP ports 9000-9003`,
      `      because ${NS}/allow-b spec.ingress[0]: from[0], ports[1]`,
      `  egress: open (no policy selects this pod for egress)`,
    ]);

    // From a pod of the other node: judged here at a's ingress, b's egress is n2's.
    const allowed = await hypha(a1, ['policy', 'trace', '--from', `${NS}/b`, '--to', `${NS}/a`, '--port', '8080/TCP']);
    assert.equal(allowed.code, 0, allowed.stderr);
    const lines = allowed.stdout.trim().split('\n');
    assert.equal(lines[0], `${ip('b')} [identity ${ids.b} (${NS}: app=b)] -> ${NS}/a ${ip('a')} [identity ${ids.a} (${NS}: app=a)] 8080/TCP: ALLOWED`);
    assert.ok(lines.includes('  egress at the source: not a local endpoint, not judged here'), allowed.stdout);
    assert.ok(lines.includes(`  ingress at the destination (${NS}/a): allowed`), allowed.stdout);
    assert.ok(lines.includes(`      because ${NS}/allow-b spec.ingress[0]: from[0], ports[0]`), allowed.stdout);
    assert.ok(lines.some((l) => l.startsWith(`note: ${NS}/b is on node ${a2.node.name}, not this one (${a1.node.name})`)), allowed.stdout);

    const denied = await hypha(a1, ['policy', 'trace', '--from', `${NS}/c`, '--to', `${NS}/a`, '--port', '8080/tcp', '--json']);
    const doc = JSON.parse(denied.stdout) as { verdict: string; traces: { result: { ingress: { verdict: string; selectedBy: string[] }; egress: { verdict: string } } }[] };
    assert.equal(doc.verdict, 'denied');
    assert.deepEqual([doc.traces[0]!.result.egress.verdict, doc.traces[0]!.result.ingress.verdict, doc.traces[0]!.result.ingress.selectedBy], ['open', 'denied', [`${NS}/allow-b`]]);
    const text = await hypha(a1, ['policy', 'trace', '--from', `${NS}/c`, '--to', ip('a'), '--port', '9004/UDP']);
    assert.match(text.stdout, new RegExp(`ingress at the destination \\(${NS}/a\\): DENIED by default deny \\(selected by ${NS}/allow-b\\); no entry allows it`));
    // From the other node's agent: b's egress is open there, a's ingress is n1's.
    const there = await hypha(a2, ['policy', 'trace', '--from', `${NS}/b`, '--to', `${NS}/a`, '--port', '8080/TCP']);
    assert.match(there.stdout, new RegExp(`egress at the source \\(${NS}/b\\): open, no policy selects it for egress`));
    assert.match(there.stdout, new RegExp(`note: ${NS}/a is on node ${a1.node.name}`));
  });

  test('bad arguments name the flag and the value and exit 2', async () => {
    const a1 = c.agents[0]!;
    const cases: [string[], RegExp][] = [
      [['policy', 'get', 'a'], /^hypha policy get: pod: "a" is not namespace\/pod$/],
      [['policy', 'trace', '--from', 'pol/b', '--to', 'pol/a', '--port', '80'], /^hypha policy trace: --port: "80" is not PORT\/PROTOCOL \(e\.g\. 80\/TCP\) or ICMP$/],
      [['policy', 'trace', '--from', 'pol/b', '--to', 'pol/a', '--port', '80/HTTP'], /^hypha policy trace: --port: "80\/HTTP" has protocol HTTP, not one of TCP, UDP, SCTP/],
      [['policy', 'trace', '--from', 'b', '--to', 'pol/a', '--port', '80/TCP'], /^hypha policy trace: --from: "b" is not namespace\/pod or an IPv4 address$/],
      [['policy', 'trace', '--from', 'pol/b', '--port', '80/TCP'], /^hypha policy trace: --to: \(missing\) is required/],
    ];
    for (const [args, message] of cases) {
      const r = await hypha(a1, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      // (bin/hypha may say first that it runs the TypeScript of an edited tree.)
      assert.match(r.stderr.trim().split('\n').at(-1)!, message);
    }
    const unknown = await hypha(a1, ['policy', 'trace', '--from', 'pol/nope', '--to', 'pol/a', '--port', '80/TCP']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /from: "pol\/nope" is not a pod of this node, and no Pod of that name is known/);
  });

  test('an update moves the entries; an egress ipBlock fills the CIDR map; an IPv6 block is reported once as a Warning Event on the object', async () => {
    await client.mergePatch(`${NP}/allow-b`, { spec: { ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 81 }] }] } });
    await client.create(NP, {
      metadata: { name: 'egress-b' },
      spec: {
        podSelector: { matchLabels: { app: 'b' } }, policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }, { ipBlock: { cidr: 'fd00::/64' } }] }],
      },
    });
    await mapsAre('allow-b on port 81, egress-b', [{
      policy: [`${ip('a')} ${ids.b} ingress ${TCP} 81/16`, `${ip('a')} ${HOST} ingress 0 any`].sort(),
      eps: [`${ip('a')} ${ids.a} 1`, `${ip('c')} ${ids.c} 0`].sort(), cidrs: ['10.0.0.0/8 16777216', '10.1.0.0/16 16777217'],
    }, {
      policy: [`${ip('b')} ${CIDR0} egress 0 any`], eps: [`${ip('b')} ${ids.b} 2`], cidrs: ['10.0.0.0/8 16777216', '10.1.0.0/16 16777217'],
    }]);
    const events = async () => (await client.get<{ items: { type: string; reason: string; message: string; count: number; involvedObject: { kind: string; name: string; uid: string } }[] }>(
      `/api/v1/namespaces/${NS}/events`, { fieldSelector: 'involvedObject.name=egress-b' })).items;
    const ev = (await eventually('a Warning Event on egress-b', async () => (await events()).find((e) => e.type === 'Warning')))!;
    const uid = (await client.get<{ metadata: { uid: string } }>(`${NP}/egress-b`)).metadata.uid;
    assert.equal(ev.reason, 'PolicyNotEnforced');
    assert.equal(ev.involvedObject.kind, 'NetworkPolicy');
    assert.equal(ev.involvedObject.uid, uid);
    assert.match(ev.message, /^NetworkPolicy pol\/egress-b: spec\.egress\[0\]\.to\[1\]\.ipBlock\.cidr: "fd00::\/64" .*IPv6/);
    // The node of the pod it selects reports it (a node compiles the rules of
    // the policies selecting its pods only): one Event; none on allow-b.
    const [a1, a2] = c.agents as [TestAgent, TestAgent];
    assert.equal(await a2.metric('hypha_policy_problems_reported_total', { kind: 'NetworkPolicy' }), 1);
    assert.equal(await a2.metric('hypha_policy_problems', { kind: 'NetworkPolicy' }), 1);
    assert.equal(await a1.metric('hypha_policy_problems_reported_total', { kind: 'NetworkPolicy' }), 0);
    assert.equal((await events()).length, 1, JSON.stringify(await events()));
    const none = await client.get<{ items: unknown[] }>(`/api/v1/namespaces/${NS}/events`, { fieldSelector: 'involvedObject.name=allow-b' });
    assert.equal(none.items.length, 0);
  });

  test('a pod added where a policy selects it is closed from before its veth exists, and ADD returns only once its entry carries its identity', async () => {
    const n1 = c.nodes[0] as Node;
    const a1 = c.agents[0]!;
    const mapsBefore = c.agents.map(policyMaps) as [PolicyMaps, PolicyMaps];
    await client.create(NP, { metadata: { name: 'deny-new' }, spec: { podSelector: { matchLabels: { app: 'new' } }, policyTypes: ['Ingress'] } });
    const known = new Set(Object.values(pods).map((p) => p.ip));
    // Every value the endpoints map holds for an address that is not an older pod's, polled from before the ADD.
    const seen = new Map<string, Set<string>>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const row of policyMaps(a1).eps) {
          const [addr, id, flags] = row.split(' ');
          if (known.has(addr!)) continue;
          let s = seen.get(addr!);
          if (!s) seen.set(addr!, (s = new Set()));
          s.add(`${id} ${flags}`);
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const waitsBefore = await a1.metric('hypha_policy_pod_start_wait_seconds_count', { outcome: 'enforced' });
    let row: string | undefined;
    try {
      await addPod(n1, 'new', { app: 'new' });
      // Read at once after ADD returned: no time for a compile to catch up.
      row = policyMaps(a1).eps.find((r) => r.startsWith(`${ip('new')} `));
    } finally {
      watching = false;
      await watcher;
    }
    const id = await idOf('new');
    assert.ok(id !== undefined && id >= 256, 'the new pod has a cluster identity');
    assert.equal(row, `${ip('new')} ${id} 1`, 'when ADD returns: its identity, ingress enforced (no allows)');
    const values = [...(seen.get(ip('new')) ?? [])];
    assert.ok(values.length > 0, 'the watcher saw the entry');
    for (const v of values) assert.ok(v === '0 3' || v === `${id} 1`, `only closed (0 3) or the final entry (${id} 1) was ever held, saw ${JSON.stringify(values)}`);
    assert.equal(await a1.metric('hypha_policy_pod_start_wait_seconds_count', { outcome: 'enforced' }), waitsBefore + 1);
    assert.equal(a1.logs().filter((l) => /has not judged the new pod/.test(String(l.msg))).length, 0);
    // Gone with its pod and its policy: the maps as before.
    await c.topo.removePod(pods.new!);
    delete pods.new;
    await client.delete(`/api/v1/namespaces/${NS}/pods/new`);
    await client.delete(`${NP}/deny-new`);
    await mapsAre('the new pod and its policy gone: the maps as before', mapsBefore);
  });

  test('a restarted agent keeps its policy maps while it lists again (watched from the kill until its first write), then follows changes', async () => {
    const a2 = c.agents[1]!;
    const snapshot = () => JSON.stringify(policyMaps(a2));
    const before = snapshot();
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        seen.add(snapshot());
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      await a2.kill9();
      await a2.start(60_000);
      await eventually('the restarted agent wrote its policy maps', async () => (await a2.metric('hypha_policy_syncs_total', { outcome: 'ok' })) >= 1, 30_000);
      await eventually('its identities listed', async () => JSON.parse((await a2.http('/policy/endpoints')).body).synced);
    } finally {
      watching = false;
      await watcher;
    }
    seen.add(snapshot());
    assert.deepEqual([...seen], [before], 'the policy maps never changed');
    const logs = a2.logs().filter((l) => l.component === 'policy' && l.msg === 'policy maps written (first sync)');
    assert.equal(logs.length, 1);
    assert.deepEqual([logs[0]!.upserts, logs[0]!.deletes], [0, 0], 'the first sync after the restart found everything in place');

    await client.delete(`${NP}/egress-b`);
    await client.delete(`${NP}/allow-b`);
    await mapsAre('both policies gone: open again', open());
  });
});
