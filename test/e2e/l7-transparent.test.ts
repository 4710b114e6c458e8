// L7 redirection on a node of namespaces. First the kernel pieces
// (src/l7/transparent.ts) with nftables marking packets: the proxy rule and
// table, a transparent listener that takes a pod's flow keeping its original
// destination, a transparent upstream that reaches a pod from another pod's
// address. Then the same through Hypha's tc programs (policy maps written by
// hand, a stand-in proxy): the SYN assigned to the listener, the upstream's
// replies steered back to it, and a refusal while no proxy listens.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Rtnl } from '../../src/datapath/rtnl.ts';
import { MARK_TO_PROXY, PROXY_RULE, PROXY_TABLE, ensureProxyRouting, removeProxyRouting } from '../../src/l7/transparent.ts';
import { type Node, type Pod, Topology, toolArgv } from './lib/topology.ts';

const PROBE = fileURLToPath(new URL('./tools/l7-transparent-probe.ts', import.meta.url));
/** An HTTP server for the server pod: answers `<METHOD> <url> from <client address>`, logs each request. */
const HTTP_SERVER = `require('node:http').createServer((q, s) => { console.log('req ' + q.url); s.end(q.method + ' ' + q.url + ' from ' + q.socket.remoteAddress); }).listen(9000, '0.0.0.0', () => console.log(JSON.stringify({ ready: true })));`;
const hex = (n: number): string => `0x${n.toString(16)}`;

