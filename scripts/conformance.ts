// make conformance: the upstream sig-network e2e specs against a local
// cluster of namespace nodes (test/e2e/lib/kube-cluster.ts) with Hypha
// installed from deploy/ and no kube-proxy.
//
//   node scripts/conformance.ts [--set all|conformance|netpol|services|smoke]
//        [--focus RE] [--nodes N] [--procs P] [--out FILE] [--keep]
//        [--kubeconfig FILE]   an existing cluster with Hypha installed (kind)
//
// The specs run from the control-plane host's network namespace (on the
// fabric with the nodes, as a test machine is in a real cluster) through the
// ginkgo CLI, in parallel. Results: bench/results/conformance.json (one row
// per spec: {"spec", "result", "seconds"}, plus the specs skipped on purpose
// with the reason) and a summary on stdout. Specs outside what this cluster
// can have (SKIPS) are never run; every other spec in the chosen set counts.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { type K8sBinaries, k8sBinaries, REPO_ROOT } from '../test/e2e/lib/apiserver.ts';
import { Proc, run } from '../test/e2e/lib/proc.ts';
import { KubeCluster } from '../test/e2e/lib/kube-cluster.ts';

/** Specs this cluster cannot have, and why: scope, never a failure hidden. */
export const SKIPS: ReadonlyArray<{ re: string; reason: string }> = [
  // SCTP traffic only: the NetworkPolicy specs that check an SCTP rule does not
  // let TCP through need no SCTP and run.
  { re: '\\[Feature:SCTPConnectivity\\]|basic SCTP service|SCTP HostPort', reason: 'SCTP traffic: this kernel has no SCTP module' },
  { re: 'IPv6|DualStack|dual-stack|\\[Feature:IPv6DualStack\\]', reason: 'the cluster is IPv4 only (Hypha has no IPv6 datapath yet)' },
  { re: 'LoadBalancer|ESIPP|\\[Feature:LoadBalancer\\]', reason: 'no cloud provider: nothing gives a Service a load balancer' },
  { re: '\\[Disruptive\\]', reason: 'restarts nodes or components over SSH, which the e2e framework has no way to do here' },
  { re: '\\[Flaky\\]', reason: 'marked flaky upstream' },
  { re: 'kube-proxy', reason: 'about kube-proxy itself (its metrics, its restart, its health port), which this cluster does not run' },
];

export const SETS: Record<string, { focus: string; labels: string; about: string }> = {
  conformance: { focus: '\\[sig-network\\].*\\[Conformance\\]', labels: 'Conformance', about: 'every [sig-network] [Conformance] spec' },
  netpol: { focus: '\\[sig-network\\] Netpol', labels: 'Feature: containsAny NetworkPolicy', about: 'the NetworkPolicy specs ([Feature:NetworkPolicy])' },
  services: { focus: '\\[sig-network\\] (Services|Conntrack|Networking|EndpointSlice|HostPort|Proxy|DNS) ', labels: 'Feature: isEmpty', about: 'the Services, conntrack, networking, EndpointSlice and DNS specs a kube-proxy replacement must pass' },
  smoke: {
    focus: '\\[sig-network\\] Services should serve a basic endpoint from pods|\\[sig-network\\] Netpol NetworkPolicy between server and client should support a .default-deny-ingress. policy',
    labels: 'Conformance || Feature: containsAny NetworkPolicy',
    about: 'one Service spec and one NetworkPolicy spec',
  },
};
SETS.all = {
  focus: [SETS.conformance!.focus, SETS.netpol!.focus, SETS.services!.focus].join('|'),
  labels: `(${SETS.conformance!.labels}) || (${SETS.netpol!.labels}) || (${SETS.services!.labels})`,
  about: 'conformance, NetworkPolicy and Services specs',
};

interface SpecReport {
  ContainerHierarchyTexts?: string[];
  LeafNodeText?: string;
  LeafNodeLabels?: string[];
  LeafNodeType?: string;
  State?: string;
  RunTime?: number;
  Failure?: { Message?: string; Location?: { FileName?: string; LineNumber?: number } };
}

export interface Row { spec: string; result: 'passed' | 'failed' | 'skipped'; seconds: number; reason?: string; failure?: string }

