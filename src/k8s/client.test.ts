// Kubeconfig parsing and error classification (no API server: fixture files
// in a temp dir). The requests themselves are tested against a real API
// server in test/e2e/k8s-client.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { KubeApiError, KubeConfigError, credentialsFromKubeconfig, isAlreadyExists, isConflict, isInvalid, isNotFound } from './client.ts';

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hypha-kubeconfig-'));
  mkdirSync(path.join(dir, 'pki'));
  writeFileSync(path.join(dir, 'pki/ca.crt'), 'CA-FROM-FILE');
  writeFileSync(path.join(dir, 'pki/admin.crt'), 'CERT-FROM-FILE');
  writeFileSync(path.join(dir, 'pki/admin.key'), 'KEY-FROM-FILE');
  writeFileSync(path.join(dir, 'token'), 'tok-from-file\n');
});

after(() => rmSync(dir, { recursive: true, force: true }));

interface Parts {
  cluster?: Record<string, unknown>;
  user?: Record<string, unknown>;
  context?: Record<string, unknown>;
  currentContext?: string;
}

/** A kubeconfig with one cluster 'c', user 'u' and context 'ctx' (overridable), written to a file. */
function kubeconfig(name: string, parts: Parts = {}): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: parts.cluster ?? { server: 'https://10.0.0.1:6443' } }],
    users: [{ name: 'u', user: parts.user ?? {} }],
    contexts: [{ name: 'ctx', context: parts.context ?? { cluster: 'c', user: 'u' } }],
    'current-context': parts.currentContext ?? 'ctx',
  };
  const file = path.join(dir, `${name}.kubeconfig`);
  writeFileSync(file, stringify(doc));
  return file;
}

function rejects(file: string, message: RegExp): void {
  assert.throws(() => credentialsFromKubeconfig(file), (err: unknown) => {
    assert.ok(err instanceof KubeConfigError, `expected a KubeConfigError, got ${String(err)}`);
    assert.equal(err.code, 'EKUBECONFIG');
    assert.match(err.message, message);
    return true;
  });
}

describe('credentialsFromKubeconfig', () => {
  test('certificate files, resolved against the kubeconfig directory', () => {
    const file = kubeconfig('files', {
      cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority': 'pki/ca.crt' },
      user: { 'client-certificate': 'pki/admin.crt', 'client-key': path.join(dir, 'pki/admin.key') },
    });
    const c = credentialsFromKubeconfig(file);
    assert.equal(c.server, 'https://10.0.0.1:6443');
    assert.equal(c.ca?.toString(), 'CA-FROM-FILE');
    assert.equal(c.cert?.toString(), 'CERT-FROM-FILE');
    assert.equal(c.key?.toString(), 'KEY-FROM-FILE');
    assert.equal(c.token, undefined);
    assert.equal(c.insecureSkipTlsVerify, false);
  });

  test('inline certificate data (base64), which wins over a file', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const file = kubeconfig('inline', {
      cluster: { server: 'https://k8s.example:443', 'certificate-authority-data': b64('CA-INLINE'), 'certificate-authority': 'pki/missing.crt' },
      user: { 'client-certificate-data': b64('CERT-INLINE'), 'client-key-data': b64('KEY-INLINE') },
    });
    const c = credentialsFromKubeconfig(file);
    assert.deepEqual([c.ca?.toString(), c.cert?.toString(), c.key?.toString()], ['CA-INLINE', 'CERT-INLINE', 'KEY-INLINE']);
  });

  test('a bearer token, inline or as a file (path kept: it is re-read for rotation)', () => {
    assert.equal(credentialsFromKubeconfig(kubeconfig('token', { user: { token: 'abc.def' } })).token, 'abc.def');
    const c = credentialsFromKubeconfig(kubeconfig('tokenfile', { user: { tokenFile: 'token' } }));
    assert.equal(c.token, undefined);
    assert.equal(c.tokenFile, path.join(dir, 'token'));
  });

  test('insecure-skip-tls-verify', () => {
    const c = credentialsFromKubeconfig(kubeconfig('insecure', { cluster: { server: 'https://10.0.0.1:6443', 'insecure-skip-tls-verify': true } }));
    assert.equal(c.insecureSkipTlsVerify, true);
    assert.equal(c.ca, undefined);
  });

  test('a context without a user: no credentials, no error', () => {
    const c = credentialsFromKubeconfig(kubeconfig('nouser', { context: { cluster: 'c' } }));
    assert.deepEqual([c.cert, c.key, c.token, c.tokenFile], [undefined, undefined, undefined, undefined]);
  });

  test('a missing current context, cluster, user or server is named', () => {
    rejects(kubeconfig('noctx', { currentContext: 'prod' }), /current-context "prod" is not among its contexts/);
    rejects(kubeconfig('nocluster', { context: { cluster: 'other', user: 'u' } }), /cluster "other" of context "ctx" is not among its clusters/);
    rejects(kubeconfig('nouserentry', { context: { cluster: 'c', user: 'someone' } }), /user "someone" of context "ctx" is not among its users/);
    rejects(kubeconfig('noserver', { cluster: { 'insecure-skip-tls-verify': true } }), /cluster "c" has no server/);
  });

  test('exec and auth-provider plugins are refused', () => {
    rejects(kubeconfig('exec', { user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws' } } }), /user "u" uses an exec or auth-provider plugin/);
    rejects(kubeconfig('oidc', { user: { 'auth-provider': { name: 'oidc' } } }), /user "u" uses an exec or auth-provider plugin/);
  });

  test('unreadable files are named, and a file that is not a kubeconfig is refused', () => {
    rejects(path.join(dir, 'does-not-exist'), /does-not-exist: cannot be read/);
    rejects(kubeconfig('badcert', { user: { 'client-certificate': 'pki/nope.crt' } }), /client-certificate "pki\/nope\.crt" cannot be read: ENOENT/);
    const scalar = path.join(dir, 'scalar.kubeconfig');
    writeFileSync(scalar, 'just a string\n');
    rejects(scalar, /is not a kubeconfig/);
    const broken = path.join(dir, 'broken.kubeconfig');
    writeFileSync(broken, 'clusters: [\n');
    rejects(broken, /cannot be read/);
  });
});

describe('error predicates', () => {
  const err = (code: number, reason?: string) => new KubeApiError(code, `${code} ${reason ?? ''}`, reason === undefined ? undefined : { code, reason });

  test('classify by HTTP status and Status reason', () => {
    assert.equal(isNotFound(err(404, 'NotFound')), true);
    assert.equal(isNotFound(err(404)), true, 'a 404 without a Status body');
    assert.equal(isAlreadyExists(err(409, 'AlreadyExists')), true);
    assert.equal(isConflict(err(409, 'AlreadyExists')), false, 'AlreadyExists is a 409 but not a conflict');
    assert.equal(isConflict(err(409, 'Conflict')), true);
    assert.equal(isConflict(err(409)), true);
    assert.equal(isAlreadyExists(err(409, 'Conflict')), false);
    assert.equal(isInvalid(err(422, 'Invalid')), true);
    for (const p of [isNotFound, isConflict, isAlreadyExists, isInvalid]) {
      assert.equal(p(err(500, 'InternalError')), false);
      assert.equal(p(new Error('404 NotFound Conflict AlreadyExists')), false, 'never by message text');
      assert.equal(p(undefined), false);
    }
  });
});
