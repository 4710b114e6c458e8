import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CNI_ERR, CniError, defaultMessage, isCniError, isKnownCode, isRetriable, toCniError } from './errors.ts';

test('the codes of the spec and of Hypha', () => {
  assert.deepEqual(Object.values(CNI_ERR), [1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100, 101, 102, 103, 104]);
  for (const code of Object.values(CNI_ERR)) {
    assert.ok(isKnownCode(code));
    assert.notEqual(defaultMessage(code), `error ${code}`);
  }
  assert.equal(isKnownCode(999), false);
  assert.equal(defaultMessage(999), 'error 999');
});

test('CniError carries code, details and cause', () => {
  const cause = new Error('inner');
  const e = new CniError(CNI_ERR.CHECK_MISMATCH, 'eth0 differs', 'mac 02:00:00:00:00:01 != 02:00:00:00:00:02', { cause });
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'CniError');
  assert.equal(e.code, 104);
  assert.equal(e.details, 'mac 02:00:00:00:00:01 != 02:00:00:00:00:02');
  assert.equal(e.cause, cause);
  assert.equal(new CniError(7, 'x').details, '');
  assert.ok(isCniError(e));
  assert.ok(isCniError(e, 104));
  assert.ok(!isCniError(e, 7));
  assert.ok(!isCniError(new Error('x')));
});

test('isRetriable: try-again, I/O, not-available, and transient errno codes (also as causes)', () => {
  for (const code of [5, 11, 50, 51]) assert.ok(isRetriable(new CniError(code, 'x')), `code ${code}`);
  for (const code of [1, 2, 3, 4, 6, 7, 100, 101, 102, 103, 104]) assert.ok(!isRetriable(new CniError(code, 'x')), `code ${code}`);
  const busy = Object.assign(new Error('busy'), { code: 'EBUSY', errno: -16, op: 'link_add' });
  assert.ok(isRetriable(busy));
  assert.ok(isRetriable(new CniError(103, 'veth', '', { cause: busy })), 'a datapath error caused by EBUSY');
  assert.ok(!isRetriable(Object.assign(new Error('exists'), { code: 'EEXIST' })));
  assert.ok(!isRetriable(new Error('plain')));
  assert.ok(!isRetriable(undefined));
  assert.ok(!isRetriable('string'));
});

test('toCniError: CniErrors pass, errno errors are 103 naming the step, the rest 5', () => {
  const c = new CniError(102, 'attached');
  assert.equal(toCniError(c), c);
  const native = toCniError(Object.assign(new Error('RTM_NEWLINK: File exists'), { code: 'EEXIST', errno: -17, op: 'veth_create' }));
  assert.equal(native.code, 103);
  assert.equal(native.message, 'RTM_NEWLINK: File exists');
  assert.equal(native.details, 'step veth_create failed with EEXIST');
  const sys = toCniError(Object.assign(new Error('open failed'), { code: 'ENOENT', errno: -2, syscall: 'open' }));
  assert.equal(sys.code, 103);
  assert.equal(sys.details, 'step open failed with ENOENT');
  const plain = toCniError(new TypeError('x is undefined'));
  assert.equal(plain.code, 5);
  assert.equal(plain.message, 'x is undefined');
  assert.equal(toCniError('boom').code, 5);
  assert.match(toCniError('boom').message, /boom/);
});
