// Strips the agent's TypeScript to JavaScript under .cache/js, which
// bin/hypha runs. Node 24 could run the .ts files directly, but its type
// stripper (a WebAssembly build of swc) and the per-file stripping cost a
// long-running agent about 30 MB of resident memory (measured: 106 -> 74 MB
// after loading the agent's modules). Same code, types removed: no
// transpiling, no bundling; the output's line and column numbers match.
//
//   node scripts/build-js.ts     (make build runs it; bin/hypha when stale)
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(repo, '.cache/js');
const tmp = `${out}.tmp-${process.pid}`;

function sources(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'build' && name !== 'node_modules') found.push(...sources(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && !name.endsWith('.test.ts')) {
      found.push(p);
    }
  }
  return found;
}

const files = [...sources(path.join(repo, 'src')), path.join(repo, 'native/index.ts')];
rmSync(tmp, { recursive: true, force: true });
for (const file of files) {
  const rel = path.relative(repo, file);
  const js = stripTypeScriptTypes(readFileSync(file, 'utf8'), { mode: 'strip' })
    // relative imports name .ts files; the output is .js
    .replace(/((?:from|import)\s*\(?\s*'\.{1,2}\/[^']*)\.ts'/g, "$1.js'");
  mkdirSync(path.join(tmp, path.dirname(rel)), { recursive: true });
  writeFileSync(path.join(tmp, rel.replace(/\.ts$/, '.js')), js);
}
// What the code finds next to itself: the addon, the BPF objects.
symlinkSync(path.join(repo, 'native/build'), path.join(tmp, 'native/build'));
symlinkSync(path.join(repo, 'bpf'), path.join(tmp, 'bpf'));
writeFileSync(path.join(tmp, '.stamp'), `${new Date().toISOString()}\n`);
// Swap in whole, so a concurrent start never sees a half-written tree.
const old = `${out}.old-${process.pid}`;
try {
  renameSync(out, old);
} catch {
  // no previous build
}
renameSync(tmp, out);
rmSync(old, { recursive: true, force: true });
process.stderr.write(`build-js: ${files.length} files -> ${path.relative(repo, out)}\n`);
