// rtnetlink messages for the agent's endpoint code: links (veth with its peer in
// another namespace, VXLAN), IPv4 addresses, routes, neighbours and VXLAN FDB
// entries. Pure: requests are bytes, replies are bytes; the effects are in rtnl.ts.
//
// Structs and attributes are encoded and decoded with the `netlink` package's pure
// modules (only netlink/dist/structs.js, constants.js, rt/gen_structs.js and
// rt/ifla.js: the package main loads its own native socket binding, which we never
// want). Written here by hand, because the package lacks them:
//  - nesting: the package types IFLA_LINKINFO and VETH_INFO_PEER as raw bytes, so
//    flattening a nested attribute stream (`nested`) and the peer's ifinfomsg +
//    attributes are assembled here;
//  - integer attributes the package types as raw bytes: IFLA_LINK (u32),
//    IFLA_EXT_MASK (u32), IFLA_VXLAN_PORT (be16), NDA_PORT (be16), NDA_VNI (u32),
//    NDA_IFINDEX (u32), RTAX_MTU (u32);
//  - RTNH_F_ONLINK in rtm_flags (the package's RouteFlags only has RTM_F_*), the
//    address families AF_INET / AF_BRIDGE and IFF_UP's meaning for SETLINK;
//  - IPv4, prefix, MAC and interface-name parsing and validation.
// The UAPI numbers written here are stable kernel ABI (include/uapi/linux/*.h).

import { isIPv4 } from 'node:net';
import { Flags, FlagsGet, FlagsNew } from 'netlink/dist/constants.js';
import {
  MessageType,
  RouteProtocol,
  RouteScope,
  RouteType,
  formatAddress,
  formatAddressAttrs,
  formatLink,
  formatNeighbor,
  formatNeighborAttrs,
  formatNeighborState,
  formatRoute,
  formatRouteAttrs,
  formatRouteMetrics,
  parseAddress,
  parseAddressAttrs,
  parseLink,
  parseNeighbor,
  parseNeighborAttrs,
  parseRoute,
  parseRouteAttrs,
  formatRule,
  formatRuleAttrs,
  parseRule,
  parseRuleAttrs,
  type AddressAttrs,
  type Link,
  type NeighborAttrs,
  type NeighborState,
  type RouteAttrs,
} from 'netlink/dist/rt/gen_structs.js';
import { formatInfo, formatLinkAttrs, formatVethInfo, formatVxlan, parseInfo, parseLinkAttrs, parseVxlan, type LinkAttrs } from 'netlink/dist/rt/ifla.js';
import { AttrStream, formatMessage, type StreamData } from 'netlink/dist/structs.js';

// --- kernel numbers the package does not have -------------------------------------

const AF_UNSPEC = 0;
const AF_INET = 2;
const AF_BRIDGE = 7;
/** include/uapi/linux/rtnetlink.h: RTNH_F_ONLINK, a next-hop flag carried in rtm_flags. */
const RTNH_F_ONLINK = 4;
/** include/uapi/linux/rtnetlink.h: RTM_F_CLONED (route cache entries in a dump). */
const RTM_F_CLONED = 0x200;
/** RTEXT_FILTER_SKIP_STATS: link replies without the (large) statistics. */
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
/** include/uapi/linux/neighbour.h */
const NTF_SELF = 0x02;
const NTF_MASTER = 0x04;
const NTF_ROUTER = 0x80;

export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;
/** The protocol `ip route` marks routes with when none is given (RTPROT_BOOT). */
export const RTPROT_BOOT = RouteProtocol.BOOT;
/** The default VXLAN port on Linux (IANA's is 4789). */
export const VXLAN_DEFAULT_PORT = 8472;

const NLM_F_REQUEST = Flags.REQUEST;
const NLM_F_DUMP = FlagsGet.DUMP;
const NLM_F_CREATE = FlagsNew.CREATE;
const NLM_F_EXCL = FlagsNew.EXCL;
const NLM_F_REPLACE = FlagsNew.REPLACE;
const NLM_F_APPEND = FlagsNew.APPEND;
const NLM_F_ECHO = Flags.ECHO;

// --- errors -----------------------------------------------------------------------

/** Codes that are not errno names. */
export type RtnlSpecialCode =
  | 'EINVALARG' // a bad argument (the message names the field and the value)
  | 'ECLOSED' // the Rtnl was closed
  | 'EBADREPLY'; // the kernel's answer could not be decoded

export class RtnlError extends Error {
  /** errno name ('EEXIST', 'ENODEV', 'ESRCH', 'ENOENT', ...) or an RtnlSpecialCode. */
  readonly code: string;
  /** Positive errno; 0 for the special codes. */
  readonly errno: number;
  /** The request ('RTM_NEWLINK', ...), or the method for bad arguments. */
  readonly op: string;
  /** The kernel's extended ACK message, when it gave one. */
  readonly extack: string | undefined;
  /** What the request was about: `veth lxc1a2b (peer eth0 in netns /run/netns/x)`. */
  readonly object: string;
  constructor(
    fields: { code: string; errno: number; op: string; object: string; extack?: string | undefined },
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'RtnlError';
    this.code = fields.code;
    this.errno = fields.errno;
    this.op = fields.op;
    this.object = fields.object;
    this.extack = fields.extack;
  }
}

/** Is err an RtnlError (with this code)? */
export function isRtnlError(err: unknown, code?: RtnlSpecialCode | (string & {})): err is RtnlError {
  return err instanceof RtnlError && (code === undefined || err.code === code);
}

export function invalidArg(op: string, message: string): RtnlError {
  return new RtnlError({ code: 'EINVALARG', errno: 0, op, object: '' }, `rtnl ${op}: ${message}`);
}

// --- what a request is and what came back --------------------------------------------

/** One message for the kernel and what to call it in errors. */
export interface RtnlRequest {
  /** 'RTM_NEWLINK', ... */
  readonly op: string;
  /** `veth lxc1a2b (peer eth0 in netns /run/netns/x)` */
  readonly object: string;
  readonly message: Uint8Array;
}

