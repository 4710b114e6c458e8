// The pure part of leader election: what a candidate does with the Lease it
// read. The loop itself runs against a real API server in test/e2e/operator.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type LeaseObject, decideLease, leaderElectionProblem, microTime } from './leader.ts';

const wall = new Date('2025-03-01T10:00:00.123Z');
const T = '2025-03-01T10:00:00.123000Z';
const lease = (spec: LeaseObject['spec']): LeaseObject => ({ metadata: { name: 'hypha-operator', namespace: 'kube-system', resourceVersion: '7' }, spec });

describe('decideLease', () => {
  test('no Lease: create it, holding it', () => {
    assert.deepEqual(decideLease(undefined, 'me', 15, 1000, 1000, wall), {
      action: 'create', spec: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: T, renewTime: T, leaseTransitions: 0 },
    });
  });

  test('held by me: renew, keeping acquireTime and transitions', () => {
    const d = decideLease(lease({ holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: 'A', renewTime: 'R', leaseTransitions: 3 }), 'me', 15, 1000, 0, wall);
    assert.deepEqual(d, { action: 'update', takeover: false, spec: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: 'A', renewTime: T, leaseTransitions: 3 } });
  });

  test('held by another: wait until the lease runs out on my clock, from when I saw it change', () => {
    const held = lease({ holderIdentity: 'other', leaseDurationSeconds: 10, renewTime: '1999-01-01T00:00:00.000000Z', leaseTransitions: 1 });
    // The holder's renewTime is ignored (clocks differ): only the local observation counts.
    assert.deepEqual(decideLease(held, 'me', 15, 5000, 1000, wall), { action: 'wait', holder: 'other', retryAtMs: 11_000 });
    const d = decideLease(held, 'me', 15, 11_000, 1000, wall);
    assert.deepEqual(d, { action: 'update', takeover: true, spec: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: T, renewTime: T, leaseTransitions: 2 } });
  });

  test('released (no holder): take it at once', () => {
    const d = decideLease(lease({ leaseDurationSeconds: 1, leaseTransitions: 4 }), 'me', 15, 1000, 1000, wall);
    assert.equal(d.action, 'update');
    assert.equal(d.action === 'update' && d.spec.leaseTransitions, 5);
  });
});

test('microTime has six fractional digits', () => {
  assert.equal(microTime(wall), T);
});

test('leaderElectionProblem: client-go rules', () => {
  assert.equal(leaderElectionProblem({ leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2000 }), undefined);
  assert.match(leaderElectionProblem({ leaseDurationSeconds: 10, renewDeadlineMs: 10_000, retryPeriodMs: 2000 }) ?? '', /renewDeadlineSeconds 10 must be shorter than leaseDurationSeconds 10/);
  assert.match(leaderElectionProblem({ leaseDurationSeconds: 15, renewDeadlineMs: 2000, retryPeriodMs: 2000 }) ?? '', /must be longer than 1\.2 x retryPeriodSeconds 2/);
  assert.match(leaderElectionProblem({ leaseDurationSeconds: 1.5, renewDeadlineMs: 1000, retryPeriodMs: 100 }) ?? '', /leaseDurationSeconds 1\.5/);
});
