// The API server's protobuf encoding (Accept: application/vnd.kubernetes.protobuf),
// read for the lists the agent makes at start and on every resync: Services and
// EndpointSlices, and the Status of a failed request.
//
// Why: at 100 000 Services x 10 endpoints, the API server spends 12-15 CPU
// seconds encoding the two lists as JSON (260 MB, pages of 500) and 2 encoding
// them as protobuf (117 MB, pages of 5000), measured on this project's 2-core
// test machine where it shares the CPU with the agent; the agent's JSON.parse
// of those pages was 3 more.
//
// Written by hand where protobufjs could decode: protobufjs needs the .proto
// sources (k8s.io/api core/v1 alone is 7 000 lines, importing apimachinery's)
// at run time or a generated module, and decodes every field, managedFields
// included. This reader knows the few dozen fields the agent's normalizers
// (services/normalize.ts) read, by field number, and skips every other field
// without allocating. It builds the objects those normalizers take: the same
// shape and values as the JSON encoding (field names, omitted empty values,
// IntOrString as a number or a string, times as RFC 3339 text), so one
// normalizer serves both encodings. test/e2e/k8s-protobuf.test.ts lists the
// same objects both ways from a real API server and compares.
//
// Wire format: https://protobuf.dev/programming-guides/encoding/; the
// envelope (the 'k8s\0' magic, then a runtime.Unknown whose raw field holds
// the object) is k8s.io/apimachinery/pkg/runtime/serializer/protobuf.

export const PROTOBUF_TYPE = 'application/vnd.kubernetes.protobuf';

const MAGIC = [0x6b, 0x38, 0x73, 0x00];

export class ProtobufError extends Error {
  readonly code = 'EPROTOBUF';
  constructor(message: string) {
    super(message);
    this.name = 'ProtobufError';
  }
}

/**
 * How a field is read and what it becomes:
 * - 'string' / 'int' / 'bool': the value as sent (a Go pointer field: sent
 *   only when set, so a false or a 0 is a value the JSON encoding has too);
 * - 'string?' / 'int?': a Go value field with omitempty: protobuf sends it
 *   even when empty, JSON leaves it out, and so do we;
 * - 'strings': repeated string;
 * - 'message' / 'messages': one or repeated submessage, by its schema;
 * - 'map': map<string, string> (repeated key = 1, value = 2 entries);
 * - 'time': metav1.Time (seconds = 1, nanos = 2) as RFC 3339 text, as JSON;
 * - 'intOrString': intstr.IntOrString (type = 1, intVal = 2, strVal = 3) as
 *   the number or the string it holds.
 */
type Kind = 'string' | 'string?' | 'int' | 'int?' | 'bool' | 'strings' | 'message' | 'messages' | 'map' | 'time' | 'intOrString';

interface FieldSpec {
  readonly name: string;
  readonly kind: Kind;
  readonly schema?: Schema;
}

/** A message's fields by number (a sparse array). */
export type Schema = readonly (FieldSpec | undefined)[];

function schema(fields: Record<number, [string, Kind, Schema?]>): Schema {
  const out: (FieldSpec | undefined)[] = [];
  for (const [no, [name, kind, sub]] of Object.entries(fields)) out[Number(no)] = sub ? { name, kind, schema: sub } : { name, kind };
  return out;
}

// --- k8s.io/apimachinery/pkg/apis/meta/v1 -----------------------------------

