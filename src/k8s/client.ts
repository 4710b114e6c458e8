// The Kubernetes API client of the agent and the operator: GET (list),
// streaming watch, and the writes (create, replace, merge and JSON patch,
// delete, the status subresource) over HTTPS, with the credentials of a
// kubeconfig or of the pod's service account.
//
// Hand-written on purpose, where @kubernetes/client-node would do: importing
// that library's KubeConfig loads every generated API model (measured: +85 MB
// RSS and 350 ms at start), and its lists deserialize each object into model
// classes. The agent needs three resources listed and watched and must stay
// within its memory budget on every node, so it speaks plain JSON over
// keep-alive connections, and its start-up lists of Services and
// EndpointSlices in protobuf (protobuf.ts: a fifth of the API server's CPU).
// Tests and tools keep using @kubernetes/client-node.
// Supported credentials: client certificates, bearer tokens (inline or a
// file, re-read for rotation), in-cluster service accounts. Exec plugins and
// OIDC are not (a node agent does not use them).
//
// Writes are optimistic: replace needs the object's resourceVersion, patches
// and deletes take one as a precondition, and a stale writer gets 409
// Conflict. Classify failures with isNotFound, isConflict, isAlreadyExists
// and isInvalid (HTTP status and the Status reason, never the message text).
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent, request } from 'node:https';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { decodeObject, PROTOBUF_TYPE, type Schema, STATUS } from './protobuf.ts';

export class KubeConfigError extends Error {
  readonly code = 'EKUBECONFIG';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeConfigError';
  }
}

/** The Status object the API server sends with a failure. */
export interface KubeStatus {
  code?: number;
  /** NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Gone, ... */
  reason?: string;
  message?: string;
  details?: { name?: string; kind?: string; causes?: { reason?: string; message?: string; field?: string }[] };
}

/** An API request that failed: HTTP status and the API's Status object when it sent one. */
export class KubeApiError extends Error {
  readonly code = 'EKUBEAPI';
  readonly statusCode: number;
  readonly status: KubeStatus | undefined;
  constructor(statusCode: number, message: string, status?: KubeStatus) {
    super(message);
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.status = status;
  }

  /** The Status reason ('' when the server sent none). */
  get reason(): string {
    return this.status?.reason ?? '';
  }
}

/** 404: the object (or the resource type) does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && (err.statusCode === 404 || err.reason === 'NotFound');
}

/** 409 AlreadyExists: a create found an object of that name. */
export function isAlreadyExists(err: unknown): boolean {
  return err instanceof KubeApiError && err.reason === 'AlreadyExists';
}

/** 409 Conflict: a resourceVersion (or uid) precondition failed; someone else wrote first. */
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && (err.reason === 'Conflict' || (err.statusCode === 409 && err.reason !== 'AlreadyExists'));
}

/** 422 Invalid: the object failed validation (Status.details.causes names the fields). */
export function isInvalid(err: unknown): boolean {
  return err instanceof KubeApiError && (err.statusCode === 422 || err.reason === 'Invalid');
}

