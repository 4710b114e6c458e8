// rtnetlink codec: exact bytes where they are short, round trips through the
// decoders (a request and the kernel's reply share their layout), and input checks
// that name the field and the value. The kernel's view is in test/e2e/rtnl.test.ts.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { parseInfo, parseLinkAttrs, parseVethInfo } from 'netlink/dist/rt/ifla.js';

import * as codec from './rtnl-codec.ts';
import { isRtnlError } from './rtnl-codec.ts';

/** nlmsghdr fields of a request. */
function header(m: Uint8Array): { len: number; type: number; flags: number } {
  const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
  return { len: v.getUint32(0, true), type: v.getUint16(4, true), flags: v.getUint16(6, true) };
}

/** Top-level attribute types after a fixed header of `skip` bytes. */
function attrTypes(m: Uint8Array, skip: number): number[] {
  const b = Buffer.from(m.buffer, m.byteOffset, m.byteLength);
  const out: number[] = [];
  for (let off = 16 + skip; off + 4 <= b.length; ) {
    const len = b.readUInt16LE(off);
    out.push(b.readUInt16LE(off + 2) & 0x3fff);
    off += (len + 3) & ~3;
  }
  return out;
}

function invalid(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isRtnlError(err, 'EINVALARG'), `expected EINVALARG, got ${String(err)}`);
    assert.equal(err.errno, 0);
    assert.match(err.message, message);
    return true;
  });
}

const REQUEST = 0x1;
const DUMP = 0x300;
const REPLACE = 0x100;
const EXCL = 0x200;
const CREATE = 0x400;
const APPEND = 0x800;
const ECHO = 0x8;