const LIST_META = schema({ 2: ['resourceVersion', 'string?'], 3: ['continue', 'string?'] });
// Each kind's metadata has what its normalizer reads: a Service's creation
// time (the older of two claiming one address wins), a slice's labels (the
// Service it belongs to).
const SERVICE_META = schema({ 1: ['name', 'string?'], 3: ['namespace', 'string?'], 6: ['resourceVersion', 'string?'], 8: ['creationTimestamp', 'time'] });
const SLICE_META = schema({ 1: ['name', 'string?'], 3: ['namespace', 'string?'], 6: ['resourceVersion', 'string?'], 11: ['labels', 'map'] });
const STATUS_CAUSE = schema({ 1: ['reason', 'string?'], 2: ['message', 'string?'], 3: ['field', 'string?'] });
const STATUS_DETAILS = schema({ 1: ['name', 'string?'], 2: ['group', 'string?'], 3: ['kind', 'string?'], 4: ['causes', 'messages', STATUS_CAUSE] });
/** metav1.Status: what a failed request answers. */
export const STATUS = schema({ 2: ['status', 'string?'], 3: ['message', 'string?'], 4: ['reason', 'string?'], 5: ['details', 'message', STATUS_DETAILS], 6: ['code', 'int?'] });

// --- k8s.io/api/core/v1: Service --------------------------------------------

const SERVICE_PORT = schema({
  1: ['name', 'string?'], 2: ['protocol', 'string?'], 3: ['port', 'int'], 4: ['targetPort', 'intOrString'], 5: ['nodePort', 'int?'],
});
const CLIENT_IP_CONFIG = schema({ 1: ['timeoutSeconds', 'int'] });
const SESSION_AFFINITY_CONFIG = schema({ 1: ['clientIP', 'message', CLIENT_IP_CONFIG] });
const SERVICE_SPEC = schema({
  1: ['ports', 'messages', SERVICE_PORT], 3: ['clusterIP', 'string?'], 4: ['type', 'string?'], 5: ['externalIPs', 'strings'],
  7: ['sessionAffinity', 'string?'], 11: ['externalTrafficPolicy', 'string?'], 12: ['healthCheckNodePort', 'int?'],
  14: ['sessionAffinityConfig', 'message', SESSION_AFFINITY_CONFIG], 18: ['clusterIPs', 'strings'], 19: ['ipFamilies', 'strings'],
  22: ['internalTrafficPolicy', 'string'],
});
const LB_INGRESS = schema({ 1: ['ip', 'string?'], 2: ['hostname', 'string?'], 3: ['ipMode', 'string'] });
const LB_STATUS = schema({ 1: ['ingress', 'messages', LB_INGRESS] });
const SERVICE_STATUS = schema({ 1: ['loadBalancer', 'message', LB_STATUS] });
const SERVICE = schema({ 1: ['metadata', 'message', SERVICE_META], 2: ['spec', 'message', SERVICE_SPEC], 3: ['status', 'message', SERVICE_STATUS] });

// --- k8s.io/api/discovery/v1: EndpointSlice ---------------------------------

const ENDPOINT_CONDITIONS = schema({ 1: ['ready', 'bool'], 2: ['serving', 'bool'], 3: ['terminating', 'bool'] });
const ENDPOINT = schema({ 1: ['addresses', 'strings'], 2: ['conditions', 'message', ENDPOINT_CONDITIONS], 6: ['nodeName', 'string'] });
const ENDPOINT_PORT = schema({ 1: ['name', 'string'], 2: ['protocol', 'string'], 3: ['port', 'int'] });
const ENDPOINT_SLICE = schema({
  1: ['metadata', 'message', SLICE_META], 2: ['endpoints', 'messages', ENDPOINT], 3: ['ports', 'messages', ENDPOINT_PORT],
  4: ['addressType', 'string?'],
});

/** A list's ListMeta (field 1) and items (field 2), length-delimited. */
const LIST_META_TAG = (1 << 3) | 2;
const LIST_ITEMS_TAG = (2 << 3) | 2;

/** Item schemas of the list schemas made by listOf. */
const LIST_ITEMS = new Map<Schema, Schema>();

/** A list kind: ListMeta = 1, items = 2 (every k8s XxxList). */
function listOf(item: Schema): Schema {
  const s = schema({ 1: ['metadata', 'message', LIST_META], 2: ['items', 'messages', item] });
  LIST_ITEMS.set(s, item);
  return s;
}

