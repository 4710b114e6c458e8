import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CNI_ERR, CniError } from './errors.ts';
import {
  CNI_COMMANDS,
  CNI_VERSIONS,
  checkCommandVersion,
  compareVersions,
  isCidr,
  parseCniArgs,
  parseCniCommand,
  parseCniPath,
  parseCniVersion,
  parseNetConf,
  parsePrevResult,
  parseValidAttachments,
  renderError,
  renderResult,
  renderVersion,
  validateContainerId,
  validateIfname,
  type CniVersion,
} from './spec.ts';
import type { CniResult } from './types.ts';

/** assert.throws for a CniError with this code whose message matches every pattern. */
function throwsCni(fn: () => unknown, code: number, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CniError, `expected a CniError, got ${String(err)}`);
    assert.equal(err.code, code, `code of "${err.message}"`);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

const base = (v: CniVersion, extra: Record<string, unknown> = {}) => ({ cniVersion: v, name: 'hypha', type: 'hypha', ...extra });

describe('versions and commands', () => {
  test('the four supported versions, in order', () => {
    assert.deepEqual([...CNI_VERSIONS], ['0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    assert.ok(compareVersions('0.3.1', '0.4.0') < 0);
    assert.ok(compareVersions('1.1.0', '1.0.0') > 0);
    assert.equal(compareVersions('1.0.0', '1.0.0'), 0);
  });

  test('an unsupported or missing cniVersion is code 1 naming the value', () => {
    for (const v of CNI_VERSIONS) assert.equal(parseCniVersion(v), v);
    throwsCni(() => parseCniVersion('0.2.0'), CNI_ERR.INCOMPATIBLE_VERSION, /"0\.2\.0"/, /supported: 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/);
    throwsCni(() => parseCniVersion('2.0.0'), CNI_ERR.INCOMPATIBLE_VERSION, /"2\.0\.0"/);
    throwsCni(() => parseCniVersion(1), CNI_ERR.INCOMPATIBLE_VERSION, /cniVersion 1 is not supported/);
    throwsCni(() => parseCniVersion(undefined), CNI_ERR.INCOMPATIBLE_VERSION, /missing/);
  });

  test('an unknown CNI_COMMAND is code 4 naming the value', () => {
    for (const c of CNI_COMMANDS) assert.equal(parseCniCommand(c), c);
    throwsCni(() => parseCniCommand('add'), CNI_ERR.INVALID_ENV, /CNI_COMMAND "add"/);
    throwsCni(() => parseCniCommand(''), CNI_ERR.INVALID_ENV, /CNI_COMMAND is not set/);
    throwsCni(() => parseCniCommand(undefined), CNI_ERR.INVALID_ENV, /CNI_COMMAND is not set/);
  });

  test('CHECK from 0.4.0, GC and STATUS from 1.1.0, the rest everywhere; else code 1', () => {
    const since: Record<string, CniVersion> = { ADD: '0.3.1', DEL: '0.3.1', VERSION: '0.3.1', CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };
    for (const c of CNI_COMMANDS) {
      for (const v of CNI_VERSIONS) {
        const allowed = compareVersions(v, since[c] as CniVersion) >= 0;
        if (allowed) assert.doesNotThrow(() => checkCommandVersion(c, v), `${c} in ${v}`);
        else throwsCni(() => checkCommandVersion(c, v), CNI_ERR.INCOMPATIBLE_VERSION, new RegExp(`${c} needs cniVersion ${since[c]}`), new RegExp(`"${v}"`));
      }
    }
  });
});

describe('environment values', () => {
  test('container IDs', () => {
    for (const ok of ['a', '0', 'abc_DEF.1-2', 'f'.repeat(64)]) assert.doesNotThrow(() => validateContainerId(ok), ok);
    throwsCni(() => validateContainerId(''), CNI_ERR.INVALID_ENV, /CNI_CONTAINERID is not set/);
    throwsCni(() => validateContainerId('-abc'), CNI_ERR.INVALID_ENV, /CNI_CONTAINERID "-abc"/);
    throwsCni(() => validateContainerId('a b'), CNI_ERR.INVALID_ENV, /CNI_CONTAINERID "a b"/);
    throwsCni(() => validateContainerId('a/b'), CNI_ERR.INVALID_ENV, /CNI_CONTAINERID "a\/b"/);
    throwsCni(() => validateContainerId('x'.repeat(201)), CNI_ERR.INVALID_ENV, /longer than 200/);
  });

  test('interface names', () => {
    for (const ok of ['eth0', 'net1', 'a', 'x'.repeat(15), 'é-1']) assert.doesNotThrow(() => validateIfname(ok), ok);
    throwsCni(() => validateIfname(''), CNI_ERR.INVALID_ENV, /CNI_IFNAME is not set/);
    throwsCni(() => validateIfname('x'.repeat(16)), CNI_ERR.INVALID_ENV, /CNI_IFNAME "x{16}" is longer than 15 bytes/);
    throwsCni(() => validateIfname('ééééééééé'), CNI_ERR.INVALID_ENV, /longer than 15 bytes/);
    for (const bad of ['.', '..', 'a/b', 'a:b', 'a b', 'a\tb']) throwsCni(() => validateIfname(bad), CNI_ERR.INVALID_ENV, /CNI_IFNAME/);
  });

  test('CNI_ARGS: the pairs kubelet passes', () => {
    assert.deepEqual(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1'), {
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: 'shop',
      K8S_POD_NAME: 'web-0',
      K8S_POD_INFRA_CONTAINER_ID: 'abc',
      K8S_POD_UID: 'u-1',
    });
    assert.deepEqual(parseCniArgs(''), {});
    assert.deepEqual(parseCniArgs('K8S_POD_NAME=a;;'), { K8S_POD_NAME: 'a' }, 'empty segments are skipped');
    assert.deepEqual(parseCniArgs('K8S_POD_NAME=a=b'), { K8S_POD_NAME: 'a=b' }, 'a value may contain =');
    assert.deepEqual(parseCniArgs('K8S_POD_NAME=a;K8S_POD_NAME=b'), { K8S_POD_NAME: 'b' }, 'the last value wins');
    assert.deepEqual(parseCniArgs('K8S_POD_NAME='), { K8S_POD_NAME: '' });
  });

  test('CNI_ARGS: unknown keys need IgnoreUnknown', () => {
    throwsCni(() => parseCniArgs('FOO=bar'), CNI_ERR.INVALID_ENV, /CNI_ARGS: unknown key "FOO"/, /IgnoreUnknown/);
    throwsCni(() => parseCniArgs('IgnoreUnknown=0;FOO=bar'), CNI_ERR.INVALID_ENV, /"FOO"/);
    for (const yes of ['1', 'true', 'True', 'TRUE']) assert.deepEqual(parseCniArgs(`IgnoreUnknown=${yes};FOO=bar`), { IgnoreUnknown: yes, FOO: 'bar' });
    throwsCni(() => parseCniArgs('IgnoreUnknown=maybe'), CNI_ERR.INVALID_ENV, /IgnoreUnknown="maybe"/);
    assert.deepEqual(parseCniArgs('FOO=1', ['FOO']), { FOO: '1' }, 'the known set can be given');
  });

  test('CNI_ARGS: a segment without KEY= is code 4 naming it', () => {
    throwsCni(() => parseCniArgs('K8S_POD_NAME'), CNI_ERR.INVALID_ENV, /CNI_ARGS: "K8S_POD_NAME" is not a KEY=VALUE pair/);
    throwsCni(() => parseCniArgs('=x'), CNI_ERR.INVALID_ENV, /"=x"/);
  });

  test('CNI_PATH', () => {
    assert.deepEqual(parseCniPath('/opt/cni/bin::/usr/lib/cni'), ['/opt/cni/bin', '/usr/lib/cni']);
    assert.deepEqual(parseCniPath(''), []);
  });
});

describe('network configuration', () => {
  test('a minimal config in each version passes, other fields pass through', () => {
    for (const v of CNI_VERSIONS) {
      const conf = parseNetConf(base(v, { agentSocket: '/run/x.sock', custom: { a: [1] }, runtimeConfig: { portMappings: [] } }));
      assert.equal(conf.cniVersion, v);
      assert.equal(conf.name, 'hypha');
      assert.deepEqual(conf.custom, { a: [1] });
      assert.deepEqual(conf.runtimeConfig, { portMappings: [] });
      assert.equal(conf.prevResult, undefined);
    }
  });

  test('the input is not modified', () => {
    const raw = base('1.0.0', { prevResult: { ips: [{ address: '10.0.0.2/32' }] } });
    const copy = structuredClone(raw);
    parseNetConf(raw);
    assert.deepEqual(raw, copy);
  });

  test('not an object is code 6', () => {
    throwsCni(() => parseNetConf('x'), CNI_ERR.DECODE, /not a JSON object \(got string\)/);
    throwsCni(() => parseNetConf([]), CNI_ERR.DECODE, /an array/);
    throwsCni(() => parseNetConf(null), CNI_ERR.DECODE, /null/);
  });

  test('version before fields: an unknown cniVersion is code 1, a command the version lacks is code 1', () => {
    throwsCni(() => parseNetConf({ cniVersion: '0.2.0', name: 'x' }), CNI_ERR.INCOMPATIBLE_VERSION, /"0\.2\.0"/);
    throwsCni(() => parseNetConf(base('0.3.1'), { command: 'CHECK' }), CNI_ERR.INCOMPATIBLE_VERSION, /CHECK needs cniVersion 0\.4\.0/);
    throwsCni(() => parseNetConf(base('1.0.0'), { command: 'GC' }), CNI_ERR.INCOMPATIBLE_VERSION, /GC needs cniVersion 1\.1\.0/);
    throwsCni(() => parseNetConf(base('1.0.0'), { command: 'STATUS' }), CNI_ERR.INCOMPATIBLE_VERSION, /STATUS needs/);
  });

  test('bad fields are code 7 naming field and value', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ cniVersion: '1.0.0', type: 'hypha' }, /name is required/],
      [{ cniVersion: '1.0.0', name: 'n' }, /type is required/],
      [base('1.0.0', { name: 'bad name' }), /name: "bad name" must start with a letter or digit/],
      [base('1.0.0', { name: '' }), /name: "" /],
      [base('1.0.0', { name: 7 }), /name: 7 must be string/],
      [base('1.0.0', { type: '../hypha' }), /type: "\.\.\/hypha" must not contain '\/'/],
      [base('1.0.0', { agentSocket: 'run/x.sock' }), /agentSocket: "run\/x\.sock" must be an absolute path/],
      [base('1.0.0', { agentSocket: `/${'x'.repeat(120)}` }), /agentSocket: "\/x+\.\.\." must NOT have more than 107 characters/],
      [base('1.0.0', { delQueueDir: 'q' }), /delQueueDir: "q"/],
      [base('1.0.0', { agentTimeoutSeconds: 0 }), /agentTimeoutSeconds: 0 must be > 0/],
      [base('1.0.0', { agentTimeoutSeconds: '5' }), /agentTimeoutSeconds: "5" must be number/],
      [base('1.0.0', { dns: { nameservers: '10.0.0.10' } }), /dns\.nameservers: "10\.0\.0\.10" must be array/],
      [base('1.0.0', { ipMasq: 'yes' }), /ipMasq: "yes" must be boolean/],
      [base('1.0.0', { runtimeConfig: [] }), /runtimeConfig: \[\] must be object/],
      [base('1.0.0', { ipam: { type: 'a/b' } }), /ipam\.type: "a\/b" must not contain/],
      [base('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'a' }] }), /cni\.dev\/valid-attachments\[0\]\.ifname is required/],
    ];
    for (const [conf, pattern] of cases) throwsCni(() => parseNetConf(conf), CNI_ERR.INVALID_CONFIG, pattern);
  });

  test('all problems are in details', () => {
    try {
      parseNetConf(base('1.0.0', { name: 'a b', agentTimeoutSeconds: -1 }));
      assert.fail('should throw');
    } catch (err) {
      assert.ok(err instanceof CniError);
      assert.match(err.details, /name: "a b"/);
      assert.match(err.details, /agentTimeoutSeconds: -1/);
    }
  });
});

