import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrefix, prefixWithin } from './cidr.ts';

describe('ipBlock prefixes', () => {
  test('parsed as Go does: host bits cleared', () => {
    assert.equal(parsePrefix('10.1.2.3/8')?.text, '10.0.0.0/8');
    assert.equal(parsePrefix('10.244.1.7/4')?.text, '0.0.0.0/4');
    assert.equal(parsePrefix('0.0.0.0/0')?.text, '0.0.0.0/0');
    assert.equal(parsePrefix('192.168.1.1/32')?.text, '192.168.1.1/32');
    assert.equal(parsePrefix('FD00::1/64')?.text, 'fd00::1/64');
  });

  test('invalid prefixes', () => {
    for (const t of ['10.0.0.0', '10.0.0.0/33', '10.0.0.256/8', '010.0.0.0/8', '10.0.0.0/-1', '10.0.0.0/8/9', 'fd00::/129', '', 'x/8', '10.0.0.0/ 8']) {
      assert.equal(parsePrefix(t), undefined, t);
    }
  });

  test('containment', () => {
    const p = (t: string) => parsePrefix(t)!;
    assert.equal(prefixWithin(p('10.1.0.0/16'), p('10.0.0.0/8')), true);
    assert.equal(prefixWithin(p('10.0.0.0/8'), p('10.0.0.0/8')), true);
    assert.equal(prefixWithin(p('10.0.0.0/8'), p('10.1.0.0/16')), false);
    assert.equal(prefixWithin(p('11.0.0.0/16'), p('10.0.0.0/8')), false);
    assert.equal(prefixWithin(p('1.2.3.4/32'), p('0.0.0.0/0')), true);
    assert.equal(prefixWithin(p('fd00:1::/32'), p('fd00::/16')), true);
    assert.equal(prefixWithin(p('fd01::/32'), p('fd00::/16')), false);
    assert.equal(prefixWithin(p('10.0.0.0/16'), p('::/0')), false, 'families never contain each other');
  });
});
