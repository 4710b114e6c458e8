// rtnetlink transport: sockets in other network namespaces (made without any thread
// of ours changing namespace), request/reply exchanges, kernel errors and extended
// ACKs in the replies, handle kinds, closed and busy handles, bad arguments.
// Messages are built by hand here; src/datapath/rtnl-codec.ts is the real encoder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import * as bpf from './index.ts';
import type { MapHandle, NetlinkHandle, NetlinkReply } from './index.ts';
import { collectGarbage, openFdCount, rejectsNative, throwsNative, u32, uniqueName } from './test/helpers.ts';

const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLM_F_CREATE = 0x400;
const NLM_F_EXCL = 0x200;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;

function attr(type: number, payload: Uint8Array): Uint8Array {
  const len = 4 + payload.length;
  const out = new Uint8Array((len + 3) & ~3);
  const v = new DataView(out.buffer);
  v.setUint16(0, len, true);
  v.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);

/** nlmsghdr + ifinfomsg (index) + attributes. */
function linkMsg(type: number, flags: number, opts: { index?: number; attrs?: Uint8Array[] } = {}): Uint8Array {
  const attrs = opts.attrs ?? [];
  const len = 16 + 16 + attrs.reduce((n, a) => n + a.length, 0);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, type, true);
  v.setUint16(6, flags, true);
  v.setInt32(16 + 4, opts.index ?? 0, true);
  let off = 32;
  for (const a of attrs) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

const getLink = (name: string): Uint8Array => linkMsg(RTM_GETLINK, NLM_F_REQUEST, { attrs: [attr(IFLA_IFNAME, cstr(name))] });
const dumpLinks = (): Uint8Array => linkMsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);

/** IFLA_IFNAME of an RTM_NEWLINK reply. */
function ifname(msg: Uint8Array): string | undefined {
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  for (let off = 32; off + 4 <= msg.length; ) {
    const len = v.getUint16(off, true);
    if (len < 4) break;
    if ((v.getUint16(off + 2, true) & 0x3fff) === IFLA_IFNAME) {
      return new TextDecoder().decode(msg.subarray(off + 4, off + len - 1));
    }
    off += (len + 3) & ~3;
  }
  return undefined;
}