/** The kernel's answer to one request (as native netlinkTransact gives it). */
export interface RtnlReply {
  errno: number;
  code?: string;
  strerror?: string;
  extack?: string;
  skipped?: true;
  interrupted?: true;
  messages: Uint8Array[];
}

/** The error for a failed reply: `rtnl RTM_NEWLINK veth x (...) in netns /run/netns/y: EEXIST File exists (extack): detail`. */
export function replyError(req: RtnlRequest, reply: RtnlReply, where: string | undefined, detail?: string): RtnlError {
  const code = reply.code ?? `ERRNO_${reply.errno}`;
  const text = reply.strerror ?? 'error';
  const extack = reply.extack;
  const message =
    `rtnl ${req.op} ${req.object}${where ? ` in netns ${where}` : ''}: ${code} ${text}` +
    `${extack ? ` (kernel: ${extack})` : ''}${detail ? `: ${detail}` : ''}`;
  return new RtnlError({ code, errno: reply.errno, op: req.op, object: req.object, extack }, message);
}

function opName(type: number): string {
  const name = (MessageType as unknown as Record<number, string | undefined>)[type];
  return name ? `RTM_${name}` : `type ${type}`;
}

// --- encoding helpers ---------------------------------------------------------------

/** An attribute stream (a struct, then attributes) as one contiguous buffer. */
function nested(...parts: StreamData[]): Buffer {
  const s = new AttrStream();
  for (const p of parts) s.emit(p);
  return Buffer.concat(s.bufs);
}

function message(type: number, flags: number, body: readonly StreamData[]): RtnlRequest['message'] {
  const s = new AttrStream();
  for (const p of body) s.emit(p);
  const parts = formatMessage({ type, flags: flags | NLM_F_REQUEST, seq: 0, port: 0, data: s.bufs });
  return Buffer.concat(parts);
}

function request(type: number, flags: number, object: string, body: readonly StreamData[]): RtnlRequest {
  return { op: opName(type), object, message: message(type, flags, body) };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

function be16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

// --- validation ---------------------------------------------------------------------

/** An interface name as the kernel accepts it (dev_valid_name). */
export function checkIfname(op: string, field: string, name: unknown): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    Buffer.byteLength(name) > 15 ||
    name === '.' ||
    name === '..' ||
    /[/:\s\0]/.test(name)
  ) {
    throw invalidArg(op, `${field} ${JSON.stringify(name)} is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)`);
  }
  return name;
}

function checkInt(op: string, field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidArg(op, `${field} ${JSON.stringify(v)} must be an integer in [${min}, ${max}]`);
  }
  return v;
}

export function checkIfindex(op: string, field: string, v: unknown): number {
  return checkInt(op, field, v, 1, 0x7fffffff);
}

/** A device by name or ifindex. */
export type LinkRef = string | number;

function checkLinkRef(op: string, field: string, ref: unknown): LinkRef {
  if (typeof ref === 'number') return checkIfindex(op, field, ref);
  if (typeof ref === 'string') return checkIfname(op, field, ref);
  throw invalidArg(op, `${field} ${JSON.stringify(ref)} must be an interface name or an ifindex`);
}

function describeRef(ref: LinkRef): string {
  return typeof ref === 'number' ? `ifindex ${ref}` : ref;
}

function checkMtu(op: string, field: string, v: unknown): number {
  return checkInt(op, field, v, 68, 65535);
}

/** 'aa:bb:cc:dd:ee:ff' (any case) -> 6 bytes. */
export function parseMac(op: string, field: string, mac: unknown): Buffer {
  if (typeof mac !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw invalidArg(op, `${field} ${JSON.stringify(mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  }
  return Buffer.from(mac.split(':').map((x) => Number.parseInt(x, 16)));
}

export function formatMac(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** 'a.b.c.d' -> 4 bytes. */
export function parseIPv4(op: string, field: string, ip: unknown): Buffer {
  if (typeof ip !== 'string' || !isIPv4(ip)) {
    throw invalidArg(op, `${field} ${JSON.stringify(ip)} is not an IPv4 address`);
  }
  return Buffer.from(ip.split('.').map(Number));
}

export function formatIPv4(b: Uint8Array): string {
  return [...b.subarray(0, 4)].join('.');
}

export interface Prefix4 {
  addr: Buffer;
  len: number;
}

/** 'a.b.c.d/n'. With `network`, host bits must be zero (as the kernel wants for a route). */
export function parsePrefix4(op: string, field: string, cidr: unknown, opts: { network?: boolean } = {}): Prefix4 {
  const m = typeof cidr === 'string' ? /^([0-9.]+)\/(\d{1,2})$/.exec(cidr) : null;
  const len = m ? Number(m[2]) : NaN;
  if (!m || !isIPv4(m[1] ?? '') || !(len >= 0 && len <= 32)) {
    throw invalidArg(op, `${field} ${JSON.stringify(cidr)} is not an IPv4 prefix (a.b.c.d/n)`);
  }
  const addr = parseIPv4(op, field, m[1]);
  if (opts.network) {
    const value = addr.readUInt32BE(0);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if ((value & ~mask) >>> 0 !== 0) {
      throw invalidArg(op, `${field} ${JSON.stringify(cidr)} has host bits set (network is ${formatIPv4(u32be(value & mask))}/${len})`);
    }
  }
  return { addr, len };
}

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

// --- decoding helpers ---------------------------------------------------------------

function buf(m: Uint8Array): Buffer {
  return Buffer.from(m.buffer, m.byteOffset, m.byteLength);
}

/** Header type and payload of a reply message; EBADREPLY if it is not what we asked for. */
function payload(m: Uint8Array, want: number, what: string): Buffer {
  const b = buf(m);
  if (b.length < 16 || b.readUInt32LE(0) !== b.length) throw badReply(what, 'truncated message');
  const type = b.readUInt16LE(4);
  if (type !== want) throw badReply(what, `message type ${type}, expected ${want}`);
  return b.subarray(16);
}

function badReply(what: string, why: string, cause?: unknown): RtnlError {
  return new RtnlError(
    { code: 'EBADREPLY', errno: 0, op: what, object: '' },
    `rtnl ${what}: cannot decode the kernel's reply: ${why}`,
    cause === undefined ? undefined : { cause },
  );
}

/** Runs a package parser; its exceptions become EBADREPLY. */
function decodeWith<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isRtnlError(err)) throw err;
    throw badReply(what, (err as Error).message, err);
  }
}

