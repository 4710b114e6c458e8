// Start a Hypha operator as a real process (bin/hypha operator) inside a
// namespace of a test topology, the way a Deployment's pod would run it.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { HYPHA_BIN, NODE_BIN } from './agent.ts';
import type { ExitStatus, Proc } from './proc.ts';
import type { Topology, Where } from './topology.ts';

export interface OperatorOptions {
  identity: string;
  /** Admin kubeconfig reachable from `where`. */
  kubeconfig: string;
  workDir: string;
  /** Port of its HTTP endpoint on 127.0.0.1 inside `where` (distinct per operator in one netns). */
  port: number;
  ipam: { mode: 'cluster-pool'; clusterPool: { cidrs: string[]; maskSize: number } } | { mode: 'kubernetes' };
  leaderElection?: { leaseDurationSeconds?: number; renewDeadlineSeconds?: number; retryPeriodSeconds?: number; name?: string; namespace?: string };
  resyncSeconds?: number;
  /** identity.gc (the operator's defaults when unset). */
  identityGc?: { graceSeconds?: number; intervalSeconds?: number };
}

export class TestOperator {
  readonly topo: Topology;
  readonly where: Where;
  readonly opts: OperatorOptions;
  readonly configPath: string;
  proc: Proc | undefined;

  constructor(topo: Topology, where: Where, opts: OperatorOptions) {
    this.topo = topo;
    this.where = where;
    this.opts = opts;
    mkdirSync(opts.workDir, { recursive: true });
    this.configPath = path.join(opts.workDir, `operator-${opts.identity}.yaml`);
    writeFileSync(this.configPath, stringify({
      kubernetes: { kubeconfig: opts.kubeconfig, silenceSeconds: 20, resyncSeconds: 120 },
      ipam: opts.ipam,
      leaderElection: { identity: opts.identity, ...opts.leaderElection },
      sync: { resyncSeconds: opts.resyncSeconds ?? 30 },
      ...(opts.identityGc ? { identity: { gc: opts.identityGc } } : {}),
      listen: { address: '127.0.0.1', port: opts.port },
      log: { level: 'info' },
    }));
  }

  get identity(): string {
    return this.opts.identity;
  }

  /** Start and wait for the ready line (its informers have listed Nodes and HyphaNodes). */
  async start(timeoutMs = 20_000): Promise<Proc> {
    this.proc = await this.topo.spawnReady(this.where, [HYPHA_BIN, 'operator', '--config', this.configPath], { timeoutMs, context: `operator ${this.identity}` });
    return this.proc;
  }

  /** kill -9: no chance to hand the Lease back. */
  async kill9(): Promise<ExitStatus | undefined> {
    const p = this.proc;
    if (!p) return undefined;
    p.kill('SIGKILL');
    return p.exited;
  }

  /** SIGTERM (the operator releases the Lease), SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<ExitStatus | undefined> {
    return this.proc?.stop({ graceMs });
  }

  /** GET a path of its HTTP endpoint (127.0.0.1 inside its namespace). */
  async http(pathname: string): Promise<{ status: number; body: string }> {
    const script = `fetch('http://127.0.0.1:${this.opts.port}${pathname}').then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), (e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e) })))`;
    const r = await this.topo.exec(this.where, [NODE_BIN, '-e', script]);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  /** Every sample of the metrics, as name{labels} -> value. */
  async metrics(): Promise<Map<string, number>> {
    const { status, body } = await this.http('/metrics');
    if (status !== 200) throw new Error(`operator ${this.identity}: /metrics answered ${status}: ${body.slice(0, 200)}`);
    const out = new Map<string, number>();
    for (const line of body.split('\n')) {
      const m = /^(\w+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (m) out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
    }
    return out;
  }

  /** A metric summed over the label sets that include `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    let sum = 0;
    for (const [key, value] of await this.metrics()) {
      const m = /^(\w+)(\{.*\})?$/.exec(key);
      if (!m || m[1] !== name) continue;
      if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += value;
    }
    return sum;
  }

  /** Log lines it printed (pino JSON). */
  logs(): Record<string, unknown>[] {
    return this.proc?.jsonLines() ?? [];
  }

}