describe('L7 redirection: proxy routing, transparent sockets, and the datapath steering flows to the proxy', () => {
  let topo: Topology;
  let n1: Node;
  let server: Pod;
  let client: Pod;

  before(async () => {
    Topology.sweepStale();
    topo = await Topology.create({ name: 'l7t' });
    n1 = await topo.addNode('n1');
    [server, client] = await Promise.all([topo.addPod(n1, 'srv'), topo.addPod(n1, 'cli')]);
    await topo.spawnReady(server, toolArgv('echo-server', ['--name', 'srv', '--port', '8080', '--peer']));
  });
  after(async () => {
    await topo?.destroy();
  });

  test('the rule and the local route are made once and removed', async () => {
    const r = Rtnl.open(topo.netnsPath(n1));
    try {
      await ensureProxyRouting(r);
      await ensureProxyRouting(r); // idempotent
      const rules = (await r.ruleList()).filter((x) => x.table === PROXY_TABLE);
      assert.deepEqual(rules.map((x) => [x.priority, hex(x.fwmark), hex(x.fwmask ?? 0)]), [[PROXY_RULE.priority, hex(MARK_TO_PROXY), hex(MARK_TO_PROXY)]]);
      const routes = await r.routeList({ table: PROXY_TABLE });
      assert.deepEqual(routes.map((x) => [x.dst, x.type]), [['default', 'local']]);
      assert.equal(await removeProxyRouting(r), true);
      assert.deepEqual((await r.ruleList()).filter((x) => x.table === PROXY_TABLE), []);
      assert.equal(await removeProxyRouting(r), false);
    } finally {
      r.close();
    }
  });

  test("a pod's flow to another pod reaches the transparent listener with its original destination", async () => {
    await topo.exec(n1, ['nft', '-f', '-'], {
      input: `table ip hyl7a {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "${client.hostIfname}" ip daddr ${server.ip} tcp dport 9090 meta mark set ${hex(MARK_TO_PROXY)} tproxy ip to 127.0.0.1:15001 accept
  }
}
`,
    });
    try {
      const listener = await topo.spawnReady(n1, [process.execPath, PROBE, 'listen', '15001']);
      const got = await topo.exec(client, toolArgv('client', ['once', '--to', `${server.ip}:9090`, '--timeout', '5000']));
      const line = await listener.waitForLine((l) => l.includes('"local"'), { timeoutMs: 5000 });
      const seen = JSON.parse(line) as { local: string; remote: string };
      assert.equal(seen.local, `${server.ip}:9090`, 'the accepted socket keeps the original destination');
      assert.equal(seen.remote, client.ip);
      assert.match(got.stdout, /proxy/, `the client got the proxy's answer: ${got.stdout} ${got.stderr}`);
    } finally {
      await topo.exec(n1, ['nft', 'delete', 'table', 'ip', 'hyl7a']);
    }
  });

  test("the upstream leaves with the client's address, and its replies come back to it", async () => {
    // what the datapath will do: mark the replies to the proxy's upstream
    await topo.exec(n1, ['nft', '-f', '-'], {
      input: `table ip hyl7b {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "${server.hostIfname}" ip daddr ${client.ip} tcp sport 8080 meta mark set ${hex(MARK_TO_PROXY)}
  }
}
`,
    });
    try {
      const res = await topo.exec(n1, [process.execPath, PROBE, 'dial', client.ip, server.ip, '8080']);
      const out = JSON.parse(res.stdout.trim().split('\n').at(-1) ?? '{}') as { greeting?: string; local?: string; error?: string };
      assert.equal(out.error, undefined, res.stderr);
      assert.equal(out.greeting, `srv ${client.ip}`, 'the server saw the client pod, not the node');
      assert.equal(out.local, client.ip);
    } finally {
      await topo.exec(n1, ['nft', 'delete', 'table', 'ip', 'hyl7b']);
    }
  });

  test("through Hypha's programs: a flow an HTTP entry covers is given to the proxy, which reaches the server as the client; no proxy: refused", async () => {
    const probe = await topo.spawnReady(n1, [process.execPath, PROBE, 'datapath', client.ip, client.hostIfname, server.ip, server.hostIfname, '8080']);
    try {
      const got = await topo.exec(client, toolArgv('client', ['once', '--to', `${server.ip}:8080`, '--timeout', '5000']));
      const out = JSON.parse(got.stdout.trim().split('\n').at(-1) ?? '{}') as { ok?: boolean; reply?: string; error?: string };
      assert.equal(out.reply, `proxy srv ${client.ip}`, `through the proxy, and the server saw the client pod: ${got.stdout}`);
      const line = await probe.waitForLine((l) => l.includes('"local"'), { timeoutMs: 5000 });
      assert.equal((JSON.parse(line) as { local: string }).local, `${server.ip}:8080`, 'the proxy got the original destination');
      // The proxy goes away: the flow is refused, never let through to the server.
      process.kill(probe.pid, 'SIGUSR2');
      await probe.waitForLine((l) => l.includes('"stopped"'), { timeoutMs: 5000 });
      const refused = await topo.exec(client, toolArgv('client', ['once', '--to', `${server.ip}:8080`, '--timeout', '3000']), { allowFail: true });
      const r = JSON.parse(refused.stdout.trim().split('\n').at(-1) ?? '{}') as { ok?: boolean; error?: string };
      assert.equal(r.ok, false, refused.stdout);
      assert.equal(r.error, 'ECONNREFUSED', 'refused at once (ICMP port unreachable), not a hang');
    } finally {
      const st = await probe.stop();
      rmSync(`/sys/fs/bpf/hypha-l7t-${probe.pid}`, { recursive: true, force: true }); // the probe's own cleanup, if it could not
      assert.equal(st.code, 0, `the probe cleaned up: ${JSON.stringify(st)}`);
    }
  });

  test('HTTP through the real proxy and the datapath: an allowed GET reaches the server as the client pod, a denied one gets 403 and never reaches it', async () => {
    const web = await topo.spawnReady(server, [process.execPath, '-e', HTTP_SERVER]);
    const probe = await topo.spawnReady(n1, [process.execPath, PROBE, 'http', client.ip, client.hostIfname, server.ip, server.hostIfname, '9000']);
    const fetchFrom = async (path: string): Promise<{ status: number; body: string }> => {
      const r = await topo.exec(client, [process.execPath, '-e', `fetch('http://${server.ip}:9000${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })), (e) => console.log(JSON.stringify({ status: 0, body: String(e.cause ?? e) })))`]);
      return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status: number; body: string };
    };
    try {
      const ok = await fetchFrom('/public/hello');
      assert.deepEqual(ok, { status: 200, body: `GET /public/hello from ${client.ip}` });
      const no = await fetchFrom('/admin');
      assert.equal(no.status, 403);
      assert.match(no.body, /hnp:ns\/web/);
      await probe.waitForLine((l) => l.includes('"/admin"') && l.includes('"deny"'), { timeoutMs: 5000 });
      assert.ok(!web.lines.some((l) => l.includes('/admin')), 'the server never saw the denied request');
    } finally {
      const st = await probe.stop();
      rmSync(`/sys/fs/bpf/hypha-l7t-${probe.pid}`, { recursive: true, force: true });
      await web.stop();
      assert.equal(st.code, 0, `the probe cleaned up: ${JSON.stringify(st)}`);
    }
  });
});