export const SERVICE_LIST = listOf(SERVICE);
export const ENDPOINT_SLICE_LIST = listOf(ENDPOINT_SLICE);

// --- the reader -------------------------------------------------------------

const UNKNOWN = { typeMeta: 1, raw: 2 } as const;

class Reader {
  readonly buf: Buffer;
  pos: number;
  constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }

  #byte(end: number): number {
    if (this.pos >= end) throw new ProtobufError(`truncated at byte ${this.pos}`);
    return this.buf[this.pos++]!;
  }

  /** A varint of up to 53 bits (lengths, tags, int64 times). */
  uint(end: number): number {
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.#byte(end);
      value += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) throw new ProtobufError(`varint at byte ${this.pos} is larger than 2^53`);
        return value;
      }
      mul *= 128;
    }
    throw new ProtobufError(`varint at byte ${this.pos} is longer than 10 bytes`);
  }

  /** An int32 (a negative one is sent as a 10-byte varint: its low 32 bits are the value). */
  int32(end: number): number {
    let value = 0;
    for (let i = 0; i < 10; i++) {
      const b = this.#byte(end);
      if (i < 5) value |= (b & 0x7f) << (7 * i);
      if (b < 0x80) return value | 0;
    }
    throw new ProtobufError(`varint at byte ${this.pos} is longer than 10 bytes`);
  }

  /** The end of the length-delimited field starting here. */
  len(end: number): number {
    const n = this.uint(end);
    const stop = this.pos + n;
    if (stop > end) throw new ProtobufError(`field of ${n} bytes at byte ${this.pos} runs past its message (byte ${end})`);
    return stop;
  }

  string(end: number): string {
    const stop = this.len(end);
    const s = this.buf.toString('utf8', this.pos, stop);
    this.pos = stop;
    return s;
  }

  skip(wire: number, end: number): void {
    switch (wire) {
      case 0: this.uint(end); return;
      case 1: this.pos += 8; break;
      case 2: this.pos = this.len(end); return;
      case 5: this.pos += 4; break;
      default: throw new ProtobufError(`wire type ${wire} at byte ${this.pos} (groups are not used by Kubernetes)`);
    }
    if (this.pos > end) throw new ProtobufError(`truncated at byte ${end}`);
  }
}

function expectWire(wire: number, want: number, f: FieldSpec, r: Reader): void {
  if (wire !== want) throw new ProtobufError(`field ${f.name} at byte ${r.pos} has wire type ${wire}, expected ${want}`);
}

