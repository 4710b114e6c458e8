// The allocator's store over the API client (src/k8s/client.ts): HyphaIdentity
// objects, read with consistent LISTs (no resourceVersion: the API server
// answers at etcd's current revision), created by name, deleted with a uid
// precondition. Objects that fail validation are reported once and left out.
import type { Logger } from 'pino';
import { type KubeClient, isAlreadyExists, isNotFound } from '../k8s/client.ts';
import {
  HYPHAIDENTITIES_PATH, type HyphaIdentityObject, LABELS_KEY_LABEL, type StoredIdentity, hyphaIdentityBody, hyphaIdentityPath, identityIdOfName, normalizeHyphaIdentity,
} from '../k8s/hyphaidentity.ts';
import type { ListPage } from '../k8s/informer.ts';
import type { IdentityStore } from './allocator.ts';
import type { LabelSet } from './labels.ts';

export class KubeIdentityStore implements IdentityStore<StoredIdentity> {
  readonly #client: KubeClient;
  readonly #log: Logger | undefined;
  readonly #reported = new Set<string>();

  constructor(client: KubeClient, log?: Logger) {
    this.#client = client;
    this.#log = log;
  }

  #valid(items: readonly unknown[]): StoredIdentity[] {
    const out: StoredIdentity[] = [];
    for (const raw of items) {
      const n = normalizeHyphaIdentity(raw);
      if (n.value) {
        out.push(n.value);
        continue;
      }
      for (const p of n.problems) {
        if (this.#reported.has(p.message)) continue;
        this.#reported.add(p.message);
        this.#log?.warn({ kind: 'HyphaIdentity', field: p.field, reason: p.message }, 'identity object refused');
      }
    }
    return out;
  }

  async listByKey(key: string): Promise<StoredIdentity[]> {
    const items: unknown[] = [];
    let cont: string | undefined;
    do {
      const page = await this.#client.get<ListPage<unknown>>(HYPHAIDENTITIES_PATH, { labelSelector: `${LABELS_KEY_LABEL}=${key}`, limit: 100, continue: cont });
      items.push(...page.items);
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return this.#valid(items);
  }

  async create(id: number, set: LabelSet): Promise<StoredIdentity | 'exists'> {
    let obj: HyphaIdentityObject;
    try {
      obj = await this.#client.create<HyphaIdentityObject>(HYPHAIDENTITIES_PATH, hyphaIdentityBody(id, set));
    } catch (err) {
      if (isAlreadyExists(err)) return 'exists';
      throw err;
    }
    const n = normalizeHyphaIdentity(obj);
    if (!n.value) throw new Error(`the API server stored HyphaIdentity ${id} as something Hypha refuses: ${n.problems.map((p) => p.message).join('; ')}`);
    return n.value;
  }

  async delete(identity: StoredIdentity): Promise<void> {
    try {
      await this.#client.delete(hyphaIdentityPath(identity.id), { preconditions: { uid: identity.uid } });
    } catch (err) {
      // Gone already, or the name now belongs to another object (uid precondition: 409).
      if (isNotFound(err)) return;
      throw err;
    }
  }

  async listIds(): Promise<Set<number>> {
    const ids = new Set<number>();
    let cont: string | undefined;
    do {
      const page = await this.#client.get<ListPage<{ metadata?: { name?: string } }>>(HYPHAIDENTITIES_PATH, { limit: 500, continue: cont });
      for (const o of page.items) {
        const id = identityIdOfName(o.metadata?.name ?? '');
        if (id !== undefined) ids.add(id);
      }
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return ids;
  }
}
