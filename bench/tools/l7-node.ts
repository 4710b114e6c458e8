// The node side of `make bench-l7` (bench/l7.ts), run inside the bed's node
// netns (wired as test/e2e/tools/l7-transparent-probe.ts is):
//
//   l7-node.ts <pin root> <control socket> <client ip> <client veth> <server ip> <server veth> <port>
//
// Loads Hypha's datapath under <pin root> (POLICY on), puts its tc programs
// on both pods' host veths, gives the two pods identities in the ipcache,
// makes the proxy routing and runs the real L7 proxy (src/l7/proxy.ts) on
// 127.0.0.1:15001, transparent, its upstream dialled from the client's
// address. Prints {"ready":true} once it listens on <control socket> (a unix
// socket path, reachable from the bench outside this netns), where it reads
// one JSON command a line and answers one JSON line:
//
//   {"path": "direct"}            no policy selects the server
//   {"path": "l4"}                one NetworkPolicy: the client on <port>/TCP
//   {"path": "l7", "rules": n}    one HyphaNetworkPolicy: the same port with n
//                                 http rules, n-1 path prefixes no request has
//                                 and GET / last (every request walks them all)
//
// compiles it with src/policy (compilePolicies), writes the maps through
// PolicyMapsReconciler (encodePolicyMaps: the http entry gets proxy_port
// 15001), and answers {"programmed": path, "keys": n, "proxied": n}. The
// proxy judges each connection with l7ChecksFor over the same compile.
// {"stats": true} answers the proxy's counts: requests it judged (allowed
// or denied) and errors. SIGTERM: detach,
// unpin, exit 0.
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { type Socket, createServer } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import * as native from '../../native/index.ts';
import { ConfigFlags, PolicyFlags } from '../../src/abi/abi.gen.ts';
import { ipcacheKeyCodec, ipcacheValCodec } from '../../src/datapath/ipcache-reconciler.ts';
import { BpfMapIO, Datapath } from '../../src/datapath/loader.ts';
import { POLICY_CIDR_MAP, POLICY_EPS_MAP, POLICY_MAP, PolicyMapsReconciler, encodePolicyMaps, policyValCodec } from '../../src/datapath/policy-maps.ts';
import { toBytes } from '../../src/datapath/reconciler.ts';
import { Rtnl } from '../../src/datapath/rtnl.ts';
import { DEFAULT_L7_PROXY_PORT } from '../../src/l7/constants.ts';
import { L7Proxy } from '../../src/l7/proxy.ts';
import { L7SpliceProxy } from '../../src/l7/splice-proxy.ts';
import { dialTransparent, ensureProxyRouting, makeTransparent } from '../../src/l7/transparent.ts';
import { type CompiledPolicy, compilePolicies } from '../../src/policy/compile.ts';
import { policy } from '../../src/policy/fixtures.ts';
import { l7ChecksFor } from '../../src/policy/l7.ts';
import type { Endpoint, Identity, NetworkPolicy } from '../../src/policy/model.ts';
import { normalizeHyphaNetworkPolicy } from '../../src/policy/normalize.ts';

const [pinRoot = '', controlPath = '', clientIp = '', clientVeth = '', serverIp = '', serverVeth = '', portText = '0', proxyKind = 'splice'] = process.argv.slice(2);
const port = Number(portText);
if (!pinRoot.startsWith('/sys/fs/bpf/') || !controlPath || !port) {
  console.error('usage: l7-node.ts <pin root under /sys/fs/bpf> <control socket> <client ip> <client veth> <server ip> <server veth> <port>');
  process.exit(2);
}

const CLIENT_ID = 1000;
const SERVER_ID = 1001;
const identities: Identity[] = [
  { id: CLIENT_ID, namespace: 'bench', podLabels: { app: 'client' }, namespaceLabels: {} },
  { id: SERVER_ID, namespace: 'bench', podLabels: { app: 'server' }, namespaceLabels: {} },
];
const endpoints: Endpoint[] = [
  { name: 'client', namespace: 'bench', identity: CLIENT_ID, ports: [], addresses: [clientIp] },
  { name: 'server', namespace: 'bench', identity: SERVER_ID, ports: [], addresses: [serverIp] },
];
const identityOf = (ip: string): number => (ip === clientIp ? CLIENT_ID : ip === serverIp ? SERVER_ID : 0);