function names(reply: NetlinkReply): string[] {
  return reply.messages.map((m) => ifname(m) ?? '?');
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The network namespace of every thread of this process. */
function threadNamespaces(): Set<string> {
  return new Set(readdirSync('/proc/self/task').map((t) => readlinkSync(`/proc/self/task/${t}/ns/net`)));
}

describe('netlinkOpen and netlinkTransact', () => {
  const ns = uniqueName('hypha-nl');
  const nsPath = `/run/netns/${ns}`;
  const dummy = `hyd${process.pid.toString(36)}`.slice(0, 15);
  let root: NetlinkHandle;

  before(() => {
    // A run that was killed left its namespace: remove those whose process is gone.
    for (const old of (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter((n) => /^hypha-nl-\d+-/.test(n))) {
      const pid = Number(old.split('-')[2]);
      try {
        process.kill(pid, 0);
      } catch {
        ip('netns', 'del', old);
      }
    }
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'add', dummy, 'type', 'bridge');
    root = bpf.netlinkOpen();
  });
  after(() => {
    bpf.close(root);
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
  });

  test('a GET answers with one message and an ACK; a dump with every link and DONE', async () => {
    const [get, dump] = await bpf.netlinkTransact(root, [getLink('lo'), dumpLinks()]);
    assert.equal(get?.errno, 0);
    assert.equal(get?.code, undefined);
    assert.deepEqual(names(get as NetlinkReply), ['lo']);
    assert.equal(dump?.errno, 0);
    assert.ok(names(dump as NetlinkReply).includes('lo'));
    const header = new DataView((get?.messages[0] as Uint8Array).buffer, get?.messages[0]?.byteOffset);
    assert.equal(header.getUint16(4, true), RTM_NEWLINK, 'reply messages come with their nlmsghdr');
  });

  test('a socket opened in another namespace sees that namespace, by path, /proc/<pid>/ns/net and /proc/self/fd/<n>', async () => {
    const before = threadNamespaces();
    const fd = openSync(nsPath, 'r');
    const handles = [bpf.netlinkOpen(nsPath), bpf.netlinkOpen(`/proc/self/fd/${fd}`)];
    closeSync(fd);
    try {
      for (const h of handles) {
        const [dump, mine] = await bpf.netlinkTransact(h, [dumpLinks(), getLink(dummy)]);
        assert.deepEqual(names(dump as NetlinkReply).sort(), [dummy, 'lo'].sort());
        assert.equal(mine?.errno, 0);
      }
      const [inRoot] = await bpf.netlinkTransact(root, [getLink(dummy)]);
      assert.equal(inRoot?.code, 'ENODEV', 'the bridge exists only in the other namespace');
      const own = bpf.netlinkOpen('/proc/self/ns/net');
      const [lo] = await bpf.netlinkTransact(own, [getLink('lo')]);
      assert.equal(lo?.errno, 0);
      bpf.close(own);
    } finally {
      for (const h of handles) bpf.close(h);
    }
    assert.deepEqual(threadNamespaces(), before, 'no thread of the process changed namespace');
    assert.equal(before.size, 1);
  });

  test('kernel errors come back in the reply with code, strerror and the extended ACK', async () => {
    // With strict checking on, a link dump filtered by index is refused with a reason.
    const [bad] = await bpf.netlinkTransact(root, [linkMsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, { index: 1 })]);
    assert.equal(bad?.errno, 22);
    assert.equal(bad?.code, 'EINVAL');
    assert.equal(bad?.strerror, 'Invalid argument');
    assert.match(bad?.extack ?? '', /index/i);
    assert.deepEqual(bad?.messages, []);
    // An unknown link kind, in the scratch namespace: EOPNOTSUPP and the attribute's offset.
    const h = bpf.netlinkOpen(nsPath);
    try {
      const create = linkMsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, {
        attrs: [attr(IFLA_IFNAME, cstr('x0')), attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, cstr('no-such-kind')))],
      });
      const [r] = await bpf.netlinkTransact(h, [create]);
      assert.equal(r?.code, 'EOPNOTSUPP');
      assert.match(r?.extack ?? '', /unknown device type/i);
    } finally {
      bpf.close(h);
    }
  });

  test('stopOnError (default) skips the rest; off, every message is sent', async () => {
    const msgs = [getLink('lo'), getLink('hy-no-such-dev'), getLink('lo')];
    const stopped = await bpf.netlinkTransact(root, msgs);
    assert.deepEqual(
      stopped.map((r) => [r.errno === 0 ? 'ok' : r.code, r.skipped ?? false, r.messages.length]),
      [['ok', false, 1], ['ENODEV', false, 0], ['ECANCELED', true, 0]],
    );
    const all = await bpf.netlinkTransact(root, msgs, { stopOnError: false });
    assert.deepEqual(all.map((r) => r.code ?? 'ok'), ['ok', 'ENODEV', 'ok']);
    assert.deepEqual(await bpf.netlinkTransact(root, []), []);
  });

  test('one transact per handle at a time: a second is EHANDLEBUSY; close meanwhile is deferred', async () => {
    const h = bpf.netlinkOpen();
    const first = bpf.netlinkTransact(h, [dumpLinks(), dumpLinks()]);
    await rejectsNative(bpf.netlinkTransact(h, [getLink('lo')]), { code: 'EHANDLEBUSY', op: 'netlinkTransact' });
    const fds = openFdCount();
    bpf.close(h);
    assert.equal(openFdCount(), fds, 'the socket stays open while the transact runs');
    const replies = await first;
    assert.deepEqual(replies.map((r) => r.errno), [0, 0]);
    assert.equal(openFdCount(), fds - 1, 'and is closed when it ends');
    await rejectsNative(bpf.netlinkTransact(h, [getLink('lo')]), { code: 'ECLOSED' });
    bpf.close(h);
  });

  test('open errors name the path', () => {
    throwsNative(() => bpf.netlinkOpen('/run/netns/hypha-no-such-netns'), {
      code: 'ENOENT',
      op: 'open',
      message: /netns "\/run\/netns\/hypha-no-such-netns"/,
    });
    throwsNative(() => bpf.netlinkOpen('/etc/hostname'), {
      code: 'EINVAL',
      op: 'setns',
      message: /"\/etc\/hostname" is not a network namespace/,
    });
    throwsNative(() => bpf.netlinkOpen('/proc/self/ns/mnt'), {
      code: 'EINVAL',
      message: /"\/proc\/self\/ns\/mnt" is not a network namespace/,
    });
    throwsNative(() => bpf.native.netlinkOpen(42 as unknown as string), {
      code: 'EINVALARG',
      message: /netnsPath must be a string, got number/,
    });
  });

  test('bad arguments are rejected with EINVALARG naming them', async () => {
    const bad: Array<[unknown, unknown, RegExp]> = [
      ['not an array', undefined, /messages must be an array/],
      [[new Uint16Array(16)], undefined, /messages\[0\] must be a Uint8Array, got typed array/],
      [[getLink('lo'), 'x'], undefined, /messages\[1\] must be a Uint8Array, got string/],
      [[new Uint8Array(8)], undefined, /messages\[0\] must be a netlink message of 16 to \d+ bytes, got 8/],
      [[getLink('lo').subarray(0, 20)], undefined, /messages\[0\] has nlmsg_len 40 but is 20 bytes long/],
      [[getLink('lo')], 'opts', /opts must be an object/],
      [[getLink('lo')], { stopOnError: 1 }, /opts\.stopOnError must be a boolean/],
      [[getLink('lo')], { timeoutMs: 0 }, /opts\.timeoutMs must be an integer in \[1, 3600000\]/],
    ];
    for (const [messages, opts, message] of bad) {
      await rejectsNative(bpf.native.netlinkTransact(root, messages as Uint8Array[], opts as bpf.NetlinkTransactOptions), {
        code: 'EINVALARG',
        op: 'netlinkTransact',
        name: 'TypeError',
        message,
      });
    }
    const many = Array.from({ length: 4097 }, () => getLink('lo'));
    await rejectsNative(bpf.netlinkTransact(root, many), { code: 'EINVALARG', message: /at most 4096 messages/ });
    // the handle is still fine after all that
    assert.equal((await bpf.netlinkTransact(root, [getLink('lo')]))[0]?.errno, 0);
  });
});