describe('rtnl codec: requests', () => {
  test('linkSetUp by index: nlmsghdr + ifinfomsg with IFF_UP in flags and change, nothing else', () => {
    const { message, op, object } = codec.linkSetUpRequest(5, true);
    assert.equal(op, 'RTM_SETLINK');
    assert.equal(object, 'link ifindex 5 up');
    assert.deepEqual(
      [...message],
      [32, 0, 0, 0, 19, 0, REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* ifinfomsg */ 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
    );
    const down = codec.linkSetUpRequest('eth0', false).message;
    assert.deepEqual([...down.subarray(24, 32)], [0, 0, 0, 0, 1, 0, 0, 0], 'down: flag clear, change set');
    assert.deepEqual(attrTypes(down, 16), [3], 'a name goes as IFLA_IFNAME');
  });

  test('vethCreate is one RTM_NEWLINK (CREATE|EXCL, ECHO) with the peer, its netns fd, MACs and MTU nested inside', () => {
    const req = codec.vethCreateRequest({
      name: 'lxc1a2b',
      peerName: 'eth0',
      peerNetnsFd: 23,
      peerNetnsPath: '/run/netns/x',
      mtu: 1450,
      mac: '02:00:00:00:00:01',
      peerMac: '02:AA:00:00:00:02',
      peerIndex: 2,
    });
    assert.equal(req.op, 'RTM_NEWLINK');
    assert.equal(req.object, 'veth lxc1a2b (peer eth0 in netns /run/netns/x)');
    const h = header(req.message);
    assert.equal(h.len, req.message.length);
    assert.equal(h.flags, REQUEST | CREATE | EXCL | ECHO);
    const host = codec.decodeLink(req.message);
    assert.deepEqual(
      { name: host.name, mtu: host.mtu, mac: host.mac, kind: host.kind },
      { name: 'lxc1a2b', mtu: 1450, mac: '02:00:00:00:00:01', kind: 'veth' },
    );
    // The peer: VETH_INFO_PEER = ifinfomsg + attributes, inside IFLA_INFO_DATA.
    const attrs = parseLinkAttrs(Buffer.from(req.message.subarray(32)));
    const info = parseInfo(attrs.linkinfo as Buffer);
    const peer = parseVethInfo(info.data as Buffer).peer as Buffer;
    assert.equal(peer.readInt32LE(4), 2, 'peer ifinfomsg carries the requested ifindex');
    const peerAttrs = parseLinkAttrs(peer.subarray(16));
    assert.deepEqual(
      { name: peerAttrs.ifname, fd: peerAttrs.netNsFd, mtu: peerAttrs.mtu, mac: [...(peerAttrs.address ?? [])] },
      { name: 'eth0', fd: 23, mtu: 1450, mac: [2, 0xaa, 0, 0, 0, 2] },
    );
  });

  test('vxlanCreate: kind vxlan with VNI, local, port (default 8472), learning off, underlying device', () => {
    const req = codec.vxlanCreateRequest({ name: 'vxlan0', vni: 4242, local: '192.168.77.11', devIndex: 3, mtu: 1450 });
    assert.equal(req.object, 'vxlan vxlan0 (vni 4242, port 8472)');
    const l = codec.decodeLink(req.message);
    assert.equal(l.kind, 'vxlan');
    assert.deepEqual(l.vxlan, { vni: 4242, port: 8472, learning: false, local: '192.168.77.11', linkIndex: 3 });
    assert.deepEqual(codec.decodeLink(codec.vxlanCreateRequest({ name: 'v', vni: 1, port: 4789, learning: true }).message).vxlan, {
      vni: 1,
      port: 4789,
      learning: true,
    });
  });

  test('linkGet asks for no statistics (IFLA_EXT_MASK = 29); dumps carry NLM_F_DUMP', () => {
    const get = codec.linkGetRequest('eth0');
    assert.deepEqual(attrTypes(get.message, 16), [3, 29]);
    assert.equal(header(get.message).flags, REQUEST);
    assert.deepEqual(attrTypes(codec.linkGetRequest(7).message, 16), [29]);
    assert.equal(header(codec.linkDumpRequest().message).flags, REQUEST | DUMP);
  });

  test('routes round-trip: onlink, protocol, table, metric, mtu, src; defaults as `ip route`', () => {
    const r: codec.Route = {
      dst: '10.244.0.0/16',
      gateway: '169.254.1.1',
      ifindex: 2,
      onlink: true,
      protocol: 200,
      table: 1000,
      metric: 10,
      mtu: 1400,
      src: '10.244.1.5',
    };
    const req = codec.routeReplaceRequest(r);
    assert.equal(header(req.message).flags, REQUEST | CREATE | REPLACE);
    assert.equal(req.object, 'route 10.244.0.0/16 via 169.254.1.1 dev ifindex 2 table 1000 proto 200 metric 10');
    assert.deepEqual(codec.decodeRoute(req.message), { ...r, scope: 'universe', type: 'unicast' });
    const direct = codec.decodeRoute(codec.routeReplaceRequest({ dst: '10.244.1.7/32', ifindex: 9 }).message);
    assert.deepEqual(direct, { dst: '10.244.1.7/32', ifindex: 9, table: 254, protocol: codec.RTPROT_BOOT, scope: 'link', type: 'unicast' });
    assert.equal(codec.decodeRoute(codec.routeReplaceRequest({ dst: 'default', gateway: '10.0.0.1' }).message)?.dst, 'default');
  });

  test('a route delete matches any scope and protocol unless told, and sends no metrics', () => {
    const m = codec.routeDeleteRequest({ dst: '10.1.0.0/24', mtu: 1400 }).message;
    const rtm = m.subarray(16, 28);
    assert.equal(rtm[5], 0, 'protocol 0');
    assert.equal(rtm[6], 255, 'scope nowhere');
    assert.equal(rtm[7], 0, 'type unspec');
    assert.ok(!attrTypes(m, 12).includes(8), 'no RTA_METRICS');
  });

  test('route dumps filter in the kernel: protocol in the header, RTA_TABLE, RTA_OIF', () => {
    const m = codec.routeDumpRequest({ protocol: 200, ifindex: 4 }).message;
    assert.equal(header(m).flags, REQUEST | DUMP);
    assert.equal(m[16 + 5], 200);
    assert.deepEqual(attrTypes(m, 12).sort((a, b) => a - b), [4, 15]);
    assert.deepEqual(attrTypes(codec.routeDumpRequest({ table: 0 }).message, 12), [], 'table 0: every table, no RTA_TABLE');
    const all = [
      { dst: 'a', table: 254, protocol: 200, ifindex: 4 },
      { dst: 'b', table: 254, protocol: 3, ifindex: 4 },
      { dst: 'c', table: 100, protocol: 200, ifindex: 4 },
    ];
    assert.deepEqual(all.filter((r) => codec.routeMatches(r, { protocol: 200 })).map((r) => r.dst), ['a']);
    assert.deepEqual(all.filter((r) => codec.routeMatches(r, { table: 0, protocol: 200 })).map((r) => r.dst), ['a', 'c']);
  });

  test('addresses, neighbours and FDB entries round-trip', () => {
    const addr = codec.addrAddRequest(2, '10.244.1.5/32');
    assert.equal(header(addr.message).flags, REQUEST | CREATE | EXCL);
    assert.deepEqual(codec.decodeAddr(addr.message), { ifindex: 2, address: '10.244.1.5', prefixLength: 32, scope: 'universe' });
    assert.equal(header(codec.addrReplaceRequest(2, '10.0.0.1/24').message).flags, REQUEST | CREATE | REPLACE);

    const neigh = codec.neighReplaceRequest({ ifindex: 2, ip: '169.254.1.1', mac: 'EE:EE:EE:EE:EE:EE' });
    assert.deepEqual(codec.decodeNeigh(neigh.message), { ifindex: 2, ip: '169.254.1.1', mac: 'ee:ee:ee:ee:ee:ee', state: 'permanent', router: false });
    assert.equal(codec.decodeNeigh(codec.neighReplaceRequest({ ifindex: 2, ip: '1.2.3.4', mac: '02:00:00:00:00:01', state: 'reachable' }).message)?.state, 'reachable');
    assert.deepEqual(attrTypes(codec.neighDumpRequest(7).message, 12), [8], 'neighbour dump filter is NDA_IFINDEX');

    const fdb = codec.fdbAppendRequest({ ifindex: 5, mac: '00:00:00:00:00:00', dst: '192.168.77.12' });
    assert.equal(header(fdb.message).flags, REQUEST | CREATE | APPEND);
    assert.deepEqual(codec.decodeFdb(fdb.message), {
      ifindex: 5,
      mac: '00:00:00:00:00:00',
      dst: '192.168.77.12',
      permanent: true,
      self: true,
      master: false,
      state: 'permanent',
    });
    assert.equal(header(codec.fdbReplaceRequest({ ifindex: 5, mac: '02:00:00:00:00:01', dst: '10.0.0.1' }).message).flags, REQUEST | CREATE | REPLACE);
    const dynamic = codec.decodeFdb(codec.fdbReplaceRequest({ ifindex: 5, mac: '02:00:00:00:00:01', dst: '10.0.0.1', permanent: false, self: false }).message);
    assert.deepEqual([dynamic?.state, dynamic?.self], ['reachable', false]);
    assert.equal(codec.decodeNeigh(fdb.message), undefined, 'an AF_BRIDGE entry is no IPv4 neighbour');
    assert.equal(codec.decodeFdb(neigh.message), undefined);
  });
});

describe('rtnl codec: bad input names the field and the value', () => {
  test('interface names, indexes, MACs, MTUs', () => {
    invalid(() => codec.linkGetRequest('a-name-that-is-too-long'), /nameOrIndex "a-name-that-is-too-long" is not a valid interface name/);
    invalid(() => codec.linkGetRequest('a/b'), /"a\/b" is not a valid interface name/);
    invalid(() => codec.linkGetRequest(0), /nameOrIndex 0 must be an integer in \[1, 2147483647\]/);
    invalid(() => codec.linkGetRequest(null as unknown as string), /nameOrIndex null must be an interface name or an ifindex/);
    invalid(() => codec.vethCreateRequest({ name: 'lxc1', peerName: 'eth 0' }), /^rtnl vethCreate: peerName "eth 0" is not a valid interface name/);
    invalid(() => codec.vethCreateRequest({ name: 'lxc1', peerName: 'eth0', mac: '02:00:00:00:00' }), /mac "02:00:00:00:00" is not a MAC address/);
    invalid(() => codec.vethCreateRequest({ name: 'lxc1', peerName: 'eth0', mtu: 20 }), /mtu 20 must be an integer in \[68, 65535\]/);
    invalid(() => codec.vethCreateRequest({ name: 'lxc1', peerName: 'eth0', peerNetnsFd: -1 }), /peerNetnsFd -1/);
    invalid(() => codec.vxlanCreateRequest({ name: 'vx', vni: 1 << 24 }), /vni 16777216 must be an integer in \[0, 16777215\]/);
    invalid(() => codec.vxlanCreateRequest({ name: 'vx', vni: 1, local: '1.2.3' }), /local "1.2.3" is not an IPv4 address/);
  });

  test('addresses, routes, neighbours, FDB', () => {
    invalid(() => codec.addrAddRequest(2, '10.0.0.1'), /addrAdd: cidr "10.0.0.1" is not an IPv4 prefix/);
    invalid(() => codec.addrAddRequest(2, '10.0.0.1/33'), /cidr "10.0.0.1\/33"/);
    invalid(() => codec.routeReplaceRequest({ dst: '10.0.0.1/24' }), /dst "10.0.0.1\/24" has host bits set \(network is 10.0.0.0\/24\)/);
    invalid(() => codec.routeReplaceRequest({ dst: 'default', gateway: '300.1.1.1' }), /gateway "300.1.1.1" is not an IPv4 address/);
    invalid(() => codec.routeReplaceRequest({ dst: 'default', scope: 'galaxy' as 'link' }), /scope "galaxy" must be one of universe, site, link, host, nowhere/);
    invalid(() => codec.routeReplaceRequest({ dst: 'default', type: 'teleport' as 'unicast' }), /type "teleport"/);
    invalid(() => codec.routeReplaceRequest({ dst: 'default', protocol: 256 }), /protocol 256 must be an integer in \[0, 255\]/);
    invalid(() => codec.neighReplaceRequest({ ifindex: 2, ip: '10.0.0.1', mac: 'x', state: 'permanent' }), /mac "x"/);
    invalid(() => codec.neighReplaceRequest({ ifindex: 2, ip: '10.0.0.1', mac: '02:00:00:00:00:01', state: 'sleepy' as 'stale' }), /state "sleepy" must be one of/);
    invalid(() => codec.fdbAppendRequest({ ifindex: 2, mac: '00:00:00:00:00:00' } as codec.FdbEntry), /dst undefined is not an IPv4 address/);
    invalid(() => codec.fdbReplaceRequest({ ifindex: 2, mac: '00:00:00:00:00:00', dst: '1.1.1.1', permanent: 'yes' as unknown as boolean }), /permanent "yes" must be a boolean/);
  });
});

describe('rtnl codec: errors and replies', () => {
  test('replyError names the request, the object, the namespace, the errno and the kernel reason', () => {
    const req = codec.vethCreateRequest({ name: 'lxc1a2b', peerName: 'eth0', peerNetnsPath: '/run/netns/x' });
    const err = codec.replyError(req, { errno: 17, code: 'EEXIST', strerror: 'File exists', messages: [] }, undefined, 'device lxc1a2b already exists');
    assert.equal(err.message, 'rtnl RTM_NEWLINK veth lxc1a2b (peer eth0 in netns /run/netns/x): EEXIST File exists: device lxc1a2b already exists');
    assert.deepEqual([err.code, err.errno, err.op, err.extack], ['EEXIST', 17, 'RTM_NEWLINK', undefined]);
    assert.ok(isRtnlError(err, 'EEXIST') && !isRtnlError(err, 'ENOENT') && isRtnlError(err));
    const withAck = codec.replyError(codec.addrAddRequest(2, '10.0.0.1/32'), {
      errno: 17,
      code: 'EEXIST',
      strerror: 'File exists',
      extack: 'ipv4: Address already assigned',
      messages: [],
    }, '/run/netns/pod');
    assert.equal(withAck.message, 'rtnl RTM_NEWADDR address 10.0.0.1/32 on ifindex 2 in netns /run/netns/pod: EEXIST File exists (kernel: ipv4: Address already assigned)');
    assert.equal(withAck.extack, 'ipv4: Address already assigned');
  });

  test('replies that cannot be decoded are EBADREPLY, not a crash', () => {
    assert.throws(() => codec.decodeLink(new Uint8Array(8)), (e: unknown) => isRtnlError(e, 'EBADREPLY'));
    assert.throws(() => codec.decodeRoute(codec.linkDumpRequest().message), (e: unknown) => isRtnlError(e, 'EBADREPLY') && /message type 18, expected 24/.test(e.message));
    const bad = Buffer.from(codec.routeReplaceRequest({ dst: 'default', gateway: '10.0.0.1' }).message);
    bad.writeUInt16LE(200, 16 + 12); // first attribute claims to be longer than the message
    assert.throws(() => codec.decodeRoute(bad), (e: unknown) => isRtnlError(e, 'EBADREPLY'));
  });

  test('only pure modules of the netlink package are loaded (never its native socket binding)', () => {
    const cache = createRequire(import.meta.url).cache;
    const loaded = Object.keys(cache).filter((k) => k.includes('/node_modules/netlink/'));
    assert.ok(loaded.length > 0);
    for (const k of loaded) assert.match(k, /netlink\/dist\/(structs|constants|rt\/gen_structs|rt\/ifla)\.js$/);
  });
});