/** The policies of one path, as the agent's informers would hand them to the compiler. */
function policiesFor(path: string, rules: number): NetworkPolicy[] {
  const ingress = (ports: unknown[]) => ({ podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports }] });
  if (path === 'direct') return [];
  if (path === 'l4') return [policy('bench', 'allow-client', ingress([{ protocol: 'TCP', port }]))];
  if (path !== 'l7' || !(rules >= 1)) throw new Error(`unknown path ${path} (rules ${rules})`);
  const http = [...Array.from({ length: rules - 1 }, (_, k) => ({ method: 'GET', path: { prefix: `/nomatch-${k}/` } })), { method: 'GET', path: { prefix: '/' } }];
  const raw = { apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaNetworkPolicy', metadata: { namespace: 'bench', name: 'allow-client-http' }, spec: ingress([{ protocol: 'TCP', port, http }]) };
  const { value, problems } = normalizeHyphaNetworkPolicy(raw);
  if (!value || problems.length) throw new Error(`HyphaNetworkPolicy: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
  return [value];
}

const dp = await Datapath.load({ pinRoot, mapSizes: { services: 256, backends: 256, affinity: 256, ct: 65536 } });
let proxy: L7Proxy | L7SpliceProxy | undefined;
// The agent's proxy (L7SpliceProxy), or with 'node-http' L7Proxy (Node's http server and client).
const Impl = proxyKind === 'node-http' ? L7Proxy : L7SpliceProxy;
const attached: number[] = [];
let cleaned = false;
const cleanup = (): void => {
  if (cleaned) return;
  cleaned = true;
  for (const ifindex of attached) {
    for (const dir of ['ingress', 'egress'] as const) {
      try {
        native.tcDetach(ifindex, dir);
      } catch {
        // the veth may be gone already
      }
    }
  }
  try {
    dp.close();
  } catch (err) {
    console.error(err);
  }
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(controlPath, { force: true });
};
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(0);
  });
}
process.on('exit', cleanup);

let compiled: CompiledPolicy = compilePolicies({ identities, endpoints, policies: [] });
let requests = 0;
/** Requests the proxy answered itself with an error (a client that went away mid-request, an upstream failure). */
let errors = 0;
try {
  const rtnl = Rtnl.open();
  try {
    await ensureProxyRouting(rtnl);
  } finally {
    rtnl.close();
  }
  dp.writeConfig({
    flags: ConfigFlags.POLICY, loopback_addr: '169.254.42.1', snat_addr: '0.0.0.0',
    snat_port_min: 61000, snat_port_max: 65535, nodeport_min: 30000, nodeport_max: 32767, seen_mark: 0,
  });
  for (const [ip, identity] of [[clientIp, CLIENT_ID], [serverIp, SERVER_ID]] as const) {
    native.mapUpdate(dp.map('hypha_ipcache_v1'), ipcacheKeyCodec.encode({ prefixlen: 32, addr: ip }), ipcacheValCodec.encode({ identity, node_addr: '0.0.0.0', flags: 1 }));
  }
  for (const dev of [clientVeth, serverVeth]) {
    const ifindex = native.ifNameToIndex(dev);
    native.tcAttach(ifindex, 'ingress', dp.programs.fromPod);
    native.tcAttach(ifindex, 'egress', dp.programs.toPod);
    attached.push(ifindex);
  }
  proxy = new Impl({
    resolve: (sock: Socket) => {
      const src = { ip: sock.remoteAddress ?? '', port: sock.remotePort ?? 0, identity: identityOf(sock.remoteAddress ?? '') };
      const dst = { ip: sock.localAddress ?? '', port: sock.localPort ?? 0, identity: identityOf(sock.localAddress ?? '') };
      return { src, dst, checks: l7ChecksFor(compiled, { src, dst, proto: 'TCP', port: dst.port }) };
    },
    connectUpstream: (flow) => dialTransparent({ ip: flow.src.ip }, { ip: flow.dst.ip, port: flow.dst.port }),
    log: pino({ level: 'silent' }),
    registry: new Registry(),
    onAccess: (e) => {
      if (e.verdict === 'error') errors++;
      else requests++;
    },
  });
  await proxy.listen(DEFAULT_L7_PROXY_PORT, '127.0.0.1');
  makeTransparent(proxy.fd());
} catch (err) {
  cleanup();
  throw err;
}

const io = (name: typeof POLICY_MAP | typeof POLICY_EPS_MAP | typeof POLICY_CIDR_MAP): BpfMapIO => new BpfMapIO(name, dp.map(name));
const rec = new PolicyMapsReconciler({ policy: io(POLICY_MAP), eps: io(POLICY_EPS_MAP), cidrs: io(POLICY_CIDR_MAP) });
const proxyVal = toBytes(policyValCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: DEFAULT_L7_PROXY_PORT }));

async function command(line: string): Promise<Record<string, unknown>> {
  const cmd = JSON.parse(line) as { path?: string; rules?: number; stats?: boolean };
  if (cmd.stats) return { requests, errors };
  const next = compilePolicies({ identities, endpoints, policies: policiesFor(cmd.path ?? '', cmd.rules ?? 0) });
  const enc = encodePolicyMaps(next, rec.capacity, [], [], { proxyPort: DEFAULT_L7_PROXY_PORT });
  const problems = [...next.problems, ...enc.problems];
  if (problems.length) throw new Error(problems.map((p) => p.message).join('; '));
  compiled = next;
  await rec.sync(enc.maps);
  dp.bumpPolicyGeneration();
  const pol = enc.maps.get(POLICY_MAP)!;
  const proxied = [...pol.values()].filter((v) => v === proxyVal).length;
  const httpRules = next.endpoints.flatMap((e) => e.ingress.entries).reduce((s, e) => s + (e.http?.length ?? 0), 0);
  return { programmed: cmd.path, rules: cmd.rules ?? 0, keys: pol.size, proxied, http_rules: httpRules };
}

// The control socket: a path, so the bench reaches it from outside this netns.
const control = createServer((c) => {
  (async () => {
    for await (const line of createInterface({ input: c })) {
      if (!line.trim()) continue;
      let out: Record<string, unknown>;
      try {
        out = await command(line);
      } catch (err) {
        out = { error: (err as Error).message };
      }
      c.write(`${JSON.stringify(out)}\n`);
    }
  })().catch(() => c.destroy());
});
rmSync(controlPath, { force: true });
control.listen(controlPath, () => console.log(JSON.stringify({ ready: true })));
