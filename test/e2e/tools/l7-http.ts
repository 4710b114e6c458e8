// HTTP on both ends of test/e2e/l7-policy.test.ts, run inside pod netns.
//   l7-http.ts serve --port 8080,8081,9090
//     an HTTP/1.1 server on each port answering 200 `<METHOD> <url> from
//     <client address>`; prints {"ready":true}, then one line per request
//     {"req":{"port","method","url","from","probe"}} (probe: its x-probe header)
//   l7-http.ts batch '<json list of requests>'
//     each request {id, host, port, method?, path, headers?, timeoutMs?,
//     localPort?} on a connection of its own, a few at a time; prints one line
//     {"results":[{id, status, body} | {id, error}]} in the order given.
//     error: the socket's code (ECONNREFUSED, ECONNRESET, ...) or ETIMEDOUT
//     when no answer came within timeoutMs (default 3000).
import http from 'node:http';

export interface HttpProbe {
  id: string;
  host: string;
  port: number;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** The client's own port (default: the kernel's choice). */
  localPort?: number;
}

export type HttpResult = { id: string; status: number; body: string } | { id: string; error: string };

const CONCURRENCY = 8;

function once(p: HttpProbe): Promise<HttpResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: HttpResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = http.request({
      host: p.host, port: p.port, method: p.method ?? 'GET', path: p.path, agent: false, ...(p.localPort ? { localPort: p.localPort } : {}),
      headers: { 'x-probe': p.id, connection: 'close', ...p.headers },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => finish({ id: p.id, status: res.statusCode ?? 0, body }));
      res.on('error', (e: NodeJS.ErrnoException) => finish({ id: p.id, error: e.code ?? e.message }));
    });
    const timer = setTimeout(() => finish({ id: p.id, error: 'ETIMEDOUT' }), p.timeoutMs ?? 3000);
    req.on('error', (e: NodeJS.ErrnoException) => finish({ id: p.id, error: e.code ?? e.message }));
    req.end();
  });
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'serve') {
  const i = args.indexOf('--port');
  const ports = (i >= 0 ? args[i + 1] ?? '' : '8080').split(',').map(Number);
  let listening = 0;
  for (const port of ports) {
    const server = http.createServer((q, s) => {
      const from = (q.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      console.log(JSON.stringify({ req: { port, method: q.method, url: q.url, from, probe: q.headers['x-probe'] ?? null } }));
      q.resume();
      q.on('end', () => s.end(`${q.method} ${q.url} from ${from}`));
    });
    server.listen(port, '0.0.0.0', () => {
      if (++listening === ports.length) console.log(JSON.stringify({ ready: true }));
    });
  }
} else if (mode === 'batch') {
  const probes = JSON.parse(args[0] ?? '[]') as HttpProbe[];
  const results: HttpResult[] = new Array(probes.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, probes.length) }, async () => {
    while (next < probes.length) {
      const k = next++;
      results[k] = await once(probes[k]!);
    }
  }));
  console.log(JSON.stringify({ results }));
} else {
  console.error(`usage: l7-http.ts serve --port P[,P...] | batch '<json>'`);
  process.exit(2);
}
