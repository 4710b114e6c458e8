// Generates src/abi/abi.gen.ts from the BTF of bpf/build/abi.o: struct
// layouts (offsets, sizes, kinds), TypeScript interfaces, the enums' values
// and the map definitions. The C headers in bpf/include stay the only place a
// layout is written by hand.
//
//   node scripts/gen-abi.ts            write src/abi/abi.gen.ts
//   node scripts/gen-abi.ts --check    exit 1 if the committed file is stale
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

interface BtfMember { name: string; type_id: number; bits_offset: number; bitfield_size?: number }
interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  values?: { name: string; val: number }[];
  vars?: { type_id: number; offset: number; size: number }[];
  bits_offset?: number;
  nr_bits?: number;
}

export class AbiError extends Error {
  readonly code = 'EABI';
}

const MAP_TYPES: Record<number, string> = {
  1: 'hash', 2: 'array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash', 11: 'lpm_trie', 12: 'array_of_maps', 27: 'ringbuf',
};

export function readBtf(objectPath: string): BtfType[] {
  const out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', objectPath], { encoding: 'utf8' });
  return (JSON.parse(out) as { types: BtfType[] }).types;
}

function pascal(name: string): string {
  return name.replace(/^hypha_/, '').split('_').map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('');
}

function commonPrefix(names: string[]): string {
  if (names.length === 0) return '';
  // One value: keep everything after HYPHA_<GROUP>_ (HYPHA_CFG_DROP_EVENTS -> DROP_EVENTS).
  if (names.length === 1) return /^[A-Z0-9]+_[A-Z0-9]+_/.exec(names[0] ?? '')?.[0] ?? '';
  let prefix = names[0] ?? '';
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix.slice(0, prefix.lastIndexOf('_') + 1);
}

export interface AbiModel {
  structs: { name: string; size: number; fields: { name: string; offset: number; size: number; kind: string }[] }[];
  enums: { name: string; size: number; values: { name: string; val: number }[] }[];
  maps: { name: string; type: string; key: string | null; value: string | null; maxEntries: number; pinned: boolean }[];
}