/** Rows from ginkgo's JSON report: the It specs, with their text as the e2e suite prints it. */
export function rowsFromReport(report: Array<{ SpecReports?: SpecReport[] }>): Row[] {
  const rows: Row[] = [];
  for (const suite of report) {
    for (const s of suite.SpecReports ?? []) {
      if (s.LeafNodeType !== 'It') continue;
      const spec = [...(s.ContainerHierarchyTexts ?? []), s.LeafNodeText ?? ''].join(' ').replace(/\s+/g, ' ').trim();
      const state = s.State ?? 'unknown';
      const result = state === 'passed' ? 'passed' : state === 'skipped' || state === 'pending' ? 'skipped' : 'failed';
      const row: Row = { spec, result, seconds: +((s.RunTime ?? 0) / 1e9).toFixed(1) };
      if (result === 'failed') row.failure = `${state}: ${(s.Failure?.Message ?? '').split('\n')[0]?.slice(0, 300)}`;
      rows.push(row);
    }
  }
  return rows;
}


/** Run e2e-network.test's specs matching focus/labels (minus SKIPS) against a cluster; rows from ginkgo's JSON report. */
/** Where the specs run: a KubeCluster of this machine, or any cluster by its kubeconfig (kind). */
export interface SpecTarget {
  kubeconfig: string;
  nodes: number;
  work: string;
  bins: K8sBinaries;
  /** Start argv where the cluster's addresses are reachable. */
  spawn(argv: readonly string[], env: NodeJS.ProcessEnv): Proc;
}

export function clusterTarget(cluster: KubeCluster): SpecTarget {
  return {
    kubeconfig: cluster.cp.kubeconfigPath, nodes: cluster.nodes.length, work: cluster.work, bins: cluster.bins,
    spawn: (argv, env) => cluster.topo.spawn(cluster.host, argv, { env, context: 'ginkgo' }),
  };
}

export async function runSpecs(target: SpecTarget | KubeCluster, opts: { focus: string; labels: string; procs: number; say: (line: string) => void }): Promise<{ rows: Row[]; status: unknown; log: string }> {
  const t = target instanceof KubeCluster ? clusterTarget(target) : target;
  const { say } = opts;
  const skip = SKIPS.map((s) => s.re).join('|');
  const out = path.join(t.work, 'e2e');
  mkdirSync(out, { recursive: true });
  const report = path.join(out, 'report.json');
  const e2eLog = path.join(out, 'e2e.log');
  const bins = t.bins;
  const argv = [
    bins.ginkgo, `--procs=${opts.procs}`, '--timeout=4h', '--no-color', '--keep-going', `--output-dir=${out}`, '--json-report=report.json',
    `--focus=${opts.focus}`, `--skip=${skip}`, `--label-filter=${opts.labels}`,
    bins.e2eNetworkTest, '--',
    `--kubeconfig=${t.kubeconfig}`, '--provider=local', `--kubectl-path=${bins.kubectl}`,
    `--report-dir=${out}`, `--e2e-output-dir=${out}`, `--num-nodes=${t.nodes}`, '--allowed-not-ready-nodes=0',
    '--dump-logs-on-failure=false', '--disable-log-dump',
  ];
  say(`running the specs (log: ${e2eLog})`);
  // ginkgo in a process group of its own (setsid): its e2e-network.test
  // processes go with it, by group, whatever way this run ends.
  const proc = t.spawn(['setsid', 'sh', '-c', 'log=$1; shift; cd "$(dirname "$log")" && exec "$@" >>"$log" 2>&1', 'e2e', e2eLog, ...argv],
    { ...process.env, PATH: `${path.dirname(bins.kubectl)}:${process.env.PATH ?? ''}`, HOME: out });
  const killGroup = (): void => {
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  };
  process.once('exit', killGroup);
  // (The topology's own handlers decide how the process ends.)
  const onSignal = (): void => killGroup();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // ginkgo's succinct output: a bullet per spec done, a block per failure.
  const timer = setInterval(() => {
    const text = existsSync(e2eLog) ? readFileSync(e2eLog, 'utf8') : '';
    const done = (text.match(/•/g) ?? []).length;
    const failed = (text.match(/• \[(FAILED|PANICKED|TIMEDOUT|INTERRUPTED)\]/g) ?? []).length;
    say(`  ${done} specs done, ${failed} failed`);
  }, 60_000);
  const status = await proc.exited;
  clearInterval(timer);
  killGroup();
  process.off('exit', killGroup);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const rows = existsSync(report) ? rowsFromReport(JSON.parse(readFileSync(report, 'utf8')) as Array<{ SpecReports?: SpecReport[] }>) : [];
  return { rows, status, log: e2eLog };
}

