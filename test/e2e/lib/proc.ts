// Process helpers for the e2e harness: run a short command and collect its output,
// or start a long-running one and wait for the line that says it is ready.
//
// Hand-written on purpose: execa and friends would do the same, but they are not
// in the dependency set and what is needed here (bounded output capture, a
// ready-line wait, stop-by-pid with a grace period) is a few lines over
// node:child_process.

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';

export type ProcErrorCode =
  | 'COMMAND_FAILED' // ran and exited nonzero (or by signal)
  | 'SPAWN_FAILED' // could not be started (ENOENT, EACCES, ...)
  | 'TIMEOUT' // a deadline passed (command still running, ready line never came)
  | 'EXITED'; // a long-running process exited while something waited for it

export class ProcError extends Error {
  readonly code: ProcErrorCode;
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;

  constructor(
    code: ProcErrorCode,
    message: string,
    details: {
      argv: readonly string[];
      exitCode?: number | null;
      signal?: NodeJS.Signals | null;
      stdout?: string;
      stderr?: string;
      cause?: unknown;
    },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ProcError';
    this.code = code;
    this.argv = details.argv;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
    this.stdout = details.stdout ?? '';
    this.stderr = details.stderr ?? '';
  }
}

export function isProcError(err: unknown, code?: ProcErrorCode): err is ProcError {
  return err instanceof ProcError && (code === undefined || err.code === code);
}

/** Quote an argv for messages and logs (not for a shell). */
/** CPU time (user + system) a process has used, ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function describe(argv: readonly string[], context: string | undefined): string {
  return context === undefined ? formatArgv(argv) : `${context}: ${formatArgv(argv)}`;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunOptions {
  /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string;
  /** Kill (SIGKILL) and fail with TIMEOUT after this long. Default 60 s. */
  timeoutMs?: number;
  /** Return the result on a nonzero exit instead of throwing COMMAND_FAILED. */
  allowFail?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Prepended to error messages, e.g. `in netns hyab12-n1`. */
  context?: string;
  /** Told about the child as soon as it exists (so an owner can kill it early). */
  onSpawn?: (child: ChildProcess) => void;
}

const DEFAULT_RUN_TIMEOUT_MS = 60_000;

/** `make <target>` with its output on our stderr (under `node --test`
 *  stdout belongs to the runner): how the harness builds what is missing. */
export function makeTarget(make: readonly string[], target: string, env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(make[0] ?? 'make', [...make.slice(1).filter((a) => a !== '-s'), target], { stdio: ['ignore', 2, 2], env });
    child.on('error', reject);
    child.on('close', resolve);
  });
}

/** Run argv to completion and collect its output. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined || file === '') {
    return Promise.reject(
      new ProcError('SPAWN_FAILED', 'argv is empty: nothing to run', { argv }),
    );
  }
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env,
      cwd: opts.cwd,
    });
    opts.onSpawn?.(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined && child.stdin !== null) {
      child.stdin.on('error', () => {}); // EPIPE when the command exits without reading
      child.stdin.end(opts.input);
    }
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let spawnError: Error | undefined;
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      const what = describe(argv, opts.context);
      if (spawnError !== undefined && code === null && signal === null) {
        reject(
          new ProcError('SPAWN_FAILED', `cannot start ${what}: ${spawnError.message}`, {
            argv,
            cause: spawnError,
          }),
        );
        return;
      }
      if (timedOut) {
        reject(
          new ProcError('TIMEOUT', `${what} did not finish within ${timeoutMs} ms`, {
            argv,
            exitCode: code,
            signal,
            stdout,
            stderr,
          }),
        );
        return;
      }
      const result: RunResult = { stdout, stderr, code, signal };
      if (code !== 0 && opts.allowFail !== true) {
        const how = code === null ? `was killed by ${signal}` : `exited with ${code}`;
        const tail = stderr.trim() === '' ? '' : `: ${stderr.trim().slice(-2000)}`;
        reject(
          new ProcError('COMMAND_FAILED', `${what} ${how}${tail}`, {
            argv,
            exitCode: code,
            signal,
            stdout,
            stderr,
          }),
        );
        return;
      }
      resolve(result);
    });
  });
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Lines of stdout kept for waitForLine and diagnostics. Default 10 000. */
  maxLines?: number;
  /** Bytes of stderr kept for diagnostics. Default 64 KiB. */
  maxStderr?: number;
  /** Prepended to error messages. */
  context?: string;
}

export interface WaitOptions {
  /** Default 10 s. */
  timeoutMs?: number;
}

/**
 * A long-running child process. Output is captured (bounded): stdout as lines,
 * stderr as a tail. It is stopped only through its own pid.
 */
export class Proc {
  readonly argv: readonly string[];
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  readonly #child: ChildProcess;
  readonly #context: string | undefined;
  readonly #lines: string[] = [];
  readonly #maxLines: number;
  readonly #maxStderr: number;
  readonly #events = new EventEmitter();
  #partial = '';
  #stderr = '';
  #status: ExitStatus | undefined;

