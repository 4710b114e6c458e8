import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labelKeyProblem, matches, parseSelector, selectorText } from './selectors.ts';

const sel = (raw: unknown) => {
  const r = parseSelector(raw, 'spec.podSelector');
  assert.deepEqual(r.problems, []);
  return r.selector!;
};

describe('label selectors', () => {
  test('empty selector matches everything', () => {
    assert.equal(matches(sel({}), {}), true);
    assert.equal(matches(sel({ matchLabels: {} }), { a: 'b' }), true);
  });

  test('matchLabels: every pair must be present', () => {
    const s = sel({ matchLabels: { app: 'web', tier: 'fe' } });
    assert.equal(matches(s, { app: 'web', tier: 'fe', x: 'y' }), true);
    assert.equal(matches(s, { app: 'web' }), false);
    assert.equal(matches(s, { app: 'web', tier: 'be' }), false);
  });

  test('In, NotIn, Exists, DoesNotExist', () => {
    const inSel = sel({ matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] });
    assert.deepEqual(['a', 'b', 'c'].map((p) => matches(inSel, { pod: p })), [false, true, true]);
    assert.equal(matches(inSel, {}), false, 'In needs the label');
    const notIn = sel({ matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['b'] }] });
    assert.deepEqual([matches(notIn, { pod: 'a' }), matches(notIn, { pod: 'b' }), matches(notIn, {})], [true, false, true], 'NotIn matches an absent label');
    const exists = sel({ matchExpressions: [{ key: 'pod', operator: 'Exists' }] });
    assert.deepEqual([matches(exists, { pod: '' }), matches(exists, {})], [true, false]);
    const dne = sel({ matchExpressions: [{ key: 'pod', operator: 'DoesNotExist', values: [] }] });
    assert.deepEqual([matches(dne, { pod: 'a' }), matches(dne, {})], [false, true]);
  });

  test('matchLabels AND matchExpressions', () => {
    const s = sel({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] });
    assert.equal(matches(s, { app: 'web', env: 'dev' }), true);
    assert.equal(matches(s, { app: 'web', env: 'prod' }), false);
    assert.equal(matches(s, { app: 'db', env: 'dev' }), false);
  });

  test('inherited object properties are not labels', () => {
    const s = sel({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] });
    assert.equal(matches(s, {}), false);
  });

  const bad: [string, unknown, string][] = [
    ['unknown operator', { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] }, 'spec.podSelector.matchExpressions[0].operator: "Equals" is not a valid selector operator (In, NotIn, Exists, DoesNotExist)'],
    ['In without values', { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] }, 'spec.podSelector.matchExpressions[0].values: [] must be non-empty when operator is In'],
    ['Exists with values', { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, 'spec.podSelector.matchExpressions[0].values: ["x"] must be empty when operator is Exists'],
    ['bad key', { matchLabels: { 'bad key': 'x' } }, 'spec.podSelector.matchLabels: "bad key" is not a valid label key'],
    ['bad value', { matchLabels: { app: '-x' } }, 'spec.podSelector.matchLabels["app"]: "-x" is not a valid label value'],
    ['non-string value', { matchLabels: { app: 3 } }, 'spec.podSelector.matchLabels["app"]: 3 is not a string'],
    ['missing key', { matchExpressions: [{ operator: 'Exists' }] }, 'spec.podSelector.matchExpressions[0].key: (missing) is required'],
    ['not an object', 'app=web', 'spec.podSelector: "app=web" is not a label selector'],
  ];
  for (const [name, raw, text] of bad) {
    test(`rejects ${name}, naming field and value`, () => {
      const r = parseSelector(raw, 'spec.podSelector');
      assert.equal(r.selector, undefined);
      const msgs = r.problems.map((p) => `${p.field}: ${p.value === undefined ? "(missing)" : JSON.stringify(p.value)} ${p.why}`);
      assert.ok(msgs.some((m) => m.startsWith(text)), `got: ${msgs.join(' | ')}`);
    });
  }

  test('label keys: prefix and name rules', () => {
    assert.equal(labelKeyProblem('kubernetes.io/metadata.name'), undefined);
    assert.equal(labelKeyProblem('app'), undefined);
    assert.match(labelKeyProblem('Example.com/app') ?? '', /prefix/);
    assert.match(labelKeyProblem(`${'a'.repeat(64)}`) ?? '', /name/);
    assert.match(labelKeyProblem('x/') ?? '', /name/);
  });

  test('text form', () => {
    assert.equal(selectorText(sel({})), '(all)');
    assert.equal(selectorText(sel({ matchLabels: { b: '2', a: '1' }, matchExpressions: [{ key: 'c', operator: 'NotIn', values: ['y', 'x'] }, { key: 'd', operator: 'DoesNotExist' }] })),
      'a=1, b=2, c notin (x,y), !d');
  });
});