/** Enum fields come back from the package as names when it knows them. */
function enumValue(e: Record<string, string | number>, v: string | number | undefined): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const n = e[v];
  return typeof n === 'number' ? n : 0;
}

// --- links --------------------------------------------------------------------------

export type OperState = 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';
const OPER_STATES: readonly OperState[] = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];

export interface VxlanInfo {
  vni: number;
  /** Source address, when set. */
  local?: string;
  /** Destination UDP port. */
  port: number;
  learning: boolean;
  /** IFLA_VXLAN_LINK: the underlying device, when set. */
  linkIndex?: number;
}

export interface LinkInfo {
  index: number;
  name: string;
  /** Link-layer address; absent for devices without one. */
  mac?: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  operState: OperState;
  /** IFLA_INFO_KIND: 'veth', 'vxlan', 'bridge', ...; absent for plain devices (lo, physical NICs). */
  kind?: string;
  /** IFLA_LINK: for a veth, its peer's ifindex (in the peer's namespace when linkNetnsId is set). */
  linkIndex?: number;
  /** IFLA_LINK_NETNSID: the peer's namespace as seen from this one. */
  linkNetnsId?: number;
  /** IFLA_MASTER: the bridge or bond this device is enslaved to. */
  masterIndex?: number;
  vxlan?: VxlanInfo;
}

function linkHeader(ref: LinkRef | undefined, extra: Partial<Link> = {}): Buffer {
  return formatLink({ family: AF_UNSPEC, index: typeof ref === 'number' ? ref : 0, ...extra });
}

function refAttrs(ref: LinkRef | undefined): LinkAttrs {
  return typeof ref === 'string' ? { ifname: ref } : {};
}

export function linkGetRequest(ref: LinkRef): RtnlRequest {
  const r = checkLinkRef('linkGet', 'nameOrIndex', ref);
  return request(MessageType.GETLINK, 0, `link ${describeRef(r)}`, [
    linkHeader(r),
    formatLinkAttrs({ ...refAttrs(r), extMask: u32(RTEXT_FILTER_SKIP_STATS) }),
  ]);
}

export function linkDumpRequest(): RtnlRequest {
  return request(MessageType.GETLINK, NLM_F_DUMP, 'links', [linkHeader(undefined), formatLinkAttrs({ extMask: u32(RTEXT_FILTER_SKIP_STATS) })]);
}

export function decodeLink(m: Uint8Array): LinkInfo {
  const what = 'RTM_NEWLINK';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWLINK, what);
    const hdr = parseLink(p.subarray(0, 16));
    const attrs = parseLinkAttrs(p.subarray(16));
    const info: LinkInfo = {
      index: hdr.index ?? 0,
      name: attrs.ifname ?? '',
      mtu: attrs.mtu ?? 0,
      up: hdr.flags?.up === true,
      operState: OPER_STATES[attrs.operstate ?? 0] ?? 'unknown',
    };
    if (attrs.address && attrs.address.length > 0) info.mac = formatMac(attrs.address);
    if (attrs.link && attrs.link.length === 4) info.linkIndex = attrs.link.readUInt32LE(0);
    if (attrs.linkNetnsid !== undefined) info.linkNetnsId = attrs.linkNetnsid;
    if (attrs.master !== undefined) info.masterIndex = attrs.master;
    if (attrs.linkinfo) {
      const li = parseInfo(attrs.linkinfo);
      if (li.kind) info.kind = li.kind;
      if (li.kind === 'vxlan' && li.data) {
        const vx = parseVxlan(li.data);
        const v: VxlanInfo = {
          vni: vx.id ?? 0,
          port: vx.port && vx.port.length === 2 ? vx.port.readUInt16BE(0) : 0,
          learning: vx.learning === 1,
        };
        if (vx.local && vx.local.length === 4) v.local = formatIPv4(vx.local);
        if (vx.link !== undefined && vx.link !== 0) v.linkIndex = vx.link;
        info.vxlan = v;
      }
    }
    return info;
  });
}

export interface VethCreateOptions {
  /** Host-side name (in the Rtnl's namespace). */
  name: string;
  /** Peer name (in the peer's namespace). */
  peerName: string;
  /** An open fd of the peer's network namespace (IFLA_NET_NS_FD): the peer is created
   * there directly, never moved. Without it (and without peerNetnsPath), the peer is
   * created beside the host side. */
  peerNetnsFd?: number;
  /** The peer namespace's path: opened (and closed) for the call when no fd is given;
   * named in errors either way. */
  peerNetnsPath?: string;
  mtu?: number;
  mac?: string;
  peerMac?: string;
  /** Ask for this ifindex for the host side / the peer (EEXIST-like errors when taken). */
  index?: number;
  peerIndex?: number;
}

export function describeVeth(o: Pick<VethCreateOptions, 'name' | 'peerName' | 'peerNetnsFd' | 'peerNetnsPath'>): string {
  const where = o.peerNetnsPath !== undefined ? ` in netns ${o.peerNetnsPath}` : o.peerNetnsFd !== undefined ? ` in netns fd ${o.peerNetnsFd}` : '';
  return `veth ${o.name} (peer ${o.peerName}${where})`;
}

/** One RTM_NEWLINK that creates both ends, the peer directly in its namespace. With
 * NLM_F_ECHO, Linux >= 6.3 answers with the new host-side link (RTM_NEWLINK), which
 * gives its ifindex and the peer's (IFLA_LINK) without another request. */
