// Shared pieces of the addon tests: fixtures, pin directories, fd counting and
// error assertions.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { isNativeError } from '../index.ts';
import type { NativeError } from '../index.ts';

export const NODE = process.execPath;
export const TEST_DIR = fileURLToPath(new URL('.', import.meta.url));
const OUT_DIR = fileURLToPath(new URL('../build/test/', import.meta.url));

/** Path of a compiled fixture (native/test/<name>.bpf.c). `make test-native` builds
 * them; a missing or stale one is compiled here so a single test file runs alone. */
export function fixture(name: string): string {
  const src = `${TEST_DIR}${name}.bpf.c`;
  const out = `${OUT_DIR}${name}.bpf.o`;
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(OUT_DIR, { recursive: true });
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-Wall', '-c', src, '-o', out], {
      stdio: 'inherit',
    });
  }
  return out;
}

/** A unique name for this run: `<prefix>-<pid>-<random>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A fresh directory under /sys/fs/bpf for this test's pins. */
export function makePinDir(): string {
  const dir = `/sys/fs/bpf/${uniqueName('hypha-test')}`;
  mkdirSync(dir);
  return dir;
}

/** Removes a pin directory and everything pinned in it (unlinking a pin drops the
 * kernel object once nothing else holds it). */
export function removePinDir(dir: string): void {
  assert.ok(dir.startsWith('/sys/fs/bpf/hypha-test-'), `refusing to remove ${dir}`);
  rmSync(dir, { recursive: true, force: true });
}

export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

export interface ExpectedError {
  code: string;
  op?: string;
  errno?: number;
  message?: RegExp;
  name?: string;
}

function check(err: unknown, expected: ExpectedError): true {
  assert.ok(isNativeError(err), `expected a native error, got ${String(err)}`);
  const e: NativeError = err;
  assert.equal(e.code, expected.code, `code of: ${e.message}`);
  if (expected.op !== undefined) assert.equal(e.op, expected.op, `op of: ${e.message}`);
  if (expected.errno !== undefined) assert.equal(e.errno, expected.errno, `errno of: ${e.message}`);
  if (expected.message) assert.match(e.message, expected.message);
  if (expected.name) assert.equal(e.name, expected.name);
  return true;
}

export function throwsNative(fn: () => unknown, expected: ExpectedError): void {
  assert.throws(fn, (err: unknown) => check(err, expected));
}

export async function rejectsNative(promise: Promise<unknown>, expected: ExpectedError): Promise<NativeError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    return check(err, expected);
  });
  return caught as NativeError;
}

// Little-endian encoders for keys and values.
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

export function u64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

export function readU32(b: Uint8Array, offset = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(offset, true);
}

export function readU64(b: Uint8Array, offset = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(offset, true);
}

/** A 64-byte Ethernet frame: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, IPv4
 * ethertype, then a counting payload. */
export function ethFrame(length = 64): Uint8Array {
  const f = new Uint8Array(length);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
  for (let i = 14; i < length; i++) f[i] = i & 0xff;
  return f;
}

/** Runs the GC (the test runner passes --expose-gc; otherwise V8 is asked for it)
 * and waits for deferred finalizers. */
export async function collectGarbage(): Promise<void> {
  const g = (globalThis as { gc?: () => void }).gc ?? (await exposedGc());
  for (let i = 0; i < 3; i++) {
    g();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function exposedGc(): Promise<() => void> {
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
