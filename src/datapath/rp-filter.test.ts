import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { RpFilter, RpFilterError, deviceRpFilterOff, planRpFilter } from './rp-filter.ts';
import { type Sysctls, procSysctls } from './sysctl.ts';

/** A /proc/sys tree in a temporary directory with these IPv4 conf values. */
function fakeProc(values: Record<string, string>): { root: string; get: (dev: string) => string; done: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'hypha-sysctl-'));
  for (const [dev, v] of Object.entries(values)) {
    mkdirSync(path.join(root, 'net/ipv4/conf', dev), { recursive: true });
    writeFileSync(path.join(root, 'net/ipv4/conf', dev, 'rp_filter'), `${v}\n`);
  }
  return { root, get: (dev) => readFileSync(path.join(root, 'net/ipv4/conf', dev, 'rp_filter'), 'utf8').trim(), done: () => rmSync(root, { recursive: true, force: true }) };
}

function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

test('plan: 0 needs nothing; anything else is written to 0 when managed, refused when not', () => {
  assert.deepEqual(planRpFilter('0', true), { action: 'none' });
  assert.deepEqual(planRpFilter('0', false), { action: 'none' });
  assert.deepEqual(planRpFilter('1', true), { action: 'write', old: '1', value: '0' });
  assert.deepEqual(planRpFilter('2', true), { action: 'write', old: '2', value: '0' });
  assert.deepEqual(planRpFilter('2', false), { action: 'refuse', value: '2' });
});

test('managed: all turned off and logged at info with the old value; default left as it was', () => {
  const p = fakeProc({ all: '1', default: '1' });
  try {
    const { log, lines } = capture();
    new RpFilter({ manage: true, log, sysctls: procSysctls(p.root) }).ensure();
    assert.equal(p.get('all'), '0');
    assert.equal(p.get('default'), '1');
    const info = lines.find((l) => l.sysctl === 'net.ipv4.conf.all.rp_filter');
    assert.deepEqual([info?.level, info?.old, info?.new], [30, '1', '0']);
    assert.ok(lines.some((l) => l.sysctl === 'net.ipv4.conf.default.rp_filter' && l.value === '1' && l.level === 30));
  } finally {
    p.done();
  }
});

test('already 0: nothing written, nothing logged', () => {
  const writes: string[] = [];
  const sys: Sysctls = { read: () => '0', write: (k) => writes.push(k.join('.')) };
  const { log, lines } = capture();
  new RpFilter({ manage: true, log, sysctls: sys }).ensure();
  assert.deepEqual([writes, lines], [[], []]);
});

test('not managed: refused with the sysctl, its value and the option named; nothing written', () => {
  const p = fakeProc({ all: '1', default: '0' });
  try {
    const { log } = capture();
    assert.throws(() => new RpFilter({ manage: false, log, sysctls: procSysctls(p.root) }).ensure(), (e: unknown) => {
      assert.ok(e instanceof RpFilterError);
      assert.deepEqual([e.code, e.sysctl, e.value], ['ERPFILTER', 'net.ipv4.conf.all.rp_filter', '1']);
      assert.match(e.message, /^net\.ipv4\.conf\.all\.rp_filter is 1 \(strict\): .*Service, node or loopback source.*sysctl\.manageRpFilter: true/);
      return true;
    });
    assert.equal(p.get('all'), '1');
  } finally {
    p.done();
  }
});

test('managed but not writable: refused with the reason', () => {
  const sys: Sysctls = { read: () => '1', write: () => { throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }); } };
  const { log } = capture();
  assert.throws(() => new RpFilter({ manage: true, log, sysctls: sys }).ensure(),
    (e: unknown) => e instanceof RpFilterError && /^net\.ipv4\.conf\.all\.rp_filter is 1 and could not be set to 0 \(EROFS: read-only file system\)/.test(e.message));
});

test('recheck: turned on again later is fixed again (warn); unmanaged it is an error once per value', () => {
  let all = '0';
  const sys: Sysctls = { read: () => all, write: (_k, v) => { all = v; } };
  const managed = capture();
  const rp = new RpFilter({ manage: true, log: managed.log, sysctls: sys });
  rp.ensure();
  rp.recheck();
  assert.equal(managed.lines.length, 0);
  all = '1';
  rp.recheck();
  assert.equal(all, '0');
  assert.deepEqual(managed.lines.map((l) => [l.level, l.old]), [[40, '1']]);

  const un = capture();
  const off = new RpFilter({ manage: false, log: un.log, sysctls: sys });
  off.ensure();
  all = '1';
  off.recheck();
  off.recheck();
  all = '2';
  off.recheck();
  assert.equal(all, '2', 'never written');
  assert.deepEqual(un.lines.map((l) => [l.level, l.value]), [[50, '1'], [50, '2']]);
});

test('a device of ours: set to 0 when it is not, old value returned', () => {
  const p = fakeProc({ lxc1: '1', lxc2: '0' });
  try {
    assert.equal(deviceRpFilterOff('lxc1', undefined, procSysctls(p.root)), '1');
    assert.equal(p.get('lxc1'), '0');
    assert.equal(deviceRpFilterOff('lxc2', undefined, procSysctls(p.root)), undefined);
    const { log, lines } = capture();
    assert.equal(deviceRpFilterOff('gone', log, procSysctls(p.root)), undefined);
    assert.equal(lines[0]?.sysctl, 'net.ipv4.conf.gone.rp_filter');
  } finally {
    p.done();
  }
});