export function vethCreateRequest(o: VethCreateOptions): RtnlRequest {
  const op = 'vethCreate';
  if (o === null || typeof o !== 'object') throw invalidArg(op, 'options must be an object');
  checkIfname(op, 'name', o.name);
  checkIfname(op, 'peerName', o.peerName);
  if (o.peerNetnsFd !== undefined) checkInt(op, 'peerNetnsFd', o.peerNetnsFd, 0, 0x7fffffff);
  if (o.peerNetnsPath !== undefined && (typeof o.peerNetnsPath !== 'string' || o.peerNetnsPath === '')) {
    throw invalidArg(op, `peerNetnsPath ${JSON.stringify(o.peerNetnsPath)} must be a path`);
  }
  const host: LinkAttrs = { ifname: o.name };
  const peer: LinkAttrs = { ifname: o.peerName };
  if (o.mtu !== undefined) host.mtu = peer.mtu = checkMtu(op, 'mtu', o.mtu);
  if (o.mac !== undefined) host.address = parseMac(op, 'mac', o.mac);
  if (o.peerMac !== undefined) peer.address = parseMac(op, 'peerMac', o.peerMac);
  if (o.peerNetnsFd !== undefined) peer.netNsFd = o.peerNetnsFd;
  const index = o.index === undefined ? 0 : checkIfindex(op, 'index', o.index);
  const peerIndex = o.peerIndex === undefined ? 0 : checkIfindex(op, 'peerIndex', o.peerIndex);
  const peerMsg = nested(formatLink({ family: AF_UNSPEC, index: peerIndex }), formatLinkAttrs(peer));
  host.linkinfo = nested(formatInfo({ kind: 'veth', data: nested(formatVethInfo({ peer: peerMsg })) }));
  return request(MessageType.NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, describeVeth(o), [
    formatLink({ family: AF_UNSPEC, index }),
    formatLinkAttrs(host),
  ]);
}

export interface VxlanCreateOptions {
  name: string;
  /** 0 .. 2^24-1 */
  vni: number;
  /** Source address of the tunnel packets. */
  local?: string;
  /** Destination UDP port, default 8472 (Linux's default; IANA's is 4789). */
  port?: number;
  /** Learn remote MACs from received packets; default false (the agent writes the FDB). */
  learning?: boolean;
  mtu?: number;
  /** The device's own MAC (IFLA_ADDRESS); default: the kernel picks a random one. */
  mac?: string;
  /** The underlying device (IFLA_VXLAN_LINK), as an ifindex (rtnl.ts resolves names). */
  devIndex?: number;
}

export function vxlanCreateRequest(o: VxlanCreateOptions): RtnlRequest {
  const op = 'vxlanCreate';
  if (o === null || typeof o !== 'object') throw invalidArg(op, 'options must be an object');
  checkIfname(op, 'name', o.name);
  const vni = checkInt(op, 'vni', o.vni, 0, 0xffffff);
  const port = o.port === undefined ? VXLAN_DEFAULT_PORT : checkInt(op, 'port', o.port, 1, 65535);
  if (o.learning !== undefined && typeof o.learning !== 'boolean') {
    throw invalidArg(op, `learning ${JSON.stringify(o.learning)} must be a boolean`);
  }
  const attrs: LinkAttrs = { ifname: o.name };
  if (o.mtu !== undefined) attrs.mtu = checkMtu(op, 'mtu', o.mtu);
  if (o.mac !== undefined) attrs.address = parseMac(op, 'mac', o.mac);
  const data: Parameters<typeof formatVxlan>[0] = { id: vni, port: be16(port), learning: o.learning ? 1 : 0 };
  if (o.local !== undefined) data.local = parseIPv4(op, 'local', o.local);
  if (o.devIndex !== undefined) data.link = checkIfindex(op, 'dev', o.devIndex);
  attrs.linkinfo = nested(formatInfo({ kind: 'vxlan', data: nested(formatVxlan(data)) }));
  return request(MessageType.NEWLINK, NLM_F_CREATE | NLM_F_EXCL, `vxlan ${o.name} (vni ${vni}, port ${port})`, [
    formatLink({ family: AF_UNSPEC }),
    formatLinkAttrs(attrs),
  ]);
}

/** RTM_SETLINK: up or down. */
export function linkSetUpRequest(ref: LinkRef, up: boolean): RtnlRequest {
  const r = checkLinkRef('linkSetUp', 'nameOrIndex', ref);
  if (typeof up !== 'boolean') throw invalidArg('linkSetUp', `up ${JSON.stringify(up)} must be a boolean`);
  return request(MessageType.SETLINK, 0, `link ${describeRef(r)} ${up ? 'up' : 'down'}`, [
    linkHeader(r, { flags: up ? { up: true } : {}, change: { up: true } }),
    formatLinkAttrs(refAttrs(r)),
  ]);
}

export function linkSetMtuRequest(ref: LinkRef, mtu: number): RtnlRequest {
  const r = checkLinkRef('linkSetMtu', 'nameOrIndex', ref);
  const m = checkMtu('linkSetMtu', 'mtu', mtu);
  return request(MessageType.SETLINK, 0, `link ${describeRef(r)} mtu ${m}`, [linkHeader(r), formatLinkAttrs({ ...refAttrs(r), mtu: m })]);
}

export function linkDeleteRequest(ref: LinkRef): RtnlRequest {
  const r = checkLinkRef('linkDelete', 'nameOrIndex', ref);
  return request(MessageType.DELLINK, 0, `link ${describeRef(r)}`, [linkHeader(r), formatLinkAttrs(refAttrs(r))]);
}

// --- addresses ----------------------------------------------------------------------

export type ScopeName = 'universe' | 'site' | 'link' | 'host' | 'nowhere';
const SCOPES: Readonly<Record<ScopeName, number>> = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };

function scopeName(n: number): ScopeName | number {
  for (const [name, v] of Object.entries(SCOPES)) if (v === n) return name as ScopeName;
  return n;
}

function checkScope(op: string, field: string, s: unknown): number {
  if (typeof s === 'string' && Object.hasOwn(SCOPES, s)) return SCOPES[s as ScopeName];
  if (typeof s === 'number' && Number.isInteger(s) && s >= 0 && s <= 255) return s;
  throw invalidArg(op, `${field} ${JSON.stringify(s)} must be one of ${Object.keys(SCOPES).join(', ')} or 0-255`);
}

