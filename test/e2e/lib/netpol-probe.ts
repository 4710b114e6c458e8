// Probing a reachability matrix: one prober (test/e2e/tools/prober.ts) in each
// source pod's netns, asked over a UNIX socket to run a whole batch of
// connections at once. A round sends every pair of a probe case (pod address
// and ClusterIP) from every source concurrently; a cell is connected when the
// destination's server answered with its own name (a ClusterIP that reached
// another backend is a mismatch, not a connection).
import net from 'node:net';
import path from 'node:path';
import type { ProbeAnswer, ProbeRequest } from '../tools/prober.ts';
import type { OnceResult } from '../tools/client.ts';
import { type Pod, type Proc, TOOLS_DIR, type Topology } from './topology.ts';
import { TruthTable } from './netpol-model.ts';

export type Via = 'pod' | 'service';

export interface ProbeCase {
  port: number;
  proto: 'TCP' | 'UDP';
}

export interface MatrixPod {
  /** `ns/name`, also the server's greeting. */
  key: string;
  pod: Pod;
  clusterIP: string;
}

export interface Observation {
  table: TruthTable;
  /** `from>to` -> what the probe saw when it was not a clean connection. */
  notes: Map<string, string>;
}

export const caseName = (c: ProbeCase): string => `${c.port}/${c.proto}`;

class ProberClient {
  readonly proc: Proc;
  readonly #sock: net.Socket;
  readonly #waiting = new Map<number, (a: ProbeAnswer) => void>();
  #next = 1;
  #buf = '';

  constructor(proc: Proc, sock: net.Socket) {
    this.proc = proc;
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const a = JSON.parse(this.#buf.slice(0, nl)) as ProbeAnswer;
        this.#buf = this.#buf.slice(nl + 1);
        this.#waiting.get(a.id)?.(a);
        this.#waiting.delete(a.id);
      }
    });
    const fail = (why: string) => {
      for (const [id, resolve] of this.#waiting) resolve({ id, error: why });
      this.#waiting.clear();
    };
    sock.on('error', (e) => fail(`prober socket: ${e.message}`));
    sock.on('close', () => fail('prober socket closed'));
  }

  run(probes: ProbeRequest[], timeoutMs: number): Promise<OnceResult[]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`prober pid ${this.proc.pid} gave no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, (a) => {
        clearTimeout(timer);
        if (a.results) resolve(a.results);
        else reject(new Error(`prober pid ${this.proc.pid}: ${a.error}; stderr: ${this.proc.stderr.slice(-500)}`));
      });
      this.#sock.write(`${JSON.stringify({ id, probes })}\n`);
    });
  }

  async close(): Promise<void> {
    this.#sock.destroy();
    await this.proc.stop({ graceMs: 1000 });
  }
}

export class ProbeFleet {
  readonly pods: MatrixPod[];
  readonly timeoutMs: number;
  readonly #clients = new Map<string, ProberClient>();
  /** Probes sent so far (for the report). */
  probes = 0;

  private constructor(pods: MatrixPod[], timeoutMs: number) {
    this.pods = pods;
    this.timeoutMs = timeoutMs;
  }

  /** A prober in each pod's netns, its socket in `dir`. */
  static async start(topo: Topology, pods: MatrixPod[], dir: string, timeoutMs = 1000): Promise<ProbeFleet> {
    const fleet = new ProbeFleet(pods, timeoutMs);
    try {
      await Promise.all(pods.map(async (p) => {
        const socket = path.join(dir, `probe-${p.pod.name}.sock`);
        const proc = await topo.spawnReady(p.pod, [process.execPath, path.join(TOOLS_DIR, 'prober.ts'), '--socket', socket], { timeoutMs: 20_000 });
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socket, () => resolve(s));
          s.once('error', reject);
        });
        fleet.#clients.set(p.key, new ProberClient(proc, sock));
      }));
    } catch (err) {
      await fleet.close();
      throw err;
    }
    return fleet;
  }

  /**
   * One round: every case, from every pod to every pod, through `vias`; all at
   * once. Returns one observation per `case via`.
   */
  async round(cases: ProbeCase[], vias: Via[]): Promise<Map<string, Observation>> {
    const keys = this.pods.map((p) => p.key);
    const out = new Map<string, Observation>();
    for (const c of cases) for (const v of vias) out.set(`${caseName(c)} ${v}`, { table: new TruthTable(keys), notes: new Map() });
    await Promise.all(this.pods.map(async (src) => {
      const plan: { c: ProbeCase; v: Via; dst: MatrixPod }[] = [];
      for (const c of cases) for (const v of vias) for (const dst of this.pods) plan.push({ c, v, dst });
      const client = this.#clients.get(src.key)!;
      const results = await client.run(plan.map(({ c, v, dst }) => ({ host: v === 'pod' ? dst.pod.ip : dst.clusterIP, port: c.port, proto: c.proto, timeoutMs: this.timeoutMs })), this.timeoutMs + 15_000);
      this.probes += plan.length;
      plan.forEach(({ c, v, dst }, i) => {
        const r = results[i]!;
        const obs = out.get(`${caseName(c)} ${v}`)!;
        const connected = r.ok && r.reply === dst.key;
        obs.table.set(src.key, dst.key, connected);
        if (!connected) obs.notes.set(`${src.key}>${dst.key}`, r.ok ? `answered by ${JSON.stringify(r.reply)}` : `blocked (${r.error})`);
      });
    }));
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.close()));
    this.#clients.clear();
  }
}