export function abiModel(types: BtfType[]): AbiModel {
  const byId = new Map<number, BtfType>(types.map((t) => [t.id, t]));
  const get = (id: number): BtfType => {
    const t = byId.get(id);
    if (!t) throw new AbiError(`BTF type id ${id} is missing`);
    return t;
  };
  const strip = (id: number): BtfType => {
    let t = get(id);
    while (t.kind === 'CONST' || t.kind === 'VOLATILE') t = get(t.type_id ?? 0);
    return t;
  };
  const sizeOf = (t: BtfType): number => {
    if (t.kind === 'TYPEDEF') return sizeOf(get(t.type_id ?? 0));
    if (t.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(get(t.type_id ?? 0));
    if (t.size === undefined) throw new AbiError(`BTF type ${t.name ?? t.id} (${t.kind}) has no size`);
    return t.size;
  };
  const kindOf = (t: BtfType, field: string): string => {
    if (/^pad\d*$/.test(field)) return 'pad';
    if (t.kind === 'TYPEDEF') {
      if (t.name === 'hypha_ip4_t') return 'ip4';
      if (t.name === '__be16') return 'be16';
      if (t.name === '__be32') return 'be32';
      return kindOf(get(t.type_id ?? 0), field);
    }
    if (t.kind === 'INT' || t.kind === 'ENUM') {
      const size = sizeOf(t);
      const k = ({ 1: 'u8', 2: 'u16', 4: 'u32', 8: 'u64' } as Record<number, string>)[size];
      if (!k) throw new AbiError(`field ${field}: unsupported integer size ${size}`);
      return k;
    }
    if (t.kind === 'ARRAY') return 'bytes';
    throw new AbiError(`field ${field}: unsupported BTF kind ${t.kind}`);
  };

  const model: AbiModel = { structs: [], enums: [], maps: [] };
  for (const t of types) {
    if (t.kind === 'STRUCT' && t.name?.startsWith('hypha_') && t.name !== 'hypha_abi') {
      model.structs.push({
        name: t.name,
        size: t.size ?? 0,
        fields: (t.members ?? []).map((m) => {
          if (m.bitfield_size) throw new AbiError(`${t.name}.${m.name}: bitfields are not supported`);
          const mt = strip(m.type_id);
          return { name: m.name, offset: m.bits_offset / 8, size: sizeOf(mt), kind: kindOf(mt, m.name) };
        }),
      });
    }
    if (t.kind === 'ENUM' && t.name?.startsWith('hypha_')) {
      model.enums.push({ name: t.name, size: t.size ?? 4, values: t.values ?? [] });
    }
    if (t.kind === 'DATASEC' && t.name === '.maps') {
      for (const v of t.vars ?? []) {
        const variable = get(v.type_id);
        const def = strip(variable.type_id ?? 0);
        const member = (name: string): BtfType | undefined => {
          const m = def.members?.find((x) => x.name === name);
          return m ? get(get(m.type_id).type_id ?? 0) : undefined;
        };
        const typeName = (x: BtfType | undefined): string | null => {
          if (!x) return null;
          if (x.kind === 'TYPEDEF' && x.name === 'hypha_ip4_t') return 'ip4';
          const s = strip(x.id);
          if (s.kind === 'STRUCT') return s.name ?? null;
          return ({ 4: 'u32' } as Record<number, string>)[sizeOf(s)] ?? null;
        };
        const mapType = member('type')?.nr_elems ?? 0;
        model.maps.push({
          name: variable.name ?? '',
          type: MAP_TYPES[mapType] ?? `type${mapType}`,
          key: typeName(member('key')),
          value: typeName(member('value')),
          maxEntries: member('max_entries')?.nr_elems ?? 0,
          pinned: (member('pinning')?.nr_elems ?? 0) === 1,
        });
      }
    }
  }
  model.structs.sort((a, b) => a.name.localeCompare(b.name));
  model.enums.sort((a, b) => a.name.localeCompare(b.name));
  model.maps.sort((a, b) => a.name.localeCompare(b.name));
  return model;
}

const TS_TYPES: Record<string, string> = {
  ip4: 'string', be16: 'number', be32: 'number', u8: 'number', u16: 'number', u32: 'number',
  u64: 'bigint', bytes: 'Uint8Array',
};

/** The comment after each drop reason in drop.h: its text for people (CLI, metrics). */
export function dropReasonTexts(headerText: string): Map<string, string> {
  const texts = new Map<string, string>();
  for (const m of headerText.matchAll(/^\s*(HYPHA_DROP_\w+)\s*=\s*\d+,\s*\/\*\s*(.*?)\s*\*\//gm)) {
    texts.set(m[1] ?? '', m[2] ?? '');
  }
  return texts;
}

export function renderAbi(model: AbiModel, source: string, dropTexts = new Map<string, string>()): string {
  const lines: string[] = [
    `// Generated by scripts/gen-abi.ts from the BTF of ${source}. Do not edit:`,
    '// change bpf/include/hypha/*.h, run `make abi`, commit both.',
    "import type { Layout } from './codec.ts';",
    '',
  ];
  for (const e of model.enums) {
    const names = e.values.map((v) => v.name);
    const prefix = commonPrefix(names);
    lines.push(`/** enum ${e.name} */`, `export const ${pascal(e.name)} = {`);
    for (const v of e.values) {
      const short = v.name.slice(prefix.length);
      if (short.startsWith('_')) continue; // width sentinels
      lines.push(`  ${short}: ${v.val},`);
    }
    lines.push('} as const;', '');
    if (e.name === 'hypha_drop_reason') {
      lines.push('/** What each drop reason means, from the comments in bpf/include/hypha/drop.h. */');
      lines.push('export const DropReasonText: Record<number, string> = {');
      for (const v of e.values) {
        const text = dropTexts.get(v.name);
        if (text) lines.push(`  ${v.val}: ${JSON.stringify(text)},`);
      }
      lines.push('};', '');
    }
  }
  for (const s of model.structs) {
    lines.push(`/** struct ${s.name} (${s.size} bytes) */`, `export interface ${pascal(s.name)} {`);
    for (const f of s.fields) if (f.kind !== 'pad') lines.push(`  ${f.name}: ${TS_TYPES[f.kind]};`);
    lines.push('}', '');
  }
  lines.push('export const layouts = {');
  for (const s of model.structs) {
    lines.push(`  ${s.name}: {`, `    name: '${s.name}',`, `    size: ${s.size},`, '    fields: [');
    for (const f of s.fields) {
      lines.push(`      { name: '${f.name}', offset: ${f.offset}, size: ${f.size}, kind: '${f.kind}' },`);
    }
    lines.push('    ],', '  },');
  }
  lines.push('} as const satisfies Record<string, Layout>;', '');
  lines.push('/** Map definitions as compiled (max_entries are defaults; the loader sets the installed sizes). */');
  lines.push('export const maps = {');
  for (const m of model.maps) {
    const q = (x: string | null): string => (x === null ? 'null' : `'${x}'`);
    lines.push(
      `  ${m.name}: { name: '${m.name}', type: '${m.type}', key: ${q(m.key)}, value: ${q(m.value)}, maxEntries: ${m.maxEntries}, pinned: ${m.pinned} },`,
    );
  }
  lines.push('} as const;', '');
  lines.push('export type MapName = keyof typeof maps;', '');
  return lines.join('\n');
}

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ABI_OBJECT = path.join(repo, 'bpf/build/abi.o');
export const ABI_OUTPUT = path.join(repo, 'src/abi/abi.gen.ts');

export function generate(objectPath = ABI_OBJECT): string {
  const dropHeader = readFileSync(path.join(repo, 'bpf/include/hypha/drop.h'), 'utf8');
  return renderAbi(abiModel(readBtf(objectPath)), path.relative(repo, objectPath), dropReasonTexts(dropHeader));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const text = generate();
  if (process.argv.includes('--check')) {
    const current = readFileSync(ABI_OUTPUT, 'utf8');
    if (current !== text) {
      process.stderr.write(`${path.relative(repo, ABI_OUTPUT)} is stale: run \`make abi\`\n`);
      process.exit(1);
    }
  } else {
    writeFileSync(ABI_OUTPUT, text);
    process.stdout.write(`wrote ${path.relative(repo, ABI_OUTPUT)}\n`);
  }
}