export interface AddrInfo {
  ifindex: number;
  address: string;
  prefixLength: number;
  scope: ScopeName | number;
  label?: string;
}

function addrRequest(type: number, flags: number, op: string, ifindex: number, cidr: string): RtnlRequest {
  const idx = checkIfindex(op, 'ifindex', ifindex);
  const p = parsePrefix4(op, 'cidr', cidr);
  const scope = p.addr[0] === 127 ? SCOPES.host : SCOPES.universe;
  const attrs: AddressAttrs = { local: p.addr, address: p.addr };
  return request(type, flags, `address ${cidr} on ifindex ${idx}`, [
    formatAddress({ family: AF_INET, prefixlen: p.len, scope, index: idx }),
    formatAddressAttrs(attrs),
  ]);
}

export function addrAddRequest(ifindex: number, cidr: string): RtnlRequest {
  return addrRequest(MessageType.NEWADDR, NLM_F_CREATE | NLM_F_EXCL, 'addrAdd', ifindex, cidr);
}

export function addrReplaceRequest(ifindex: number, cidr: string): RtnlRequest {
  return addrRequest(MessageType.NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, 'addrReplace', ifindex, cidr);
}

export function addrDeleteRequest(ifindex: number, cidr: string): RtnlRequest {
  return addrRequest(MessageType.DELADDR, 0, 'addrDelete', ifindex, cidr);
}

/** IPv4 addresses; the kernel filters by ifindex (strict checking). */
export function addrDumpRequest(ifindex?: number): RtnlRequest {
  const idx = ifindex === undefined ? 0 : checkIfindex('addrList', 'ifindex', ifindex);
  return request(MessageType.GETADDR, NLM_F_DUMP, idx ? `addresses on ifindex ${idx}` : 'addresses', [
    formatAddress({ family: AF_INET, index: idx }),
  ]);
}

export function decodeAddr(m: Uint8Array): AddrInfo | undefined {
  const what = 'RTM_NEWADDR';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWADDR, what);
    const hdr = parseAddress(p.subarray(0, 8));
    if (hdr.family !== AF_INET) return undefined;
    const attrs = parseAddressAttrs(p.subarray(8));
    const a = attrs.local ?? attrs.address;
    if (!a) return undefined;
    const out: AddrInfo = { ifindex: hdr.index ?? 0, address: formatIPv4(a), prefixLength: hdr.prefixlen ?? 0, scope: scopeName(hdr.scope ?? 0) };
    if (attrs.label !== undefined) out.label = attrs.label;
    return out;
  });
}

// --- routes -------------------------------------------------------------------------

export type RouteTypeName = 'unicast' | 'local' | 'broadcast' | 'anycast' | 'multicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'throw' | 'nat';
const ROUTE_TYPES: Readonly<Record<RouteTypeName, number>> = {
  unicast: RouteType.UNICAST,
  local: RouteType.LOCAL,
  broadcast: RouteType.BROADCAST,
  anycast: RouteType.ANYCAST,
  multicast: RouteType.MULTICAST,
  blackhole: RouteType.BLACKHOLE,
  unreachable: RouteType.UNREACHABLE,
  prohibit: RouteType.PROHIBIT,
  throw: RouteType.THROW,
  nat: RouteType.NAT,
};

export interface Route {
  /** 'a.b.c.d/n' (host bits zero) or 'default'. */
  dst: string;
  gateway?: string;
  ifindex?: number;
  /** Default: 'universe' with a gateway, 'link' without (as `ip route` does). */
  scope?: ScopeName;
  /** The gateway is on the link even without a matching address (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** Default main (254). */
  table?: number;
  /** RTPROT_*, default boot (3, as `ip route`). Hypha marks its own routes with its
   * own number so that it can list and prune only them. */
  protocol?: number;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  /** Path MTU (RTAX_MTU). */
  mtu?: number;
  /** Route priority (RTA_PRIORITY), default 0. Routes to one dst with different metrics
   * are different routes; a delete without a metric takes the first. */
  metric?: number;
  /** Default 'unicast'. */
  type?: RouteTypeName;
}

export interface RouteFilter {
  /** Default main (254); 0 lists every table. */
  table?: number;
  protocol?: number;
  /** Routes whose output device is this one. */
  ifindex?: number;
}

function checkTable(op: string, t: unknown): number {
  return checkInt(op, 'table', t, 0, 0xffffffff);
}

export function describeRoute(r: Partial<Route>): string {
  const parts = [`route ${String(r.dst)}`];
  if (r.gateway !== undefined) parts.push(`via ${r.gateway}`);
  if (r.ifindex !== undefined) parts.push(`dev ifindex ${r.ifindex}`);
  if (r.table !== undefined && r.table !== RT_TABLE_MAIN) parts.push(`table ${r.table}`);
  if (r.protocol !== undefined) parts.push(`proto ${r.protocol}`);
  if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
  return parts.join(' ');
}

function routeDst(op: string, dst: unknown): Prefix4 {
  if (dst === 'default') return { addr: Buffer.alloc(4), len: 0 };
  return parsePrefix4(op, 'dst', dst, { network: true });
}

