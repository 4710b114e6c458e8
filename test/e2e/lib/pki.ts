// Test PKI for a throwaway control plane, made with the openssl CLI: a CA, a
// kube-apiserver serving certificate, an admin client certificate in
// system:masters and the service-account signing key pair. Node's crypto can
// make keys but not certificates, and a library for X.509 issuance would be
// one more dependency for what four openssl invocations do.
//
// Keys are ECDSA P-256: generated in milliseconds, accepted by every
// Kubernetes component and by Node's TLS.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { run } from './proc.ts';

export class PkiError extends Error {
  readonly code: 'E_PKI_OPENSSL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PkiError';
    this.code = 'E_PKI_OPENSSL';
  }
}

export function isPkiError(err: unknown): err is PkiError {
  return err instanceof PkiError;
}

/** Paths of the PEM files written by {@link createControlPlanePki}. */
export interface ControlPlanePki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

export interface PkiOptions {
  /** Directory to write into (created if missing). */
  dir: string;
  /** IP addresses the apiserver certificate is valid for. */
  serverIps: readonly string[];
  /** DNS names the apiserver certificate is valid for. */
  serverDnsNames: readonly string[];
  /** Validity in days (default 30: long enough for any test run). */
  days?: number;
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run(['openssl', ...args], { timeoutMs: 30_000 });
  } catch (err) {
    throw new PkiError(`openssl ${args[0]} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Creates a key and a certificate signed by the CA, copying the CSR's extensions. */
async function issue(
  pki: { caCert: string; caKey: string; dir: string },
  name: string,
  subject: string,
  extensions: readonly string[],
  days: number,
): Promise<{ cert: string; key: string }> {
  const key = join(pki.dir, `${name}.key`);
  const csr = join(pki.dir, `${name}.csr`);
  const cert = join(pki.dir, `${name}.crt`);
  await openssl([
    'req', '-new', ...ecKey, '-keyout', key, '-out', csr, '-subj', subject,
    ...extensions.flatMap((e) => ['-addext', e]),
  ]);
  await openssl([
    'x509', '-req', '-in', csr, '-CA', pki.caCert, '-CAkey', pki.caKey,
    '-CAserial', join(pki.dir, 'ca.srl'), '-CAcreateserial',
    '-days', String(days), '-copy_extensions', 'copyall', '-out', cert,
  ]);
  return { cert, key };
}

export async function createControlPlanePki(opts: PkiOptions): Promise<ControlPlanePki> {
  const days = opts.days ?? 30;
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const caCert = join(opts.dir, 'ca.crt');
  const caKey = join(opts.dir, 'ca.key');
  await openssl([
    'req', '-x509', ...ecKey, '-keyout', caKey, '-out', caCert, '-days', String(days),
    '-subj', '/CN=hypha-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const ca = { caCert, caKey, dir: opts.dir };
  const san = [
    ...opts.serverIps.map((ip) => `IP:${ip}`),
    ...opts.serverDnsNames.map((dns) => `DNS:${dns}`),
  ].join(',');
  const server = await issue(ca, 'apiserver', '/CN=kube-apiserver', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${san}`,
  ], days);
  const admin = await issue(ca, 'admin', '/O=system:masters/CN=hypha-admin', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ], days);
  const serviceAccountKey = join(opts.dir, 'sa.key');
  const serviceAccountPub = join(opts.dir, 'sa.pub');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', serviceAccountKey]);
  await openssl(['pkey', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPub]);
  return {
    dir: opts.dir,
    caCert,
    caKey,
    serverCert: server.cert,
    serverKey: server.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    serviceAccountKey,
    serviceAccountPub,
  };
}

/** A client certificate signed by the control plane's CA (a kubelet's: `/O=system:nodes/CN=system:node:<name>`). */
export async function issueClientCert(pki: ControlPlanePki, name: string, subject: string, days = 30): Promise<{ cert: string; key: string }> {
  return issue({ caCert: pki.caCert, caKey: pki.caKey, dir: pki.dir }, name, subject, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ], days);
}

export interface KubeconfigOptions {
  path: string;
  server: string;
  caCert: string;
  clientCert: string;
  clientKey: string;
  /** Cluster, user and context name (default "hypha-test"). */
  name?: string;
}

/**
 * Writes a self-contained kubeconfig (CA, client certificate and key embedded)
 * so it keeps working if the PKI directory is moved or read from elsewhere.
 */
export async function writeKubeconfig(opts: KubeconfigOptions): Promise<string> {
  const name = opts.name ?? 'hypha-test';
  const b64 = async (path: string) => (await readFile(path)).toString('base64');
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: opts.server, 'certificate-authority-data': await b64(opts.caCert) } }],
    users: [{
      name,
      user: {
        'client-certificate-data': await b64(opts.clientCert),
        'client-key-data': await b64(opts.clientKey),
      },
    }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
  };
  await writeFile(opts.path, stringify(doc), { mode: 0o600 });
  return opts.path;
}
