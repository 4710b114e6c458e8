// Node side of test/e2e/l7-transparent.test.ts, run inside a node netns:
//   l7-transparent-probe.ts dial <src ip> <dst ip> <dst port>
//     a transparent, marked connection from src (an address of a pod, not of
//     this namespace) to dst; prints {"greeting": first line, "local": addr}
//   l7-transparent-probe.ts listen <port>
//     the proxy's listener on 127.0.0.1:<port> made transparent, the proxy
//     routing in place; prints {"ready":true} then, for the first connection,
//     {"local": "ip:port", "remote": "ip"} and answers "proxy\n"
//   l7-transparent-probe.ts datapath <client ip> <client veth> <server ip> <server veth> <port>
//     Hypha's tc programs on both host veths, with policy maps written by hand:
//     the server's ingress from the client on <port> is an HTTP entry (proxy
//     port 15001). A stand-in proxy on 127.0.0.1:15001 (transparent) relays
//     each connection through a transparent upstream from the client's
//     address, prefixing the first line with "proxy "; one JSON line per
//     accepted connection. SIGUSR2 closes the listener; SIGTERM unpins the maps.
//   l7-transparent-probe.ts http <same arguments>
//     the same with the real proxy (src/l7/proxy.ts): GET /public/... allowed,
//     anything else 403; one {"access": ...} line per request
import { rmSync } from 'node:fs';
import { type Server, createServer } from 'node:net';
import * as native from '../../../native/index.ts';
import { ConfigFlags, PolicyEpFlags, PolicyFlags } from '../../../src/abi/abi.gen.ts';
import { ipcacheKeyCodec, ipcacheValCodec } from '../../../src/datapath/ipcache-reconciler.ts';
import { Datapath } from '../../../src/datapath/loader.ts';
import { entryKeys, policyEpKeyCodec, policyEpValCodec, policyKeyCodec, policyValCodec } from '../../../src/datapath/policy-maps.ts';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Rtnl } from '../../../src/datapath/rtnl.ts';
import { L7Proxy } from '../../../src/l7/proxy.ts';
import { dialTransparent, ensureProxyRouting, makeTransparent } from '../../../src/l7/transparent.ts';

const [mode, ...args] = process.argv.slice(2);
const rtnl = Rtnl.open();
await ensureProxyRouting(rtnl);
rtnl.close();