function routeRequest(type: number, flags: number, op: string, r: Route): RtnlRequest {
  if (r === null || typeof r !== 'object') throw invalidArg(op, 'route must be an object');
  const del = type === MessageType.DELROUTE;
  const dst = routeDst(op, r.dst);
  const table = r.table === undefined ? RT_TABLE_MAIN : checkTable(op, r.table);
  const attrs: RouteAttrs = { table };
  if (dst.len > 0) attrs.dst = dst.addr;
  if (r.gateway !== undefined) attrs.gateway = parseIPv4(op, 'gateway', r.gateway);
  if (r.ifindex !== undefined) attrs.oif = checkIfindex(op, 'ifindex', r.ifindex);
  if (r.src !== undefined) attrs.prefsrc = parseIPv4(op, 'src', r.src);
  if (r.metric !== undefined) attrs.priority = checkInt(op, 'metric', r.metric, 0, 0xffffffff);
  if (r.mtu !== undefined && !del) attrs.metrics = { mtu: u32(checkMtu(op, 'mtu', r.mtu)) };
  if (r.onlink !== undefined && typeof r.onlink !== 'boolean') throw invalidArg(op, `onlink ${JSON.stringify(r.onlink)} must be a boolean`);
  let typeNum = 0;
  if (r.type !== undefined) {
    if (!Object.hasOwn(ROUTE_TYPES, r.type)) throw invalidArg(op, `type ${JSON.stringify(r.type)} must be one of ${Object.keys(ROUTE_TYPES).join(', ')}`);
    typeNum = ROUTE_TYPES[r.type];
  } else if (!del) {
    typeNum = RouteType.UNICAST;
  }
  // Deletes match any scope and protocol unless told (as `ip route del`).
  const scope =
    r.scope !== undefined
      ? checkScope(op, 'scope', r.scope)
      : del
        ? SCOPES.nowhere
        : typeNum === RouteType.LOCAL
          ? SCOPES.host
          : r.gateway !== undefined
            ? SCOPES.universe
            : SCOPES.link;
  const protocol = r.protocol !== undefined ? checkInt(op, 'protocol', r.protocol, 0, 255) : del ? 0 : RTPROT_BOOT;
  return request(type, flags, describeRoute(r), [
    formatRoute({
      family: AF_INET,
      dstLen: dst.len,
      table: table < 256 ? table : 0,
      protocol,
      scope,
      type: typeNum,
      flags: r.onlink ? { __unknown: RTNH_F_ONLINK } : {},
    }),
    formatRouteAttrs(attrs),
  ]);
}

export function routeReplaceRequest(r: Route): RtnlRequest {
  return routeRequest(MessageType.NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, 'routeReplace', r);
}

export function routeDeleteRequest(r: Route): RtnlRequest {
  return routeRequest(MessageType.DELROUTE, 0, 'routeDelete', r);
}

/** IPv4 routes, filtered by the kernel (strict checking): table, protocol, output device. */
export function routeDumpRequest(f: RouteFilter = {}): RtnlRequest {
  const op = 'routeList';
  if (f === null || typeof f !== 'object') throw invalidArg(op, 'filter must be an object');
  const table = f.table === undefined ? RT_TABLE_MAIN : checkTable(op, f.table);
  const attrs: RouteAttrs = {};
  if (table !== 0) attrs.table = table;
  if (f.ifindex !== undefined) attrs.oif = checkIfindex(op, 'ifindex', f.ifindex);
  const protocol = f.protocol === undefined ? 0 : checkInt(op, 'protocol', f.protocol, 0, 255);
  const what = ['routes', table === 0 ? 'in all tables' : `in table ${table}`];
  if (f.protocol !== undefined) what.push(`proto ${protocol}`);
  if (attrs.oif !== undefined) what.push(`dev ifindex ${attrs.oif}`);
  return request(MessageType.GETROUTE, NLM_F_DUMP, what.join(' '), [
    formatRoute({ family: AF_INET, protocol }),
    formatRouteAttrs(attrs),
  ]);
}

/** A route of the dump, or undefined for what routeList does not report (cloned entries, other families). */
export function decodeRoute(m: Uint8Array): Route | undefined {
  const what = 'RTM_NEWROUTE';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWROUTE, what);
    const hdr = parseRoute(p.subarray(0, 12));
    if (hdr.family !== AF_INET) return undefined;
    const rawFlags = p.readUInt32LE(8);
    if (rawFlags & RTM_F_CLONED) return undefined;
    const attrs = parseRouteAttrs(p.subarray(12));
    const dstLen = hdr.dstLen ?? 0;
    const r: Route = {
      dst: dstLen === 0 ? 'default' : `${attrs.dst ? formatIPv4(attrs.dst) : '0.0.0.0'}/${dstLen}`,
      table: attrs.table ?? hdr.table ?? 0,
      protocol: enumValue(RouteProtocol as unknown as Record<string, number>, hdr.protocol),
    };
    const scope = scopeName(enumValue(RouteScope as unknown as Record<string, number>, hdr.scope));
    if (typeof scope === 'string') r.scope = scope;
    const typeNum = enumValue(RouteType as unknown as Record<string, number>, hdr.type);
    for (const [name, v] of Object.entries(ROUTE_TYPES)) if (v === typeNum) r.type = name as RouteTypeName;
    if (attrs.gateway) r.gateway = formatIPv4(attrs.gateway);
    if (attrs.oif !== undefined) r.ifindex = attrs.oif;
    if (attrs.prefsrc) r.src = formatIPv4(attrs.prefsrc);
    if (attrs.priority !== undefined) r.metric = attrs.priority;
    if (attrs.metrics?.mtu && attrs.metrics.mtu.length === 4) r.mtu = attrs.metrics.mtu.readUInt32LE(0);
    if (rawFlags & RTNH_F_ONLINK) r.onlink = true;
    return r;
  });
}

/** Does a decoded route pass the filter? (The kernel filters too; this covers kernels that do not.) */
export function routeMatches(r: Route, f: RouteFilter = {}): boolean {
  const table = f.table ?? RT_TABLE_MAIN;
  if (table !== 0 && r.table !== table) return false;
  if (f.protocol !== undefined && r.protocol !== f.protocol) return false;
  if (f.ifindex !== undefined && r.ifindex !== f.ifindex) return false;
  return true;
}

// --- policy routing rules (IPv4) -------------------------------------------------

/** An IPv4 policy routing rule that sends packets carrying a mark to a table
 *  (`ip rule add fwmark M/MASK lookup T pref P`). */
export interface FibRule {
  /** Preference: rules are tried in increasing order (the main table's is 32766). */
  priority: number;
  fwmark: number;
  /** Default 0xffffffff. */
  fwmask?: number;
  table: number;
  /** Originator (FRA_PROTOCOL, RTPROT_*): Hypha's own are listed and pruned by it. */
  protocol?: number;
}

