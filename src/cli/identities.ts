// `hypha identity list`: the security identities this node's agent knows:
// the reserved ones, every HyphaIdentity of the cluster, and the label sets
// of this node's pods still waiting for one; with how many of this node's
// pods have each. Asks the agent (GET /identities).
import type { IdentityView } from '../agent/identities.ts';
import { formatLabels } from '../identity/labels.ts';

export interface IdentityListOptions {
  agent: string;
  json?: boolean;
  /** Only identities of pods on this node. */
  local?: boolean;
}

function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export async function listIdentities(o: IdentityListOptions): Promise<void> {
  let rows: IdentityView[];
  try {
    const res = await fetch(new URL('/identities', o.agent), { signal: AbortSignal.timeout(2000) });
    if (!res.ok) throw new Error(`it answered ${res.status}`);
    rows = (await res.json()) as IdentityView[];
  } catch (err) {
    process.stderr.write(`hypha identity list: the agent is not reachable at ${o.agent} (${(err as Error).message}); identities are known only to a running agent\n`);
    process.exit(1);
  }
  if (o.local) rows = rows.filter((r) => r.localPods > 0 || r.id === null);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const table = [['ID', 'NAMESPACE', 'LABELS', 'LOCAL PODS']];
  for (const r of rows) {
    const id = r.id === null ? (r.state === 'failed' ? 'FAILED' : 'pending') : String(r.id);
    if (r.reserved) {
      table.push([id, '-', `reserved:${r.reserved} (${r.description ?? ''})`, '-']);
      continue;
    }
    const labels = formatLabels(r.podLabels ?? {}) || '(none)';
    table.push([id, r.namespace ?? '-', cut(labels, 60) + (r.error ? `  error: ${cut(r.error, 80)}` : ''), String(r.localPods)]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((t) => (t[i] ?? '').length)));
  for (const t of table) process.stdout.write(`${t.map((c, i) => (i === t.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('')}\n`);
}