export interface KubeCredentials {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  tokenFile?: string;
  insecureSkipTlsVerify?: boolean;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

type Obj = Record<string, unknown>;

function pick(list: unknown, name: unknown, field: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined;
  const entry = list.find((e) => (e as Obj)?.name === name) as Obj | undefined;
  if (!entry) return undefined;
  const value = entry[field];
  return typeof value === 'object' && value !== null ? (value as Obj) : {};
}

function fileOrData(file: string, base: string, obj: Obj, fileKey: string, dataKey: string): Buffer | undefined {
  if (typeof obj[dataKey] === 'string') return Buffer.from(obj[dataKey] as string, 'base64');
  if (typeof obj[fileKey] !== 'string') return undefined;
  const target = path.resolve(base, obj[fileKey] as string);
  try {
    return readFileSync(target);
  } catch (err) {
    throw new KubeConfigError(`kubeconfig ${file}: ${fileKey} ${JSON.stringify(obj[fileKey])} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** The current context's cluster and user of a kubeconfig file. */
export function credentialsFromKubeconfig(file: string): KubeCredentials {
  let doc: Obj;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')) as Obj;
  } catch (err) {
    throw new KubeConfigError(`kubeconfig ${file}: cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new KubeConfigError(`kubeconfig ${file}: is not a kubeconfig (a YAML mapping with clusters, users and contexts)`);
  const base = path.dirname(path.resolve(file));
  const ctxName = doc['current-context'];
  const ctx = pick(doc.contexts, ctxName, 'context');
  if (!ctx) throw new KubeConfigError(`kubeconfig ${file}: current-context ${JSON.stringify(ctxName)} is not among its contexts`);
  const cluster = pick(doc.clusters, ctx.cluster, 'cluster');
  if (!cluster) throw new KubeConfigError(`kubeconfig ${file}: cluster ${JSON.stringify(ctx.cluster)} of context ${JSON.stringify(ctxName)} is not among its clusters`);
  if (typeof cluster.server !== 'string') throw new KubeConfigError(`kubeconfig ${file}: cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const user = ctx.user === undefined || ctx.user === '' ? {} : pick(doc.users, ctx.user, 'user');
  if (!user) throw new KubeConfigError(`kubeconfig ${file}: user ${JSON.stringify(ctx.user)} of context ${JSON.stringify(ctxName)} is not among its users`);
  if (user.exec || user['auth-provider']) {
    throw new KubeConfigError(`kubeconfig ${file}: user ${JSON.stringify(ctx.user)} uses an exec or auth-provider plugin, which Hypha does not run; use a certificate, a token or the pod's service account`);
  }
  return {
    server: cluster.server,
    ca: fileOrData(file, base, cluster, 'certificate-authority', 'certificate-authority-data'),
    cert: fileOrData(file, base, user, 'client-certificate', 'client-certificate-data'),
    key: fileOrData(file, base, user, 'client-key', 'client-key-data'),
    token: typeof user.token === 'string' ? user.token : undefined,
    tokenFile: typeof user.tokenFile === 'string' ? path.resolve(base, user.tokenFile) : undefined,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
  };
}

/** The pod's service account (the agent as a DaemonSet). */
export function credentialsInCluster(): KubeCredentials {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new KubeConfigError('not running in a cluster (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig given');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(`${SA_DIR}/ca.crt`),
    tokenFile: `${SA_DIR}/token`,
  };
}

export interface WatchHandle {
  abort(): void;
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface ClientOptions {
  /** User-Agent of every request (default 'hypha-agent'). */
  userAgent?: string;
  /** fieldManager of every write (managedFields); default the user agent. */
  fieldManager?: string;
}

export interface WriteOptions {
  /** Write a subresource of the object, e.g. 'status'. */
  subresource?: string;
  /** Validate and answer without persisting. */
  dryRun?: boolean;
  timeoutMs?: number;
}

export interface PatchOptions extends WriteOptions {
  /** Precondition: fail with 409 Conflict unless the object is at this resourceVersion. */
  resourceVersion?: string;
}

export interface DeleteOptions {
  /** Fail with 409 Conflict unless the object still has this uid / resourceVersion. */
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
  gracePeriodSeconds?: number;
  dryRun?: boolean;
  timeoutMs?: number;
}

/** One operation of an RFC 6902 JSON patch. */
export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

const JSON_TYPE = 'application/json';
const isProtobuf = (res: IncomingMessage): boolean => (res.headers['content-type'] ?? '').startsWith(PROTOBUF_TYPE);
const MERGE_PATCH_TYPE = 'application/merge-patch+json';
const JSON_PATCH_TYPE = 'application/json-patch+json';

export class KubeClient {
  readonly server: URL;
  readonly #creds: KubeCredentials;
  readonly #agent: Agent;
  /** Watches hold their connection for minutes: a pool of their own, so they
   *  never take the sockets requests wait for (with maxSockets watches, every
   *  request would queue forever). */
  readonly #watchAgent: Agent;
  readonly #userAgent: string;
  readonly #fieldManager: string;

  constructor(creds: KubeCredentials, opts: ClientOptions = {}) {
    this.#creds = creds;
    this.server = new URL(creds.server);
    this.#userAgent = opts.userAgent ?? 'hypha-agent';
    this.#fieldManager = opts.fieldManager ?? this.#userAgent;
    const tls = {
      ...(creds.ca ? { ca: creds.ca } : {}),
      ...(creds.cert ? { cert: creds.cert } : {}),
      ...(creds.key ? { key: creds.key } : {}),
      rejectUnauthorized: !creds.insecureSkipTlsVerify,
    };
    this.#agent = new Agent({ keepAlive: true, maxSockets: 8, ...tls });
    this.#watchAgent = new Agent({ keepAlive: true, ...tls });
  }

  /** From a kubeconfig file, or the pod's service account when `file` is undefined. */
  static fromKubeconfig(file?: string, opts: ClientOptions = {}): KubeClient {
    return new KubeClient(file ? credentialsFromKubeconfig(file) : credentialsInCluster(), opts);
  }

  #headers(): Record<string, string> {
    const h: Record<string, string> = { accept: JSON_TYPE, 'user-agent': this.#userAgent };
    // A token file is re-read on each request: service-account tokens rotate.
    const token = this.#creds.tokenFile ? readFileSync(this.#creds.tokenFile, 'utf8').trim() : this.#creds.token;
    if (token) h.authorization = `Bearer ${token}`;
    return h;
  }

  #url(pathname: string, query: Query): URL {
    const u = new URL(pathname, this.server);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
    return u;
  }

  static #apiError(res: IncomingMessage, body: Buffer): KubeApiError {
    let status: KubeStatus | undefined;
    const protobuf = isProtobuf(res);
    try {
      const parsed = protobuf ? decodeObject(body, STATUS) : JSON.parse(body.toString('utf8')) as unknown;
      status = typeof parsed === 'object' && parsed !== null ? (parsed as KubeStatus) : undefined;
    } catch {
      status = undefined;
    }
    const text = status?.message ?? (protobuf ? `(${body.length} bytes of protobuf)` : body.toString('utf8', 0, 200));
    return new KubeApiError(res.statusCode ?? 0, `${res.statusCode} ${status?.reason ?? res.statusMessage ?? ''}: ${text}`, status);
  }

  /** One request; any status outside 2xx is a KubeApiError. The answer is
   *  JSON, or with `protobuf` (a schema, protobuf.ts) whichever of protobuf
   *  and JSON the server chose to send. */
  #send<T>(method: string, url: URL, body: { type: string; data: unknown } | undefined, timeoutMs: number, protobuf?: Schema): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body.data));
    const headers = this.#headers();
    if (protobuf) headers.accept = `${PROTOBUF_TYPE}, ${JSON_TYPE}`;
    if (payload && body) {
      headers['content-type'] = body.type;
      headers['content-length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = request(url, { method, agent: this.#agent, headers, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const data = Buffer.concat(chunks);
          chunks.length = 0;
          const code = res.statusCode ?? 0;
          if (code < 200 || code > 299) return reject(KubeClient.#apiError(res, data));
          const pb = protobuf !== undefined && isProtobuf(res);
          try {
            resolve((pb ? decodeObject(data, protobuf) : JSON.parse(data.toString('utf8'))) as T);
          } catch (err) {
            reject(new KubeApiError(code, `response to ${method} ${url.pathname} is not ${pb ? 'a protobuf message it can read' : 'JSON'}: ${(err as Error).message}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname} timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  #writeUrl(pathname: string, opts: WriteOptions, withManager = true): URL {
    const p = opts.subresource ? `${pathname.replace(/\/+$/, '')}/${opts.subresource}` : pathname;
    return this.#url(p, { ...(withManager ? { fieldManager: this.#fieldManager } : {}), dryRun: opts.dryRun ? 'All' : undefined });
  }

  /** GET a JSON document (an object or a list page). */
  get<T>(pathname: string, query: Query = {}, timeoutMs = 60_000): Promise<T> {
    return this.#send<T>('GET', this.#url(pathname, query), undefined, timeoutMs);
  }

  /** GET an object or a list page in protobuf where the server can send it
   *  (built-in kinds; not custom resources, which come back as JSON), read
   *  by `schema` into the shape of its JSON encoding (the schema's fields only). */
  getProtobuf<T>(schema: Schema, pathname: string, query: Query = {}, timeoutMs = 60_000): Promise<T> {
    return this.#send<T>('GET', this.#url(pathname, query), undefined, timeoutMs, schema);
  }

  /** POST an object to its collection (e.g. '/api/v1/namespaces/default/configmaps'). */
  create<T>(collectionPath: string, body: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.#send<T>('POST', this.#writeUrl(collectionPath, opts), { type: JSON_TYPE, data: body }, opts.timeoutMs ?? 30_000);
  }

  /** PUT the whole object; its metadata.resourceVersion is the precondition
   *  (required: an unconditional replace would overwrite what others wrote). */
  replace<T>(pathname: string, body: unknown, opts: WriteOptions = {}): Promise<T> {
    if (!(body as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion) {
      return Promise.reject(new TypeError(`replace ${pathname}: metadata.resourceVersion is required (read the object first)`));
    }
    return this.#send<T>('PUT', this.#writeUrl(pathname, opts), { type: JSON_TYPE, data: body }, opts.timeoutMs ?? 30_000);
  }

  /** PUT the object's status subresource (the rest of the body is ignored by the server). */
  replaceStatus<T>(pathname: string, body: unknown, opts: WriteOptions = {}): Promise<T> {
    return this.replace<T>(pathname, body, { ...opts, subresource: 'status' });
  }

  /** RFC 7386 JSON merge patch (null deletes a field; lists are replaced whole). */
  mergePatch<T>(pathname: string, patch: Record<string, unknown>, opts: PatchOptions = {}): Promise<T> {
    let data = patch;
    if (opts.resourceVersion !== undefined) {
      const meta = (patch.metadata ?? {}) as Record<string, unknown>;
      data = { ...patch, metadata: { ...meta, resourceVersion: opts.resourceVersion } };
    }
    return this.#send<T>('PATCH', this.#writeUrl(pathname, opts), { type: MERGE_PATCH_TYPE, data }, opts.timeoutMs ?? 30_000);
  }

  /** Merge patch of the status subresource. */
  mergePatchStatus<T>(pathname: string, patch: Record<string, unknown>, opts: PatchOptions = {}): Promise<T> {
    return this.mergePatch<T>(pathname, patch, { ...opts, subresource: 'status' });
  }

  /** RFC 6902 JSON patch. With a resourceVersion precondition, a stale object
   *  fails with 409 Conflict (a 'test' op would fail with 422 instead). */
  jsonPatch<T>(pathname: string, ops: readonly JsonPatchOperation[], opts: PatchOptions = {}): Promise<T> {
    const data = opts.resourceVersion === undefined ? ops : [{ op: 'replace', path: '/metadata/resourceVersion', value: opts.resourceVersion }, ...ops];
    return this.#send<T>('PATCH', this.#writeUrl(pathname, opts), { type: JSON_PATCH_TYPE, data }, opts.timeoutMs ?? 30_000);
  }

  /** DELETE an object. Resolves with what the server answers: the object
   *  (when finalizers or graceful deletion keep it a while) or a Status. */
  delete<T = unknown>(pathname: string, opts: DeleteOptions = {}): Promise<T> {
    const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions' };
    if (opts.preconditions) body.preconditions = opts.preconditions;
    if (opts.propagationPolicy) body.propagationPolicy = opts.propagationPolicy;
    if (opts.gracePeriodSeconds !== undefined) body.gracePeriodSeconds = opts.gracePeriodSeconds;
    if (opts.dryRun) body.dryRun = ['All'];
    return this.#send<T>('DELETE', this.#url(pathname, {}), { type: JSON_TYPE, data: body }, opts.timeoutMs ?? 30_000);
  }

  /** Stream watch events (one JSON object per line) until the server ends
   *  the watch, an error occurs, or abort() is called; done() is called
   *  exactly once (with undefined after abort() or a clean end). */
  watch(
    pathname: string,
    query: Query,
    onEvent: (type: string, obj: unknown) => void,
    done: (err?: unknown) => void,
  ): WatchHandle {
    const url = this.#url(pathname, { ...query, watch: true });
    let finished = false;
    const finish = (err?: unknown): void => {
      if (finished) return;
      finished = true;
      done(err);
    };
    const req = request(url, { agent: this.#watchAgent, headers: this.#headers() }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish(KubeClient.#apiError(res, Buffer.concat(chunks))));
        res.on('error', finish);
        return;
      }
      let partial = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        partial += chunk;
        let nl: number;
        while ((nl = partial.indexOf('\n')) >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          if (line.trim() === '') continue;
          let ev: { type?: string; object?: unknown };
          try {
            ev = JSON.parse(line) as typeof ev;
          } catch {
            continue; // a line that is not JSON carries nothing we can use
          }
          if (finished) return;
          onEvent(ev.type ?? '', ev.object);
        }
      });
      res.on('end', () => finish());
      res.on('error', (err) => finish(err));
      res.on('aborted', () => finish(new Error('watch connection aborted')));
    });
    req.on('error', (err) => finish(err));
    req.end();
    return {
      abort: () => {
        if (finished) return;
        finished = true;
        req.destroy();
        done(undefined);
      },
    };
  }

  close(): void {
    this.#agent.destroy();
    this.#watchAgent.destroy();
  }
}
