// Install Hypha's CustomResourceDefinitions (deploy/crds/*.yaml) into a test
// API server and wait until each is Established and its resource is served.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KubeClient, isAlreadyExists } from '../../../src/k8s/client.ts';
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
