// `hypha`: the agent and the tools people use to look at a node.
import { Command } from 'commander';
import { pino } from 'pino';
import * as native from '../../native/index.ts';
import { Agent } from '../agent/agent.ts';
import { ConfigError, loadConfig } from '../agent/config.ts';
import type { AgentStatus } from '../agent/status.ts';
import { readDrops } from '../datapath/drops.ts';
import { describeLbMaps } from '../datapath/lb-view.ts';
import { DEFAULT_PIN_ROOT, openPinnedMaps } from '../datapath/loader.ts';
import { listProblems, problemStatusLines } from './problems.ts';

const program = new Command();
program.name('hypha').description('eBPF networking for Kubernetes: pods, Service load balancing and routing in the kernel').showHelpAfterError();

function pinnedOrExit(pinRoot: string) {
  const maps = openPinnedMaps(pinRoot);
  if (maps.size === 0) {
    process.stderr.write(`hypha: no Hypha maps are pinned under ${pinRoot} (is the agent installed on this node?)\n`);
    process.exit(1);
  }
  return maps;
}

program
  .command('agent')
  .description('run the node agent (kube-proxy replacement) in the foreground')
  .requiredOption('-c, --config <file>', 'agent configuration (YAML)')
  .action(async (opts: { config: string }) => {
    let cfg;
    try {
      cfg = loadConfig(opts.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`hypha agent: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const log = pino({ level: cfg.log.level, base: { node: cfg.node.name } });
    const agent = new Agent(cfg, log);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      agent.stop().then(() => process.exit(0), (err: Error) => {
        log.error({ err: err.message }, 'stop failed');
        process.exit(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    try {
      await agent.start();
    } catch (err) {
      log.fatal({ err: (err as Error).message, code: (err as { code?: string }).code }, 'agent failed to start');
      await agent.stop().catch(() => undefined);
      process.exit(1);
    }
  });

program.command('operator').description('run the operator (cluster-pool IPAM, HyphaNodes; leader-elected) in the foreground').requiredOption('-c, --config <file>', 'operator configuration (YAML)').action(async (opts: { config: string }) => (await import('../operator/cli.ts')).runOperator(opts));

const service = program.command('service').description('Services as programmed in the datapath');
service
  .command('list')
  .description('frontends and their backends, read from the pinned maps (works with the agent down); with --problems, what the agent refused and why')
  .option('--pin-root <dir>', 'where the maps are pinned', DEFAULT_PIN_ROOT)
  .option('--problems', 'problems of objects present now (a bad field, a Service that does not fit the maps), one line each (asks the agent)')
  .option('--agent <url>', 'agent endpoint (with --problems)', 'http://127.0.0.1:9890')
  .option('--json', 'machine-readable output')
  .action(async (opts: { pinRoot: string; problems?: boolean; agent: string; json?: boolean }) => {
    if (opts.problems) return listProblems(opts);
    const maps = pinnedOrExit(opts.pinRoot);
    const view = describeLbMaps(maps.get('hypha_lb4_services_v1')!, maps.get('hypha_lb4_backends_v1')!, maps.get('hypha_lb4_names_v1'));
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
      return;
    }
    const rows = [['SERVICE', 'FRONTEND', 'KIND', 'SCOPE', 'FLAGS', 'BACKENDS']];
    let last = '';
    for (const f of view) {
      for (const s of f.scopes) {
        const backends = s.backends.map((b) => `${b.address}${b.state !== 'active' ? ` (${b.state})` : ''}`).join(' ') || '(none: rejects)';
        rows.push([f.service === last ? '' : f.service || '?', f.frontend, f.kind, s.scope, s.flags.join(',') || '-', backends]);
        last = f.service;
      }
      if (f.standby.length > 0) rows.push(['', '', '', 'standby', '-', f.standby.map((b) => `${b.address} (${b.state})`).join(' ')]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('')}\n`);
  });

const bpf = program.command('bpf').description('raw datapath state');
bpf
  .command('drops')
  .description('packets dropped or rejected by the datapath, per reason')
  .option('--pin-root <dir>', 'where the maps are pinned', DEFAULT_PIN_ROOT)
  .option('--json', 'machine-readable output')
  .action((opts: { pinRoot: string; json?: boolean }) => {
    const maps = pinnedOrExit(opts.pinRoot);
    const drops = readDrops(maps.get('hypha_drops_v1')!);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(drops.map((d) => ({ ...d, packets: Number(d.packets), bytes: Number(d.bytes) })), null, 2)}\n`);
      return;
    }
    if (drops.length === 0) process.stdout.write('no drops\n');
    for (const d of drops) process.stdout.write(`${String(d.packets).padStart(12)}  ${d.reason.padEnd(22)} ${d.description}\n`);
  });

function ago(iso: string | null): string {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

/** Not-served frontends listed by `hypha status` (all of them with --json). */
const NOT_SERVED_SHOWN = 20;

function printStatus(st: AgentStatus): void {
  const line = (k: string, v: string): void => {
    process.stdout.write(`${k.padEnd(12)}${v}\n`);
  };
  line('node', `${st.node.name} (${st.node.addresses.join(', ') || 'no address'})`);
  if (st.source.kind === 'kubernetes') {
    line('api server', st.source.connected ? 'connected' : 'NOT CONNECTED');
    for (const i of st.source.informers) {
      line('', `${i.resource.padEnd(15)} ${i.phase.padEnd(9)} ${String(i.objects).padStart(7)} objects, rv ${i.resourceVersion || '-'}, last event ${ago(i.lastEventAt)}, ${i.watchRestarts} restarts, ${i.relists} relists${i.lastError ? `; last error: ${i.lastError}` : ''}`);
    }
  } else {
    line('source', `files: ${st.source.paths.join(', ')}`);
  }
  line('ready', `${st.ready ? 'yes' : 'NO'}; ${st.services} Services; last sync ${ago(st.lastSync)}, last full sync ${ago(st.lastFullSync)}`);
  if (st.lastError) line('last error', st.lastError);
  // Older agents send no notServed.
  const notServed = st.notServed ?? [];
  if (notServed.length > 0) {
    line('not served', `${notServed.length} frontend${notServed.length === 1 ? '' : 's'} asked for by Services and not programmed:`);
    for (const n of notServed.slice(0, NOT_SERVED_SHOWN)) line('', `${n.service} ${n.kind} ${n.frontend}: ${n.reason}`);
    if (notServed.length > NOT_SERVED_SHOWN) line('', `... and ${notServed.length - NOT_SERVED_SHOWN} more (hypha status --json)`);
  }
  // Older agents send no problemKinds.
  for (const l of problemStatusLines(st.problemKinds ?? [])) process.stdout.write(`${l}\n`);
  for (const m of st.maps) {
    line('map', `${m.map.padEnd(24)} ${String(m.entries).padStart(9)} / ${String(m.capacity).padEnd(9)} ${((100 * m.entries) / Math.max(m.capacity, 1)).toFixed(1)}%`);
  }
  line('devices', `external ${st.devices.external ?? '-'} (${st.devices.externalMode ?? '-'}); ${st.devices.pods.length} pod devices`);
  if (st.pods) {
    const p = st.pods;
    line('pods', `${p.endpoints} endpoints; pod CIDR ${p.podCIDRs.join(', ') || 'none'} (${p.addresses.used}/${p.addresses.capacity} addresses); ${p.notReady ? `NOT ACCEPTING: ${p.notReady}` : p.conflist ? `accepting (${p.conflist})` : 'not installed yet'}`);
  }
  if (st.routing) {
    const r = st.routing;
    line('routing', `${r.mode}; ${r.nodes} nodes, ${r.routes.length} routes; last sync ${ago(r.lastSync)}${r.lastError ? `; last error: ${r.lastError}` : ''}`);
    for (const p of r.problems) line('', `problem: ${p}`);
  }
  if (st.l7Proxy) {
    const x = st.l7Proxy;
    line('l7 proxy', x.listening ? `listening on ${x.address}` : `NOT LISTENING on ${x.address} (flows with http rules are refused)${x.lastError ? `: ${x.lastError}` : ''}`);
  }
  line('pin root', st.pinRoot);
}

program
  .command('status')
  .description("the node agent's state: node, API connection, last sync, map use (asks the agent; falls back to the pinned maps)")
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--pin-root <dir>', 'where the maps are pinned', DEFAULT_PIN_ROOT)
  .option('--json', 'machine-readable output')
  .action(async (opts: { agent: string; pinRoot: string; json?: boolean }) => {
    try {
      const res = await fetch(new URL('/status', opts.agent), { signal: AbortSignal.timeout(2000) });
      const st = (await res.json()) as AgentStatus;
      if (opts.json) process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
      else printStatus(st);
      return;
    } catch (err) {
      process.stdout.write(`agent       not reachable at ${opts.agent} (${(err as Error).message}); the datapath as pinned:\n`);
    }
    const maps = pinnedOrExit(opts.pinRoot);
    for (const [name, h] of maps) {
      const info = native.mapInfo(h);
      const count = info.type === native.constants.mapTypes.RINGBUF ? '-' : String(native.mapDump(h).count);
      process.stdout.write(`map         ${name.padEnd(24)} ${count.padStart(9)} / ${info.maxEntries}\n`);
    }
  });

const endpoint = program.command('endpoint').description('pods this node\'s agent made');
endpoint
  .command('list')
  .description('pod, namespace, container id, address, interface and datapath state (works with the agent down)')
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--state-dir <dir>', "the agent's cni.stateDir", '/var/lib/hypha')
  .option('--pin-root <dir>', 'where the maps are pinned', DEFAULT_PIN_ROOT)
  .option('--json', 'machine-readable output')
  .action(async (opts: { agent: string; stateDir: string; pinRoot: string; json?: boolean }) => (await import('./endpoints.ts')).listEndpoints(opts));

const identity = program.command('identity').description('security identities (the numbers policy is enforced by)');
identity
  .command('list')
  .description('reserved identities, every HyphaIdentity of the cluster, and how many of this node\'s pods have each (asks the agent)')
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--local', 'only identities of pods on this node')
  .option('--json', 'machine-readable output')
  .action(async (opts: { agent: string; local?: boolean; json?: boolean }) => (await import('./identities.ts')).listIdentities(opts));

const policy = program.command('policy').description('NetworkPolicy as this node enforces it (asks the agent: the compile its policy maps were written from)');
policy
  .command('get')
  .description("a pod's policy in words: per direction open or default deny, and every allow entry with the policy and rule it comes from")
  .argument('<pod>', 'namespace/pod (a pod of this node)')
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--json', 'machine-readable output')
  .action(async (pod: string, opts: { agent: string; json?: boolean }) => (await import('./policy.ts')).policyGet(pod, opts));
policy
  .command('trace')
  .description('the verdict for one flow and the exact policy and rule (or the default deny) that decides it; a Service address is traced to each backend; with --http, also the HTTP rule that allows or denies one request')
  .option('--from <party>', 'namespace/pod or an IPv4 address')
  .option('--to <party>', 'namespace/pod, an IPv4 address or a Service address')
  .option('--port <port>', 'PORT/PROTOCOL (80/TCP, 53/UDP, 9000/SCTP) or ICMP')
  .option('--http <request>', "also judge this HTTP request as the L7 proxy would: 'METHOD /path' (a TCP --port only)")
  .option('--header <name=value>', 'a header of the --http request (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--host <host>', 'the Host of the --http request')
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--json', 'machine-readable output')
  .action(async (opts: { agent: string; from?: string; to?: string; port?: string; http?: string; header?: string[]; host?: string; json?: boolean }) => (await import('./policy.ts')).policyTrace(opts));

program
  .command('monitor')
  .description('events as they happen: datapath drops with their reason, pods, identities and Service, and the L7 proxy\'s HTTP access log (asks the agent, which emits drop events while a monitor is attached)')
  .option('--agent <url>', 'agent endpoint', 'http://127.0.0.1:9890')
  .option('--type <type>', 'drop (every drop), policy-drop (NetworkPolicy drops only), l7 (each HTTP request the L7 proxy judged) or all', 'drop')
  .option('--json', 'the agent\'s NDJSON, a line per event')
  .action(async (opts: { agent: string; type: string; json?: boolean }) => (await import('./monitor.ts')).runMonitor(opts));

const cni = program.command('cni').description('the CNI plugin\'s installation');
cni
  .command('install-binary')
  .description('copy the plugin binary into the runtime\'s plugin directory (atomically; the agent writes the conflist once it is ready)')
  .option('--bin-dir <dir>', 'CNI plugin directory', '/opt/cni/bin')
  .action(async (opts: { binDir: string }) => {
    const { installShim } = await import('../cni/install.ts');
    const r = await installShim({ binDir: opts.binDir });
    process.stdout.write(`${r.binaryChanged ? 'installed' : 'unchanged'} ${r.binary}\n`);
  });
cni
  .command('uninstall')
  .description('remove the conflist, so the runtime stops sending pods to Hypha (the binary stays for DELs)')
  .option('--conf-dir <dir>', 'CNI configuration directory', '/etc/cni/net.d')
  .action(async (opts: { confDir: string }) => {
    const { uninstallCni } = await import('../cni/install.ts');
    process.stdout.write((await uninstallCni({ confDir: opts.confDir })) ? `removed the Hypha conflist from ${opts.confDir}\n` : `no Hypha conflist in ${opts.confDir}\n`);
  });

await program.parseAsync(process.argv);
