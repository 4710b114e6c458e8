// Install Hypha's CustomResourceDefinitions (deploy/crds/*.yaml) into a test
// API server and wait until each is Established and its resource is served.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KubeApiError, KubeClient, isAlreadyExists } from '../../../src/k8s/client.ts';
import { REPO_ROOT } from './apiserver.ts';

export const CRD_DIR = path.join(REPO_ROOT, 'deploy/crds');
const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

interface Crd {
  metadata: { name: string; resourceVersion?: string };
  spec: { group: string; names: { plural: string }; versions: { name: string; served?: boolean }[] };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

/** Every CRD under deploy/crds, parsed. */
export function crdManifests(dir = CRD_DIR): Crd[] {
  return readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().flatMap((f) =>
    parseAllDocuments(readFileSync(path.join(dir, f), 'utf8')).map((d) => d.toJS() as Crd).filter((d) => d?.metadata?.name));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Create (or replace) the CRDs, then wait until each is Established with its
 * names accepted and its first served version answers a list. Returns their names.
 */
export async function installCrds(kubeconfig: string, opts: { crds?: Crd[]; timeoutMs?: number } = {}): Promise<string[]> {
  const client = KubeClient.fromKubeconfig(kubeconfig, { userAgent: 'hypha-e2e' });
  const crds = opts.crds ?? crdManifests();
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  try {
    for (const crd of crds) {
      try {
        await client.create(CRDS, crd);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        const cur = await client.get<Crd>(`${CRDS}/${crd.metadata.name}`);
        await client.replace(`${CRDS}/${crd.metadata.name}`, { ...crd, metadata: { ...crd.metadata, resourceVersion: cur.metadata.resourceVersion } });
      }
    }
    for (const crd of crds) {
      let last = 'not read yet';
      for (;;) {
        const cur = await client.get<Crd>(`${CRDS}/${crd.metadata.name}`);
        const cond = (t: string) => cur.status?.conditions?.find((c) => c.type === t);
        last = JSON.stringify(cur.status?.conditions ?? []);
        if (cond('NamesAccepted')?.status === 'False') {
          throw new Error(`CRD ${crd.metadata.name}: names not accepted: ${cond('NamesAccepted')?.message ?? ''}`);
        }
        if (cond('Established')?.status === 'True') {
          const version = crd.spec.versions.find((v) => v.served !== false)?.name;
          const served = await client.get(`/apis/${crd.spec.group}/${version}/${crd.spec.names.plural}`, { limit: 1 }).then(() => true, (err: Error) => {
            last = `established, but listing fails: ${err.message}`;
            return false;
          });
          if (served) break;
        }
        if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata.name} not established in time; last: ${last}`);
        await sleep(100);
      }
    }
    return crds.map((c) => c.metadata.name);
  } finally {
    client.close();
  }
}

/** deploy/hyphaidentities-policy.yaml: HyphaIdentity objects refuse every update. */
export const IDENTITY_POLICY = path.join(REPO_ROOT, 'deploy/hyphaidentities-policy.yaml');

/**
 * Install the ValidatingAdmissionPolicy (and its binding) that makes
 * HyphaIdentity objects immutable, and wait until it is enforced: a probe
 * identity's label change is refused (the API server compiles and starts a
 * policy a moment after it is created). The CRDs must be installed first.
 */
export async function installIdentityPolicy(kubeconfig: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const client = KubeClient.fromKubeconfig(kubeconfig, { userAgent: 'hypha-e2e' });
  const paths: Record<string, string> = {
    ValidatingAdmissionPolicy: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
    ValidatingAdmissionPolicyBinding: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings',
  };
  const probe = '/apis/hypha.dev/v1alpha1/hyphaidentities/65535';
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  try {
    for (const doc of parseAllDocuments(readFileSync(IDENTITY_POLICY, 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string } })) {
      const collection = paths[doc.kind];
      if (!collection) throw new Error(`${IDENTITY_POLICY}: unexpected kind ${doc.kind}`);
      try {
        await client.create(collection, doc);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
    }
    await client.create('/apis/hypha.dev/v1alpha1/hyphaidentities', {
      apiVersion: 'hypha.dev/v1alpha1', kind: 'HyphaIdentity', metadata: { name: '65535' }, spec: { namespace: 'hypha-policy-probe', podLabels: {}, namespaceLabels: {} },
    }).catch((err: unknown) => {
      if (!isAlreadyExists(err)) throw err;
    });
    let n = 0;
    for (;;) {
      const refused = await client.mergePatch(probe, { metadata: { labels: { probe: String(n++) } } }).then(() => false, (err: unknown) => {
        if (err instanceof KubeApiError && (err.statusCode === 403 || err.statusCode === 422)) return true;
        throw err;
      });
      if (refused) break;
      if (Date.now() > deadline) throw new Error('the HyphaIdentity update policy is not enforced in time');
      await sleep(200);
    }
    await client.delete(probe);
  } finally {
    client.close();
  }
}
