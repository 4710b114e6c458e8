// `hypha monitor`: the node's datapath events as they happen, one line each
// (or the agent's NDJSON with --json). Asks the agent (GET /monitor), which
// turns drop events on in the datapath while at least one monitor of drops is
// attached. `--type l7`: the L7 proxy's access log, a line per HTTP request
// it judged (pods, identities, method, host and path, verdict, status, the
// deciding policy and rule, latency).
// Ctrl-C ends it; the agent going away ends it with an error.
import { formatLine, isMonitorInputError, type MonitorLine, parseMonitorType } from '../agent/monitor-event.ts';

export interface MonitorOptions {
  agent: string;
  type?: string;
  json?: boolean;
}

const CONNECT_TIMEOUT_MS = 3000;

function fail(message: string, code = 1): never {
  process.stderr.write(`hypha monitor: ${message}\n`);
  process.exit(code);
}

export async function runMonitor(o: MonitorOptions): Promise<void> {
  let type;
  try {
    type = parseMonitorType(o.type);
  } catch (err) {
    if (isMonitorInputError(err)) fail(`--${err.message}`, 2);
    throw err;
  }
  const ac = new AbortController();
  let interrupted = false;
  const interrupt = (): void => {
    interrupted = true;
    ac.abort();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const url = new URL(`/monitor?type=${encodeURIComponent(type)}`, o.agent);
  const connectTimer = setTimeout(() => ac.abort(new Error(`no answer in ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetch(url, { signal: ac.signal });
  } catch (err) {
    if (interrupted) process.exit(0);
    const e = err as Error & { cause?: Error };
    fail(`the agent is not reachable at ${o.agent} (${e.cause?.message ?? e.message}); events come from a running agent`);
  } finally {
    clearTimeout(connectTimer);
  }
  if (!res.ok || !res.body) fail(`the agent at ${o.agent} answered ${res.status}: ${(await res.text().catch(() => '')).trim()}`);

  const out = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  const decoder = new TextDecoder();
  let rest = '';
  const emit = (text: string): void => {
    if (text === '') return;
    if (o.json) return out(text);
    let line: MonitorLine;
    try {
      line = JSON.parse(text) as MonitorLine;
    } catch {
      return out(text);
    }
    if ('monitor' in line) process.stderr.write(`${formatLine(line)}\n`);
    else out(formatLine(line));
  };
  try {
    for await (const chunk of res.body) {
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        emit(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
  } catch (err) {
    if (interrupted) process.exit(0);
    fail(`the stream from ${o.agent} broke (${(err as Error).message}): is the agent still running?`);
  }
  if (interrupted) process.exit(0);
  emit(rest);
  fail(`the agent at ${o.agent} ended the stream (stopped or restarting)`);
}