describe('netlink handles', () => {
  test('kinds are checked both ways; close is idempotent and gives the fd back', async () => {
    const map = bpf.mapCreate(bpf.constants.mapTypes.ARRAY, 4, 4, 1);
    const before = openFdCount();
    const h = bpf.netlinkOpen();
    assert.equal(openFdCount(), before + 1);
    try {
      await rejectsNative(bpf.netlinkTransact(map as unknown as NetlinkHandle, [getLink('lo')]), {
        code: 'EBADHANDLE',
        message: /h must be a netlink handle, got a map handle/,
      });
      await rejectsNative(bpf.netlinkTransact({} as NetlinkHandle, [getLink('lo')]), { code: 'EBADHANDLE', message: /non-handle/ });
      throwsNative(() => bpf.mapLookup(h as unknown as MapHandle, u32(0)), { code: 'EBADHANDLE', message: /got a netlink handle/ });
    } finally {
      bpf.close(h);
      bpf.close(h);
      bpf.close(map);
    }
    assert.equal(openFdCount(), before - 1);
    await rejectsNative(bpf.netlinkTransact(h, [getLink('lo')]), { code: 'ECLOSED', message: /netlink handle h is closed/ });
  });

  test('dropped netlink handles give their sockets back after GC', async () => {
    await collectGarbage();
    const before = openFdCount();
    (() => {
      for (let i = 0; i < 100; i++) bpf.netlinkOpen();
    })();
    assert.ok(openFdCount() >= before + 100);
    await collectGarbage();
    assert.equal(openFdCount(), before);
  });
});