export function describeRule(r: Partial<FibRule>): string {
  const mask = r.fwmask === undefined ? '' : `/0x${(r.fwmask >>> 0).toString(16)}`;
  return `rule pref ${r.priority} fwmark 0x${((r.fwmark ?? 0) >>> 0).toString(16)}${mask} lookup ${r.table}`;
}

function ruleRequest(type: number, flags: number, op: string, r: FibRule): RtnlRequest {
  if (r === null || typeof r !== 'object') throw invalidArg(op, 'rule must be an object');
  const priority = checkInt(op, 'priority', r.priority, 1, 32765);
  const fwmark = checkInt(op, 'fwmark', r.fwmark, 1, 0xffffffff);
  const fwmask = r.fwmask === undefined ? 0xffffffff : checkInt(op, 'fwmask', r.fwmask, 1, 0xffffffff);
  const table = checkInt(op, 'table', r.table, 1, 0xffffffff);
  const protocol = r.protocol === undefined ? RTPROT_BOOT : checkInt(op, 'protocol', r.protocol, 0, 255);
  if (table === RT_TABLE_MAIN || table === RT_TABLE_LOCAL) throw invalidArg(op, `table ${table} is the kernel's own; give a table of your own`);
  return request(type, flags, describeRule(r), [
    formatRule({ family: AF_INET, table: table < 256 ? table : 0, action: 'toTbl' }),
    formatRuleAttrs({ priority, fwmark, fwmask, table, protocol }),
  ]);
}

/** Fails with EEXIST when the same rule is there (rtnl.ruleEnsure treats that as done). */
export function ruleAddRequest(r: FibRule): RtnlRequest {
  return ruleRequest(MessageType.NEWRULE, NLM_F_CREATE | NLM_F_EXCL, 'ruleAdd', r);
}

export function ruleDeleteRequest(r: FibRule): RtnlRequest {
  return ruleRequest(MessageType.DELRULE, 0, 'ruleDelete', r);
}

export function ruleDumpRequest(): RtnlRequest {
  return request(MessageType.GETRULE, NLM_F_DUMP, 'IPv4 rules', [formatRule({ family: AF_INET })]);
}

/** A rule of the dump that matches on a mark and looks up a table; undefined for the others. */
export function decodeRule(m: Uint8Array): FibRule | undefined {
  const what = 'RTM_NEWRULE';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWRULE, what);
    const hdr = parseRule(p.subarray(0, 12));
    if (hdr.family !== AF_INET) return undefined;
    const attrs = parseRuleAttrs(p.subarray(12));
    if (!attrs.fwmark || attrs.priority === undefined) return undefined;
    const table = attrs.table ?? hdr.table ?? 0;
    const r: FibRule = { priority: attrs.priority, fwmark: attrs.fwmark, fwmask: attrs.fwmask ?? 0xffffffff, table };
    if (attrs.protocol !== undefined) r.protocol = attrs.protocol;
    return r;
  });
}

// --- neighbours ---------------------------------------------------------------------

export type NeighStateName = 'incomplete' | 'reachable' | 'stale' | 'delay' | 'probe' | 'failed' | 'noarp' | 'permanent' | 'none';
const NEIGH_STATES: Readonly<Record<Exclude<NeighStateName, 'none'>, keyof NeighborState>> = {
  incomplete: 'incomplete',
  reachable: 'reachable',
  stale: 'stale',
  delay: 'delay',
  probe: 'probe',
  failed: 'failed',
  noarp: 'noarp',
  permanent: 'permanent',
};

function neighStateNum(op: string, s: unknown): number {
  if (typeof s !== 'string' || !Object.hasOwn(NEIGH_STATES, s)) {
    throw invalidArg(op, `state ${JSON.stringify(s)} must be one of ${Object.keys(NEIGH_STATES).join(', ')}`);
  }
  return formatNeighborState({ [NEIGH_STATES[s as keyof typeof NEIGH_STATES]]: true });
}

function neighStateName(st: NeighborState | undefined): NeighStateName {
  for (const [name, key] of Object.entries(NEIGH_STATES)) if (st?.[key]) return name as NeighStateName;
  return 'none';
}

export interface Neigh {
  ifindex: number;
  ip: string;
  mac: string;
  /** Default 'permanent'. */
  state?: Exclude<NeighStateName, 'none'>;
}

export interface NeighInfo {
  ifindex: number;
  ip: string;
  /** Absent while unresolved. */
  mac?: string;
  state: NeighStateName;
  router: boolean;
}

function neighHeader(family: number, ifindex: number, state: number, flags: number): Buffer {
  // formatNeighbor takes flags/state as parsed objects; the raw numbers go in as __unknown.
  return formatNeighbor({ family, ifindex, state: { __unknown: state }, flags: { __unknown: flags }, type: 0 });
}

export function neighReplaceRequest(n: Neigh): RtnlRequest {
  const op = 'neighReplace';
  if (n === null || typeof n !== 'object') throw invalidArg(op, 'neighbour must be an object');
  const idx = checkIfindex(op, 'ifindex', n.ifindex);
  const attrs: NeighborAttrs = { dst: parseIPv4(op, 'ip', n.ip), lladdr: parseMac(op, 'mac', n.mac) };
  const state = neighStateNum(op, n.state ?? 'permanent');
  return request(MessageType.NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, `neighbour ${n.ip} lladdr ${n.mac} on ifindex ${idx}`, [
    neighHeader(AF_INET, idx, state, 0),
    formatNeighborAttrs(attrs),
  ]);
}

export function neighDeleteRequest(n: { ifindex: number; ip: string }): RtnlRequest {
  const op = 'neighDelete';
  if (n === null || typeof n !== 'object') throw invalidArg(op, 'neighbour must be an object');
  const idx = checkIfindex(op, 'ifindex', n.ifindex);
  return request(MessageType.DELNEIGH, 0, `neighbour ${n.ip} on ifindex ${idx}`, [
    neighHeader(AF_INET, idx, 0, 0),
    formatNeighborAttrs({ dst: parseIPv4(op, 'ip', n.ip) }),
  ]);
}

