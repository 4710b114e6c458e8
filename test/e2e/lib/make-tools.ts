// Tool binaries the Makefile builds into $(HYPHA_CACHE) (helm, kubectl, the
// kind config checker), found the way the other harness code finds them: a
// `*-versions` target prints KEY=path lines, the environment overrides them
// (`make` exports them), and a missing binary is built with `make <path>`
// (its progress on stderr; under `node --test` stdout belongs to the runner).

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../../..');

function makeEnv(): NodeJS.ProcessEnv {
  // Under `make test` the parent's flags (jobserver fds, -k, ...) must not leak in.
  const { MAKEFLAGS: _flags, MFLAGS: _mflags, MAKELEVEL: _level, ...env } = process.env;
  return env;
}

/**
 * The path `make -s <target>` prints for `key` (KEY=value lines), built with
 * `make <path>` first when it does not exist yet.
 */
export function makeTool(target: string, key: string): string {
  const env = makeEnv();
  let tool = process.env[key];
  if (!tool) {
    const out = execFileSync('make', ['-s', '--no-print-directory', '-C', REPO_ROOT, target], { env, encoding: 'utf8', timeout: 60_000 });
    const line = out.split('\n').find((l) => l.startsWith(`${key}=`));
    tool = line?.slice(key.length + 1).trim();
    if (!tool) throw new Error(`make ${target} printed no ${key}= line (is its .mk file included from the Makefile?): ${out.trim()}`);
  }
  if (!existsSync(tool)) {
    process.stderr.write(`${key}: ${tool} is missing; building it (make ${tool})\n`);
    const r = spawnSync('make', ['--no-print-directory', '-C', REPO_ROOT, tool], { env, stdio: ['ignore', 2, 2], timeout: 1_800_000 });
    if (r.status !== 0 || !existsSync(tool)) throw new Error(`make ${tool} exited with ${r.status ?? r.signal}; ${key} still missing`);
  }
  return tool;
}

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a short command (no shell) and returns its exit status and output. */
export function runTool(argv: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Ran {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runTool: empty argv');
  const r = spawnSync(file, args, { cwd: opts.cwd ?? REPO_ROOT, encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