if (mode === 'dial') {
  const [src = '', dst = '', port = '0'] = args;
  const sock = dialTransparent({ ip: src }, { ip: dst, port: Number(port) });
  sock.setTimeout(5000, () => {
    console.log(JSON.stringify({ error: 'timeout' }));
    process.exit(1);
  });
  sock.on('error', (err) => {
    console.log(JSON.stringify({ error: err.message }));
    process.exit(1);
  });
  let buf = '';
  sock.on('data', (b: Buffer) => {
    buf += b.toString();
    if (buf.includes('\n')) {
      console.log(JSON.stringify({ greeting: buf.split('\n')[0], local: sock.localAddress }));
      sock.destroy();
    }
  });
} else if (mode === 'listen') {
  const server = createServer((s) => {
    console.log(JSON.stringify({ local: `${s.localAddress}:${s.localPort}`, remote: s.remoteAddress }));
    s.end('proxy\n', () => server.close());
  });
  server.listen(Number(args[0]), '127.0.0.1', () => {
    makeTransparent((server as unknown as { _handle: { fd: number } })._handle.fd);
    console.log(JSON.stringify({ ready: true }));
  });
} else if (mode === 'datapath' || mode === 'http') {
  const [clientIp = '', clientVeth = '', serverIp = '', serverVeth = '', portText = '0'] = args;
  const port = Number(portText);
  const pinRoot = `/sys/fs/bpf/hypha-l7t-${process.pid}`;
  const dp = await Datapath.load({ pinRoot, mapSizes: { services: 256, backends: 256, affinity: 256, ct: 4096 } });
  let server: Server | undefined;
  const cleanup = (): void => {
    server?.close();
    try {
      dp.close();
    } catch (err) {
      console.error(err);
    }
    rmSync(pinRoot, { recursive: true, force: true });
  };
  process.on('SIGTERM', () => {
    cleanup();
    process.exit(0);
  });
  try {
    dp.writeConfig({
      flags: ConfigFlags.POLICY, loopback_addr: '169.254.42.1', snat_addr: '0.0.0.0',
      snat_port_min: 61000, snat_port_max: 65535, nodeport_min: 30000, nodeport_max: 32767, seen_mark: 0,
    });
    const ids = [[clientIp, 1000, 0], [serverIp, 1001, PolicyEpFlags.INGRESS]] as const;
    for (const [ip, identity, flags] of ids) {
      native.mapUpdate(dp.map('hypha_ipcache_v1'), ipcacheKeyCodec.encode({ prefixlen: 32, addr: ip }), ipcacheValCodec.encode({ identity, node_addr: '0.0.0.0', flags: 1 }));
      native.mapUpdate(dp.map('hypha_policy_eps_v1'), policyEpKeyCodec.encode({ value: ip }), policyEpValCodec.encode({ identity, flags }));
    }
    for (const k of entryKeys(serverIp, 'ingress', { identity: 1000, proto: 'TCP', ports: { from: port, to: port } })) {
      native.mapUpdate(dp.map('hypha_policy_v1'), policyKeyCodec.encode(k), policyValCodec.encode({ flags: PolicyFlags.ALLOW, proxy_port: 15001 }));
    }
    for (const dev of [clientVeth, serverVeth]) {
      const ifindex = native.ifNameToIndex(dev);
      native.tcAttach(ifindex, 'ingress', dp.programs.fromPod);
      native.tcAttach(ifindex, 'egress', dp.programs.toPod);
    }
    if (mode === 'http') {
      // The real proxy: GET /public/... allowed by the server's ingress rule, the rest refused.
      const proxy = new L7Proxy({
        resolve: (sock) => ({
          src: { ip: sock.remoteAddress ?? '', port: sock.remotePort ?? 0, identity: 1000 },
          dst: { ip: sock.localAddress ?? '', port: sock.localPort ?? 0, identity: 1001 },
          checks: [{ direction: 'ingress', endpoint: 'ns/srv', rules: [{ method: 'GET', path: { kind: 'prefix', value: '/public/' }, policy: 'hnp:ns/web', rule: 'ingress[0].ports[0].http[0]' }] }],
        }),
        connectUpstream: (flow) => dialTransparent({ ip: flow.src.ip }, { ip: flow.dst.ip, port: flow.dst.port }),
        log: pino({ level: 'silent' }),
        registry: new Registry(),
        onAccess: (e) => console.log(JSON.stringify({ access: { method: e.method, path: e.path, verdict: e.verdict, status: e.status } })),
      });
      server = proxy.server;
    } else {
      server = createServer((down) => {
        console.log(JSON.stringify({ local: `${down.localAddress}:${down.localPort}`, remote: down.remoteAddress }));
        const up = dialTransparent({ ip: down.remoteAddress ?? '' }, { ip: down.localAddress ?? '', port: down.localPort ?? 0 });
        let first = true;
        up.on('data', (b: Buffer) => {
          down.write(first ? Buffer.concat([Buffer.from('proxy '), b]) : b);
          first = false;
        });
        down.pipe(up);
        up.on('end', () => down.end());
        up.on('error', (err) => {
          console.log(JSON.stringify({ upstreamError: err.message }));
          down.destroy();
        });
        down.on('error', () => up.destroy());
      });
    }
    server.listen(15001, '127.0.0.1', () => {
      makeTransparent((server as unknown as { _handle: { fd: number } })._handle.fd);
      console.log(JSON.stringify({ ready: true }));
    });
    // SIGUSR2: the proxy goes away (its flows must now be refused)
    process.on('SIGUSR2', () => {
      server?.close();
      console.log(JSON.stringify({ stopped: true }));
    });
  } catch (err) {
    cleanup();
    throw err;
  }
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