function neighDump(family: number, op: string, what: string, ifindex: number | undefined): RtnlRequest {
  const idx = ifindex === undefined ? 0 : checkIfindex(op, 'ifindex', ifindex);
  // Strict checking wants the device as NDA_IFINDEX, not in the header.
  const attrs: NeighborAttrs = idx ? { ifindex: u32(idx) } : {};
  return request(MessageType.GETNEIGH, NLM_F_DUMP, idx ? `${what} on ifindex ${idx}` : what, [
    neighHeader(family, 0, 0, 0),
    formatNeighborAttrs(attrs),
  ]);
}

export function neighDumpRequest(ifindex?: number): RtnlRequest {
  return neighDump(AF_INET, 'neighList', 'neighbours', ifindex);
}

export function decodeNeigh(m: Uint8Array): NeighInfo | undefined {
  const what = 'RTM_NEWNEIGH';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWNEIGH, what);
    const hdr = parseNeighbor(p.subarray(0, 12));
    if (hdr.family !== AF_INET) return undefined;
    const attrs = parseNeighborAttrs(p.subarray(12));
    if (!attrs.dst || attrs.dst.length !== 4) return undefined;
    const out: NeighInfo = {
      ifindex: hdr.ifindex ?? 0,
      ip: formatIPv4(attrs.dst),
      state: neighStateName(hdr.state),
      router: (p.readUInt8(10) & NTF_ROUTER) !== 0,
    };
    if (attrs.lladdr && attrs.lladdr.length === 6) out.mac = formatMac(attrs.lladdr);
    return out;
  });
}

// --- VXLAN forwarding database (AF_BRIDGE neighbours) --------------------------------

export interface FdbEntry {
  /** The VXLAN device. */
  ifindex: number;
  /** 00:00:00:00:00:00 is the default (flooding) entry. */
  mac: string;
  /** Remote VTEP address. */
  dst: string;
  /** NUD_PERMANENT (default), else NUD_REACHABLE (ages out). */
  permanent?: boolean;
  /** NTF_SELF: the device's own FDB (default true; a VXLAN device's FDB is its own). */
  self?: boolean;
}

export interface FdbInfo {
  ifindex: number;
  mac: string;
  dst?: string;
  /** NDA_PORT, when the entry has its own. */
  port?: number;
  /** NDA_VNI, when the entry has its own. */
  vni?: number;
  permanent: boolean;
  self: boolean;
  master: boolean;
  state: NeighStateName;
}

function fdbRequest(type: number, flags: number, op: string, e: Partial<FdbEntry>, needDst: boolean): RtnlRequest {
  if (e === null || typeof e !== 'object') throw invalidArg(op, 'entry must be an object');
  const idx = checkIfindex(op, 'ifindex', e.ifindex);
  const attrs: NeighborAttrs = { lladdr: parseMac(op, 'mac', e.mac) };
  if (needDst || e.dst !== undefined) attrs.dst = parseIPv4(op, 'dst', e.dst);
  for (const f of ['permanent', 'self'] as const) {
    if (e[f] !== undefined && typeof e[f] !== 'boolean') throw invalidArg(op, `${f} ${JSON.stringify(e[f])} must be a boolean`);
  }
  const state = type === MessageType.DELNEIGH ? 0 : e.permanent === false ? formatNeighborState({ reachable: true }) : formatNeighborState({ permanent: true });
  const ntf = e.self === false ? 0 : NTF_SELF;
  return request(type, flags, `fdb ${String(e.mac)}${e.dst !== undefined ? ` dst ${e.dst}` : ''} on ifindex ${idx}`, [
    neighHeader(AF_BRIDGE, idx, state, ntf),
    formatNeighborAttrs(attrs),
  ]);
}

/** `bridge fdb replace MAC dev X dst D self permanent`: the entry's remote is set to dst. */
export function fdbReplaceRequest(e: FdbEntry): RtnlRequest {
  return fdbRequest(MessageType.NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, 'fdbReplace', e, true);
}

/** `bridge fdb append MAC dev X dst D self permanent`: dst is added to the entry's remotes
 * (for 00:00:00:00:00:00, the flooding list); one already there is left as it is. */
export function fdbAppendRequest(e: FdbEntry): RtnlRequest {
  return fdbRequest(MessageType.NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, 'fdbAppend', e, true);
}

/** Deletes one remote (with dst) or the whole entry (without). */
export function fdbDeleteRequest(e: { ifindex: number; mac: string; dst?: string; self?: boolean }): RtnlRequest {
  return fdbRequest(MessageType.DELNEIGH, 0, 'fdbDelete', e, false);
}

export function fdbDumpRequest(ifindex: number): RtnlRequest {
  return neighDump(AF_BRIDGE, 'fdbList', 'fdb', checkIfindex('fdbList', 'ifindex', ifindex));
}

export function decodeFdb(m: Uint8Array): FdbInfo | undefined {
  const what = 'RTM_NEWNEIGH';
  return decodeWith(what, () => {
    const p = payload(m, MessageType.NEWNEIGH, what);
    const hdr = parseNeighbor(p.subarray(0, 12));
    if (hdr.family !== AF_BRIDGE) return undefined;
    const attrs = parseNeighborAttrs(p.subarray(12));
    if (!attrs.lladdr || attrs.lladdr.length !== 6) return undefined;
    const flags = p.readUInt8(10);
    const state = neighStateName(hdr.state);
    const out: FdbInfo = {
      ifindex: hdr.ifindex ?? 0,
      mac: formatMac(attrs.lladdr),
      permanent: state === 'permanent',
      self: (flags & NTF_SELF) !== 0,
      master: (flags & NTF_MASTER) !== 0,
      state,
    };
    if (attrs.dst && attrs.dst.length === 4) out.dst = formatIPv4(attrs.dst);
    if (attrs.port && attrs.port.length === 2) out.port = attrs.port.readUInt16BE(0);
    if (attrs.vni && attrs.vni.length === 4) out.vni = attrs.vni.readUInt32LE(0);
    return out;
  });
}
