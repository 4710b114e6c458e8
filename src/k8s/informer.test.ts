import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rvKey } from './informer.ts';

test('rvKey: decimal revisions as numbers (exactly), anything else as the string it is', () => {
  assert.equal(rvKey('1234'), 1234);
  assert.equal(rvKey('999999999999999'), 999_999_999_999_999);
  assert.equal(rvKey('1234567890123456'), '1234567890123456', 'past what a double holds exactly: kept as text');
  assert.equal(rvKey('0123'), '0123', 'a leading zero is not the same revision as 123');
  assert.equal(rvKey(''), '');
  assert.equal(rvKey('abc'), 'abc');
  assert.notEqual(rvKey('12'), rvKey('13'));
});
