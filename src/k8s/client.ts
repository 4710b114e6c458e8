// The agent's Kubernetes API client: GET (list) and streaming watch over
// HTTPS, with the credentials of a kubeconfig or of the pod's service account.
//
// Hand-written on purpose, where @kubernetes/client-node would do: importing
// that library's KubeConfig loads every generated API model (measured: +85 MB
// RSS and 350 ms at start), and its lists deserialize each object into model
// classes. The agent needs three resources listed and watched and must stay
// within its memory budget on every node, so it speaks plain JSON over
// keep-alive connections. Tests and tools keep using @kubernetes/client-node.
// Supported credentials: client certificates, bearer tokens (inline or a
// file, re-read for rotation), in-cluster service accounts. Exec plugins and
// OIDC are not (a node agent does not use them).
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent, request } from 'node:https';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

export class KubeConfigError extends Error {
  readonly code = 'EKUBECONFIG';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeConfigError';
  }
}

/** An API request that failed: HTTP status and the API's Status object when it sent one. */
export class KubeApiError extends Error {
  readonly code = 'EKUBEAPI';
  readonly statusCode: number;
  readonly status: { code?: number; reason?: string; message?: string } | undefined;
  constructor(statusCode: number, message: string, status?: { code?: number; reason?: string; message?: string }) {
    super(message);
    this.name = 'KubeApiError';
    this.statusCode = statusCode;
    this.status = status;
  }
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
  return entry?.[field] as Obj | undefined;
}

function fileOrData(base: string, obj: Obj, fileKey: string, dataKey: string): Buffer | undefined {
  if (typeof obj[dataKey] === 'string') return Buffer.from(obj[dataKey] as string, 'base64');
  if (typeof obj[fileKey] === 'string') return readFileSync(path.resolve(base, obj[fileKey] as string));
  return undefined;
}

/** The current context's cluster and user of a kubeconfig file. */
export function credentialsFromKubeconfig(file: string): KubeCredentials {
  let doc: Obj;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')) as Obj;
  } catch (err) {
    throw new KubeConfigError(`kubeconfig ${file}: cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const base = path.dirname(path.resolve(file));
  const ctxName = doc['current-context'];
  const ctx = pick(doc.contexts, ctxName, 'context');
  if (!ctx) throw new KubeConfigError(`kubeconfig ${file}: current-context ${JSON.stringify(ctxName)} is not among its contexts`);
  const cluster = pick(doc.clusters, ctx.cluster, 'cluster');
  if (!cluster || typeof cluster.server !== 'string') throw new KubeConfigError(`kubeconfig ${file}: cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const user = pick(doc.users, ctx.user, 'user') ?? {};
  if (user.exec || user['auth-provider']) {
    throw new KubeConfigError(`kubeconfig ${file}: user ${JSON.stringify(ctx.user)} uses an exec or auth-provider plugin, which the agent does not run; use a certificate, a token or the pod's service account`);
  }
  return {
    server: cluster.server,
    ca: fileOrData(base, cluster, 'certificate-authority', 'certificate-authority-data'),
    cert: fileOrData(base, user, 'client-certificate', 'client-certificate-data'),
    key: fileOrData(base, user, 'client-key', 'client-key-data'),
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

export class KubeClient {
  readonly server: URL;
  readonly #creds: KubeCredentials;
  readonly #agent: Agent;

  constructor(creds: KubeCredentials) {
    this.#creds = creds;
    this.server = new URL(creds.server);
    this.#agent = new Agent({
      keepAlive: true,
      maxSockets: 8,
      ...(creds.ca ? { ca: creds.ca } : {}),
      ...(creds.cert ? { cert: creds.cert } : {}),
      ...(creds.key ? { key: creds.key } : {}),
      rejectUnauthorized: !creds.insecureSkipTlsVerify,
    });
  }

  static fromKubeconfig(file?: string): KubeClient {
    return new KubeClient(file ? credentialsFromKubeconfig(file) : credentialsInCluster());
  }

  #headers(): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', 'user-agent': 'hypha-agent' };
    // A token file is re-read on each request: service-account tokens rotate.
    const token = this.#creds.tokenFile ? readFileSync(this.#creds.tokenFile, 'utf8').trim() : this.#creds.token;
    if (token) h.authorization = `Bearer ${token}`;
    return h;
  }

  #url(pathname: string, query: Record<string, string | number | boolean | undefined>): URL {
    const u = new URL(pathname, this.server);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
    return u;
  }

  static #apiError(res: IncomingMessage, body: string): KubeApiError {
    let status: { code?: number; reason?: string; message?: string } | undefined;
    try {
      status = JSON.parse(body) as typeof status;
    } catch {
      status = undefined;
    }
    return new KubeApiError(res.statusCode ?? 0, `${res.statusCode} ${status?.reason ?? res.statusMessage ?? ''}: ${status?.message ?? body.slice(0, 200)}`, status);
  }

  /** GET a JSON document (a list page). */
  get<T>(pathname: string, query: Record<string, string | number | boolean | undefined> = {}, timeoutMs = 60_000): Promise<T> {
    const url = this.#url(pathname, query);
    return new Promise((resolve, reject) => {
      const req = request(url, { agent: this.#agent, headers: this.#headers(), timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) return reject(KubeClient.#apiError(res, body));
          try {
            resolve(JSON.parse(body) as T);
          } catch (err) {
            reject(new KubeApiError(200, `response to GET ${url.pathname} is not JSON: ${(err as Error).message}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${url.pathname} timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Stream watch events (one JSON object per line) until the server ends
   *  the watch, an error occurs, or abort() is called; done() is called
   *  exactly once (with undefined after abort() or a clean end). */
  watch(
    pathname: string,
    query: Record<string, string | number | boolean | undefined>,
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
    const req = request(url, { agent: this.#agent, headers: this.#headers() }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish(KubeClient.#apiError(res, Buffer.concat(chunks).toString('utf8'))));
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
  }
}