function time(r: Reader, end: number): string {
  let seconds = 0;
  while (r.pos < end) {
    const tag = r.uint(end);
    if (tag === 0x08) seconds = r.uint(end);
    else r.skip(tag & 7, end);
  }
  // As metav1.Time's JSON: UTC, whole seconds.
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function intOrString(r: Reader, end: number): number | string {
  let type = 0;
  let intVal = 0;
  let strVal = '';
  while (r.pos < end) {
    const tag = r.uint(end);
    if (tag === 0x08) type = r.uint(end);
    else if (tag === 0x10) intVal = r.int32(end);
    else if (tag === 0x1a) strVal = r.string(end);
    else r.skip(tag & 7, end);
  }
  return type === 1 ? strVal : intVal;
}

function stringMap(r: Reader, end: number, into: Record<string, string>): void {
  let key = '';
  let value = '';
  while (r.pos < end) {
    const tag = r.uint(end);
    if (tag === 0x0a) key = r.string(end);
    else if (tag === 0x12) value = r.string(end);
    else r.skip(tag & 7, end);
  }
  into[key] = value;
}

function message(r: Reader, end: number, s: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  while (r.pos < end) {
    const tag = r.uint(end);
    const wire = tag & 7;
    const f = s[tag >>> 3];
    if (f === undefined) {
      r.skip(wire, end);
      continue;
    }
    const varint = f.kind === 'int' || f.kind === 'int?' || f.kind === 'bool';
    expectWire(wire, varint ? 0 : 2, f, r);
    switch (f.kind) {
      case 'string':
      case 'string?': {
        const v = r.string(end);
        if (v !== '' || f.kind === 'string') out[f.name] = v;
        break;
      }
      case 'int':
      case 'int?': {
        const v = r.int32(end);
        if (v !== 0 || f.kind === 'int') out[f.name] = v;
        break;
      }
      case 'bool':
        out[f.name] = r.uint(end) !== 0;
        break;
      case 'strings':
        ((out[f.name] ??= []) as string[]).push(r.string(end));
        break;
      default: {
        // A submessage: read within its bounds, then go past them whatever it left.
        const stop = r.len(end);
        if (f.kind === 'message') out[f.name] = message(r, stop, f.schema!);
        else if (f.kind === 'messages') ((out[f.name] ??= []) as unknown[]).push(message(r, stop, f.schema!));
        else if (f.kind === 'map') stringMap(r, stop, (out[f.name] ??= {}) as Record<string, string>);
        else if (f.kind === 'time') out[f.name] = time(r, stop);
        else out[f.name] = intOrString(r, stop);
        r.pos = stop;
      }
    }
  }
  return out;
}

/** Where the object inside the 'k8s\0' envelope starts and ends. */
function unwrap(buf: Buffer): Reader & { end: number } {
  if (buf.length < 4 || MAGIC.some((b, i) => buf[i] !== b)) {
    throw new ProtobufError(`not a Kubernetes protobuf message (starts ${JSON.stringify(buf.subarray(0, 4).toString('latin1'))}, not "k8s\\0")`);
  }
  const r = new Reader(buf, 4);
  let raw: [number, number] | undefined;
  while (r.pos < buf.length) {
    const tag = r.uint(buf.length);
    if (tag >>> 3 === UNKNOWN.raw && (tag & 7) === 2) {
      const stop = r.len(buf.length);
      raw = [r.pos, stop];
      r.pos = stop;
    } else {
      r.skip(tag & 7, buf.length);
    }
  }
  if (!raw) throw new ProtobufError('Kubernetes protobuf message without an object (runtime.Unknown.raw)');
  r.pos = raw[0];
  return Object.assign(r, { end: raw[1] });
}

/** Decode a protobuf-encoded API object (the envelope included) by its schema,
 *  into the shape its JSON encoding has (the schema's fields only). A list
 *  schema (listOf) decodes its items lazily: see decodeList. */
export function decodeObject(buf: Buffer, s: Schema): Record<string, unknown> {
  const r = unwrap(buf);
  const item = LIST_ITEMS.get(s);
  return item ? decodeList(r, item) : message(r, r.end, s);
}

/**
 * A list page whose items are decoded one at a time as they are iterated:
 * only the items' offsets are read up front. A consumer that turns each item
 * into its own state as it goes (the informer) leaves each decoded object to
 * die young, instead of a page of 5 000 surviving the scavenges it takes to
 * decode them all and being promoted to the old generation as garbage. The
 * bytes are checked as each item is reached: a damaged item throws then.
 */
function decodeList(r: Reader & { end: number }, item: Schema): Record<string, unknown> {
  const end = r.end;
  const offsets: number[] = [];
  const out: Record<string, unknown> = {};
  while (r.pos < end) {
    const tag = r.uint(end);
    if (tag === LIST_ITEMS_TAG) {
      const stop = r.len(end);
      offsets.push(r.pos, stop);
      r.pos = stop;
    } else if (tag === LIST_META_TAG) {
      const stop = r.len(end);
      out.metadata = message(r, stop, LIST_META);
      r.pos = stop;
    } else {
      r.skip(tag & 7, end);
    }
  }
  const buf = r.buf;
  out.items = {
    length: offsets.length / 2,
    *[Symbol.iterator]() {
      for (let i = 0; i < offsets.length; i += 2) yield message(new Reader(buf, offsets[i]!), offsets[i + 1]!, item);
    },
  };
  return out;
}
