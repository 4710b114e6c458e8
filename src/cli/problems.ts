// Problems of objects as the agent has them now (a bad field, a Service that
// does not fit the maps): `hypha service list --problems` lists every one,
// `hypha status` says by kind what is not programmed and why. Both ask the
// agent (GET /status): only a running agent knows them.
import { type ProblemKindSummary, plural } from '../agent/object-problems.ts';
import type { AgentStatus } from '../agent/status.ts';
import { type Problem, formatValue } from '../services/problems.ts';

/** Kinds of problem `hypha status` shows (the rest are counted). */
const KINDS_SHOWN = 10;

function row(key: string, value: string): string {
  return `${key.padEnd(16)}${value}`;
}

/** `hypha status`'s lines about problems: per kind, how many objects, what,
 *  one message and the first objects; 'not programmed' for Services of
 *  which nothing is programmed. None when there is no problem. */
export function problemStatusLines(kinds: ProblemKindSummary[]): string[] {
  const out: string[] = [];
  for (const k of kinds.slice(0, KINDS_SHOWN)) {
    const rest = k.objects - k.notProgrammed;
    if (k.notProgrammed > 0) {
      const inPart = rest > 0 ? `; ${rest} more programmed in part` : '';
      out.push(row('not programmed', `${k.notProgrammed} ${plural(k.objectKind, k.notProgrammed)}: ${k.what} (${k.example})${inPart}`));
    } else {
      out.push(row('problem', `${k.objects} ${plural(k.objectKind, k.objects)}: ${k.what} (${k.example})`));
    }
    const more = k.objects - k.sample.length;
    out.push(row('', `${k.sample.join(', ')}${more > 0 ? ` and ${more} more` : ''}`));
  }
  if (kinds.length > KINDS_SHOWN) out.push(row('', `... and ${kinds.length - KINDS_SHOWN} more kinds of problem`));
  if (kinds.length > 0) out.push(row('', 'every problem: hypha service list --problems'));
  return out;
}

/** One line per problem: object, field, value, message. */
export function problemRows(problems: Problem[]): string[] {
  if (problems.length === 0) return ['no problems'];
  const rows = [['OBJECT', 'FIELD', 'VALUE', 'MESSAGE'], ...problems.map((p) => [p.object, p.field, formatValue(p.value), p.message])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join(''));
}

export async function listProblems(o: { agent: string; json?: boolean }): Promise<void> {
  let st: AgentStatus;
  try {
    const res = await fetch(new URL('/status', o.agent), { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`it answered ${res.status}`);
    st = (await res.json()) as AgentStatus;
  } catch (err) {
    process.stderr.write(`hypha service list --problems: the agent is not reachable at ${o.agent} (${(err as Error).message}); problems are known only to a running agent\n`);
    process.exit(1);
  }
  if (!Array.isArray(st.problems)) {
    process.stderr.write(`hypha service list --problems: the agent at ${o.agent} does not list problems (an older version)\n`);
    process.exit(1);
  }
  // Thousands of lines are often piped into head: a closed pipe ends the listing.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(st.problems, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${problemRows(st.problems).join('\n')}\n`);
}