/** The specs against an existing cluster (its kubeconfig), from this machine's own network namespace. */
async function runAgainst(kubeconfig: string, o: { focus: string; labels: string; procs: number; say: (l: string) => void; out: string; set: string }): Promise<void> {
  const bins = await k8sBinaries({});
  const nodes = JSON.parse((await run([bins.kubectl, `--kubeconfig=${kubeconfig}`, 'get', 'nodes', '-o', 'json'])).stdout) as { items: unknown[] };
  const work = mkdtempSync(path.join(tmpdir(), 'hypha-conformance-'));
  o.say(`conformance against ${kubeconfig}: ${nodes.items.length} nodes, ${o.procs} ginkgo processes`);
  const t0 = Date.now();
  const { rows, status } = await runSpecs({ kubeconfig, nodes: nodes.items.length, work, bins, spawn: (argv, env) => Proc.start(argv, { env }) }, o);
  const ran = rows.filter((r) => r.result !== 'skipped');
  const failed = ran.filter((r) => r.result === 'failed');
  writeFileSync(o.out, `${JSON.stringify({ date: new Date().toISOString(), set: o.set, kubeconfig, kubernetes: bins.kubernetesVersion, seconds: Math.round((Date.now() - t0) / 1000), counts: { passed: ran.length - failed.length, failed: failed.length }, skippedOnPurpose: SKIPS, rows: ran }, null, 1)}\n`);
  o.say(`ginkgo exited ${JSON.stringify(status)}; ${ran.length - failed.length} passed, ${failed.length} failed; written to ${o.out} (logs in ${work})`);
  process.exit(ran.length > 0 && failed.length === 0 ? 0 : 1);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      set: { type: 'string', default: 'all' },
      focus: { type: 'string' },
      nodes: { type: 'string', default: '2' },
      procs: { type: 'string', default: '4' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench/results/conformance.json') },
      keep: { type: 'boolean', default: false },
      // An existing cluster with Hypha installed (kind: make kind-e2e); default a local one.
      kubeconfig: { type: 'string' },
    },
  });
  const set = SETS[values.set ?? 'all'];
  if (!set) throw new Error(`--set ${JSON.stringify(values.set)}: one of ${Object.keys(SETS).join(', ')}`);
  const nodes = Number(values.nodes);
  const procs = Number(values.procs);
  if (!Number.isInteger(procs) || procs < 1 || procs > 16) throw new Error(`--procs ${values.procs}: an integer from 1 to 16`);
  const focus = values.focus ?? set.focus;
  const skip = SKIPS.map((s) => s.re).join('|');
  const t0 = Date.now();
  const say = (line: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${line}`);
  if (values.kubeconfig) {
    await runAgainst(values.kubeconfig, { focus, labels: set.labels, procs, say, out: values.out!, set: values.set ?? 'all' });
    return;
  }
  const image = process.env.HYPHA_IMAGE_TAR;
  if (!image || !existsSync(image)) throw new Error(`HYPHA_IMAGE_TAR ${JSON.stringify(image)} is not an image archive (run through make conformance, which builds it)`);
  const log = pino({ level: 'warn' }, pino.destination(2));
  say(`conformance: ${set.about}; a ${nodes}-node cluster, ${procs} ginkgo processes`);
  const cluster = await KubeCluster.create({ name: 'conf', nodes, log, progress: say, images: [image], dns: true });
  let code = 1;
  try {
    await cluster.installHypha();
    say('Hypha installed from deploy/; nodes Ready');
    await cluster.installDns();
    say('CoreDNS running (kube-dns)');
    const { rows, status: st } = await runSpecs(cluster, { focus, labels: set.labels, procs, say });
    const ran = rows.filter((r) => r.result !== 'skipped');
    const failed = ran.filter((r) => r.result === 'failed');
    const result = {
      date: new Date().toISOString(), set: values.set, focus, skip, labels: set.labels, nodes, procs,
      kubernetes: cluster.bins.kubernetesVersion, seconds: Math.round((Date.now() - t0) / 1000),
      counts: { passed: ran.length - failed.length, failed: failed.length },
      skippedOnPurpose: SKIPS,
      rows: ran.sort((a, b) => a.spec.localeCompare(b.spec)),
    };
    mkdirSync(path.dirname(values.out!), { recursive: true });
    writeFileSync(values.out!, `${JSON.stringify(result, null, 1)}\n`);
    say(`ginkgo exited ${JSON.stringify(st)}; ${result.counts.passed} passed, ${result.counts.failed} failed; written to ${values.out}`);
    for (const f of failed) say(`  FAILED ${f.spec}: ${f.failure}`);
    code = ran.length > 0 && failed.length === 0 ? 0 : 1;
    if (values.keep) {
      say(`--keep: the cluster stays up; kubectl --kubeconfig=${cluster.kubeconfig}; Ctrl-C ends it`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
  } finally {
    await cluster.destroy();
  }
  process.exit(code);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