  private constructor(child: ChildProcess, argv: readonly string[], opts: StartOptions) {
    if (child.pid === undefined) throw new Error('child has no pid');
    this.#child = child;
    this.argv = argv;
    this.pid = child.pid;
    this.#context = opts.context;
    this.#maxLines = opts.maxLines ?? 10_000;
    this.#maxStderr = opts.maxStderr ?? 64 * 1024;
    this.#events.setMaxListeners(0);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => this.#onStdout(s));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      this.#stderr = (this.#stderr + s).slice(-this.#maxStderr);
    });
    this.exited = new Promise((resolve) => {
      // 'close' comes after the exit and after stdio is drained, so every line
      // the process printed has been seen when `exited` resolves.
      child.on('close', (code, signal) => {
        if (this.#partial !== '') this.#pushLine(this.#partial);
        this.#partial = '';
        this.#status = { code, signal };
        this.#events.emit('exit', this.#status);
        resolve(this.#status);
      });
    });
  }

  /**
   * Start argv. Throws SPAWN_FAILED when the executable cannot be started at all;
   * a failure of what it execs later shows as an exit (EXITED from waitForLine).
   */
  static start(argv: readonly string[], opts: StartOptions = {}): Proc {
    const [file, ...args] = argv;
    if (file === undefined || file === '') {
      throw new ProcError('SPAWN_FAILED', 'argv is empty: nothing to start', { argv });
    }
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env,
      cwd: opts.cwd,
    });
    child.on('error', () => {}); // reported below (no pid) or through the exit status
    if (child.pid === undefined) {
      throw new ProcError('SPAWN_FAILED', `cannot start ${describe(argv, opts.context)}`, { argv });
    }
    return new Proc(child, argv, opts);
  }

  /** Exit status once exited, else undefined. */
  get status(): ExitStatus | undefined {
    return this.#status;
  }

  /** Captured stdout lines (the last maxLines). */
  get lines(): readonly string[] {
    return this.#lines;
  }
  /** The stdout lines that are JSON objects (a pino logger's records). */
  jsonLines(): Record<string, unknown>[] {
    return this.lines.flatMap((l) => {
      try {
        const v = JSON.parse(l) as unknown;
        return typeof v === 'object' && v !== null && !Array.isArray(v) ? [v as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }


  /** The last maxStderr bytes of stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  #onStdout(s: string): void {
    const parts = (this.#partial + s).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) this.#pushLine(line);
  }

  #pushLine(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.#maxLines) this.#lines.shift();
    this.#events.emit('line', line);
  }

  /** Resolve with the first stdout line (already printed or future) that matches. */
  waitForLine(match: (line: string) => boolean, opts: WaitOptions = {}): Promise<string> {
    const seen = this.#lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const what = describe(this.argv, this.#context);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.#events.off('line', onLine);
        this.#events.off('exit', onExit);
      };
      const onLine = (line: string): void => {
        if (!match(line)) return;
        cleanup();
        resolve(line);
      };
      const onExit = (st: ExitStatus): void => {
        cleanup();
        reject(
          new ProcError(
            'EXITED',
            `${what} (pid ${this.pid}) exited (code ${st.code}, signal ${st.signal}) before the awaited line${this.#stderrTail()}`,
            { argv: this.argv, exitCode: st.code, signal: st.signal, stderr: this.#stderr },
          ),
        );
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new ProcError(
            'TIMEOUT',
            `${what} (pid ${this.pid}) printed no awaited line within ${timeoutMs} ms${this.#stderrTail()}`,
            { argv: this.argv, stderr: this.#stderr },
          ),
        );
      }, timeoutMs);
      if (this.#status !== undefined) {
        onExit(this.#status);
        return;
      }
      this.#events.on('line', onLine);
      this.#events.on('exit', onExit);
    });
  }

  #stderrTail(): string {
    const t = this.#stderr.trim();
    return t === '' ? '' : `; stderr: ${t.slice(-2000)}`;
  }

  /** Send a signal to this process (by its pid) if it is still running. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.#status !== undefined) return;
    this.#child.kill(signal);
  }

  /**
   * SIGTERM, wait up to graceMs, then SIGKILL and wait for the exit. Never throws;
   * resolves with the exit status.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<ExitStatus> {
    if (this.#status !== undefined) return this.#status;
    this.kill('SIGTERM');
    const graceMs = opts.graceMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), graceMs);
    });
    const st = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (st !== undefined) return st;
    this.kill('SIGKILL');
    return this.exited;
  }

  /** Stop synchronously with SIGKILL (for process-exit hooks, where nothing can be awaited). */
  killNow(): void {
    this.kill('SIGKILL');
  }
}

/** The line a tool prints once it is listening: `{"ready":true}`. */
export function isReadyLine(line: string): boolean {
  return parseJsonObject(line)?.['ready'] === true;
}

/** Wait until a started tool prints its ready line; rejects if it exits first or times out. */
export async function waitForReady(proc: Proc, opts: WaitOptions = {}): Promise<void> {
  await proc.waitForLine(isReadyLine, opts);
}

/** Parse one line as a JSON object, or undefined when it is not one. */
export function parseJsonObject(line: string): Record<string, unknown> | undefined {
  const t = line.trim();
  if (!t.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The last line of output that is a JSON object (what the tools print as their result). */
export function lastJsonObject(output: string): Record<string, unknown> | undefined {
  const lines = output.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const v = parseJsonObject(lines[i] ?? '');
    if (v !== undefined) return v;
  }
  return undefined;
}
