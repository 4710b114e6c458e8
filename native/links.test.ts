// XDP and TC attach/query/replace/detach on a veth pair inside a throwaway network
// namespace. The checks run in a child process that enters the namespace with
// nsenter (not `ip netns exec`, which remounts /sys and hides /sys/fs/bpf).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { NODE, TEST_DIR, uniqueName } from './test/helpers.ts';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

describe('XDP and TC on a veth pair in a throwaway netns', () => {
  const ns = uniqueName('hypha-nt');
  before(() => {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'add', 'hv0', 'type', 'veth', 'peer', 'name', 'hv1');
    for (const dev of ['lo', 'hv0', 'hv1']) ip('-n', ns, 'link', 'set', dev, 'up');
  });
  after(() => {
    try {
      ip('netns', 'del', ns); // takes the veth pair and its programs with it
    } catch {
      // already gone
    }
  });

  test('attach, query, replace and detach (child in the namespace)', () => {
    // the child runs its own node:test suite; without NODE_TEST_CONTEXT it reports
    // in plain text instead of to this runner
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawnSync('nsenter', [`--net=/run/netns/${ns}`, NODE, `${TEST_DIR}links-child.ts`, 'hv0', 'hv1'], {
      encoding: 'utf8',
      timeout: 60_000,
      env,
    });
    const output = `${child.stdout}\n${child.stderr}`;
    assert.equal(child.signal, null, `child killed by ${child.signal}:\n${output}`);
    assert.equal(child.status, 0, `child failed:\n${output}`);
    assert.match(child.stdout, /ℹ pass 6/);
  });
});