describe('prevResult', () => {
  const legacyPrev = {
    cniVersion: '0.3.1',
    interfaces: [{ name: 'lxc1', mac: '02:00:00:00:00:01' }, { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p' }],
    ips: [
      { version: '4', address: '10.244.1.5/32', gateway: '169.254.1.1', interface: 1 },
      { version: '6', address: 'fd00::5/128', interface: 1 },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
    dns: { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'] },
  };
  const neutral: CniResult = {
    interfaces: [{ name: 'lxc1', mac: '02:00:00:00:00:01' }, { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p' }],
    ips: [
      { address: '10.244.1.5/32', gateway: '169.254.1.1', interface: 1 },
      { address: 'fd00::5/128', interface: 1 },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
    dns: { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'] },
  };

  test('0.3.1 and 0.4.0 prevResults convert to the neutral type (version dropped)', () => {
    for (const v of ['0.3.1', '0.4.0'] as const) {
      const { cniVersion: _, ...noVersion } = legacyPrev;
      assert.deepEqual(parsePrevResult(noVersion, v), neutral, v);
      assert.deepEqual(parseNetConf(base(v, { prevResult: noVersion })).prevResult, neutral);
    }
  });

  test('1.0.0 prevResult: no ip version; fields of 1.1.0 dropped', () => {
    const prev = {
      interfaces: [{ name: 'eth0', mtu: 1400, sandbox: '/run/netns/p' }],
      ips: [{ address: '10.244.1.5/32', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', mtu: 1400, table: 5 }],
    };
    assert.deepEqual(parsePrevResult(prev, '1.0.0'), {
      interfaces: [{ name: 'eth0', sandbox: '/run/netns/p' }],
      ips: [{ address: '10.244.1.5/32', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0' }],
    });
  });

  test('1.1.0 prevResult keeps mtu, advmss, priority, table, scope, socketPath, pciID', () => {
    const prev = {
      interfaces: [{ name: 'eth0', mtu: 1400, sandbox: '/run/netns/p', socketPath: '/run/vhost.sock', pciID: '0000:00:01.0' }],
      ips: [{ address: '10.244.1.5/32', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
    };
    assert.deepEqual(parsePrevResult(prev, '1.1.0'), prev);
  });

  test("the prevResult's own cniVersion wins when supported", () => {
    assert.deepEqual(parsePrevResult(legacyPrev, '1.1.0'), neutral);
  });

  test('missing arrays and nulls are empty lists', () => {
    assert.deepEqual(parsePrevResult({}, '1.0.0'), { interfaces: [], ips: [], routes: [] });
    assert.deepEqual(parsePrevResult({ interfaces: null, ips: null, routes: null }, '1.0.0'), { interfaces: [], ips: [], routes: [] });
  });

  test('bad prevResults are code 7 naming the field', () => {
    const cases: [unknown, CniVersion, RegExp][] = [
      [{ ips: [{ address: '10.0.0.5' }] }, '1.0.0', /prevResult\.ips\[0\]\.address: "10\.0\.0\.5" is not an IP address in CIDR notation/],
      [{ ips: [{ address: '10.0.0.5/33' }] }, '1.0.0', /"10\.0\.0\.5\/33"/],
      [{ ips: [{ address: '10.0.0.5/32', gateway: 'x' }] }, '1.0.0', /prevResult\.ips\[0\]\.gateway: "x" is not an IP address/],
      [{ ips: [{ address: '10.0.0.5/32', interface: 2 }], interfaces: [{ name: 'eth0' }] }, '1.0.0', /ips\[0\]\.interface: 2 is not an index into interfaces \(1 entries\)/],
      [{ ips: [{ address: '10.0.0.5/32', interface: -1 }] }, '1.0.0', /ips\[0\]\.interface: -1 must be >= 0/],
      [{ ips: [{ address: '10.0.0.5/32' }] }, '0.4.0', /prevResult\.ips\[0\]\.version is required/],
      [{ ips: [{ version: '6', address: '10.0.0.5/32' }] }, '0.3.1', /prevResult\.ips\[0\]\.version: "6" does not match address "10\.0\.0\.5\/32"/],
      [{ ips: [{ version: 4, address: '10.0.0.5/32' }] }, '0.3.1', /prevResult\.ips\[0\]\.version: 4 must be one of "4", "6"/],
      [{ interfaces: [{ mac: 'x' }] }, '1.0.0', /prevResult\.interfaces\[0\]\.name is required/],
      [{ routes: [{ dst: 'default' }] }, '1.0.0', /prevResult\.routes\[0\]\.dst: "default" is not an IP prefix/],
      [{ routes: [{ dst: '0.0.0.0/0', gw: '1.2.3' }] }, '1.0.0', /routes\[0\]\.gw: "1\.2\.3"/],
      [{ routes: [{ dst: '0.0.0.0/0', table: -1 }] }, '1.1.0', /routes\[0\]\.table: -1/],
      [{ ips: 'x' }, '1.0.0', /prevResult\.ips: "x" must be array,null/],
      [{ dns: { search: 'a' } }, '1.0.0', /prevResult\.dns\.search: "a" must be array/],
    ];
    for (const [prev, v, pattern] of cases) {
      throwsCni(() => parsePrevResult(prev, v), CNI_ERR.INVALID_CONFIG, pattern);
      throwsCni(() => parseNetConf(base(v, { prevResult: prev })), CNI_ERR.INVALID_CONFIG, pattern);
    }
    throwsCni(() => parseNetConf(base('1.0.0', { prevResult: 'x' })), CNI_ERR.INVALID_CONFIG, /prevResult: "x" must be object/);
  });

  test('DEL drops an invalid prevResult and says so, so cleanup still happens', () => {
    const warnings: string[] = [];
    const conf = parseNetConf(base('1.0.0', { prevResult: { ips: [{ address: 'bogus' }] } }), { command: 'DEL', onWarning: (m) => warnings.push(m) });
    assert.equal(conf.prevResult, undefined);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /prevResult ignored for DEL: .*"bogus"/);
    const conf2 = parseNetConf(base('1.0.0', { prevResult: 'x' }), { command: 'DEL' });
    assert.equal(conf2.prevResult, undefined);
    // Other fields stay fatal for DEL too.
    throwsCni(() => parseNetConf(base('1.0.0', { name: 'a b', prevResult: 'x' }), { command: 'DEL' }), CNI_ERR.INVALID_CONFIG, /name: "a b"/);
  });
});

describe('results', () => {
  const full: CniResult = {
    interfaces: [
      { name: 'lxc0123', mac: '02:00:00:00:00:01' },
      { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p', mtu: 1450 },
    ],
    ips: [
      { address: '10.244.1.5/32', gateway: '169.254.1.1', interface: 1 },
      { address: 'fd00:10:244::5/128', interface: 1 },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1', mtu: 1450, advmss: 1410, priority: 5, table: 254, scope: 0 }],
    dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] },
  };

  test('0.3.1 and 0.4.0: ips carry version "4" / "6"; no 1.1.0 fields', () => {
    for (const v of ['0.3.1', '0.4.0'] as const) {
      assert.deepEqual(renderResult(full, v), {
        cniVersion: v,
        interfaces: [
          { name: 'lxc0123', mac: '02:00:00:00:00:01' },
          { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p' },
        ],
        ips: [
          { version: '4', address: '10.244.1.5/32', gateway: '169.254.1.1', interface: 1 },
          { version: '6', address: 'fd00:10:244::5/128', interface: 1 },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
        dns: full.dns,
      });
    }
  });

  test('1.0.0: no ip version, no 1.1.0 fields', () => {
    const r = renderResult(full, '1.0.0');
    assert.deepEqual(r.ips, [
      { address: '10.244.1.5/32', gateway: '169.254.1.1', interface: 1 },
      { address: 'fd00:10:244::5/128', interface: 1 },
    ]);
    assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }]);
    assert.deepEqual((r.interfaces as unknown[])[1], { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p' });
  });

  test('1.1.0: route mtu/advmss/priority/table/scope and interface mtu/socketPath/pciID', () => {
    const withExtras = structuredClone(full);
    Object.assign(withExtras.interfaces[1] as object, { socketPath: '/run/vhu.sock', pciID: '0000:00:02.0' });
    const r = renderResult(withExtras, '1.1.0');
    assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1', mtu: 1450, advmss: 1410, priority: 5, table: 254, scope: 0 }]);
    assert.deepEqual((r.interfaces as unknown[])[1], {
      name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1450, socketPath: '/run/vhu.sock', pciID: '0000:00:02.0', sandbox: '/run/netns/p',
    });
  });

  test('render then parse is the identity in 1.1.0, and loses only newer fields in older versions', () => {
    assert.deepEqual(parsePrevResult(renderResult(full, '1.1.0'), '1.1.0'), full);
    const older = parsePrevResult(renderResult(full, '0.3.1'), '0.3.1');
    assert.deepEqual(older.ips, full.ips);
    assert.deepEqual(older.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }]);
  });

  test('empty dns and absent optional fields are left out', () => {
    const r = renderResult({ interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.1/32' }], routes: [], dns: {} }, '1.0.0');
    assert.deepEqual(r, { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.1/32' }], routes: [] });
  });

  test('a result the handler got wrong is code 5 naming the field', () => {
    throwsCni(() => renderResult({ interfaces: [], ips: [{ address: '10.0.0.1' }], routes: [] }, '1.0.0'), CNI_ERR.IO, /result\.ips\[0\]\.address: "10\.0\.0\.1"/);
    throwsCni(() => renderResult({ interfaces: [], ips: [{ address: '10.0.0.1/32', interface: 0 }], routes: [] }, '1.0.0'), CNI_ERR.IO, /interface: 0 is not an index/);
    throwsCni(() => renderResult({ interfaces: [{ name: '' }], ips: [], routes: [] }, '1.0.0'), CNI_ERR.IO, /interfaces\[0\]\.name/);
  });

  test('error objects and VERSION', () => {
    assert.deepEqual(renderError(new CniError(7, 'bad', ''), '0.4.0'), { cniVersion: '0.4.0', code: 7, msg: 'bad' });
    assert.deepEqual(renderError(new CniError(103, 'veth', 'step veth-create failed with EEXIST'), '1.1.0'), {
      cniVersion: '1.1.0', code: 103, msg: 'veth', details: 'step veth-create failed with EEXIST',
    });
    assert.deepEqual(renderVersion('0.4.0'), { cniVersion: '0.4.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    assert.equal(renderVersion().cniVersion, '1.1.0');
  });

  test('isCidr', () => {
    for (const ok of ['10.0.0.0/8', '0.0.0.0/0', '::/0', 'fd00::1/128']) assert.ok(isCidr(ok), ok);
    for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/33', 'fd00::/129', 'x/8', '10.0.0.0/08a', '10.0.0.0/-1']) assert.ok(!isCidr(bad), bad);
  });
});

describe('GC attachments', () => {
  test('cni.dev/valid-attachments, or cni.dev/attachments; null is none; absent is code 7', () => {
    const att = [{ containerID: 'c1', ifname: 'eth0' }, { containerID: 'c2', ifname: 'net1' }];
    const want = [{ containerId: 'c1', ifname: 'eth0' }, { containerId: 'c2', ifname: 'net1' }];
    assert.deepEqual(parseValidAttachments(parseNetConf(base('1.1.0', { 'cni.dev/valid-attachments': att }))), want);
    assert.deepEqual(parseValidAttachments(parseNetConf(base('1.1.0', { 'cni.dev/attachments': att }))), want);
    assert.deepEqual(parseValidAttachments(parseNetConf(base('1.1.0', { 'cni.dev/valid-attachments': null }))), []);
    throwsCni(() => parseValidAttachments(parseNetConf(base('1.1.0'))), CNI_ERR.INVALID_CONFIG, /cni\.dev\/valid-attachments is required/);
  });
});
