// The agent's L7 proxy: the transparent HTTP proxy (src/l7/splice-proxy.ts:
// requests parsed and judged, answers passed on as bytes) that
// the datapath sends the flows of policy entries with http rules to, on
// 127.0.0.1:<policy.l7.proxyPort> of the node.
//  - Started with policy: the listener exists before any HyphaNetworkPolicy
//    does, so a flow is never refused for want of it once the agent runs.
//    Until it listens (and whenever the agent is down) the datapath refuses
//    the covered flows (PROXY_UNAVAILABLE): fail closed, L3/L4 unaffected.
//  - Each connection's checks come from the compile the policy maps were
//    written from (AgentPolicy.l7Flow), identities from that compile and
//    the ipcache; after a new write they are resolved again before the
//    connection's next request (a keep-alive connection follows changes).
//  - The upstream is a transparent socket from the client's address with
//    the from-proxy mark (dialTransparent): the destination's policy judges
//    the client pod, and the datapath does not redirect it again.
//  - The policy routing that delivers marked packets to the listener
//    (ensureProxyRouting) is put in place at start and left on stop: a new
//    agent finds it, and without a listener it only makes refused flows local.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

import type { Rtnl } from '../datapath/rtnl.ts';
import type { AccessEvent } from '../l7/proxy.ts';
import { L7SpliceProxy } from '../l7/splice-proxy.ts';
import { dialTransparent, ensureProxyRouting, makeTransparent } from '../l7/transparent.ts';
import type { FlowChecks } from '../l7/types.ts';

export const L7_PROXY_HOST = '127.0.0.1';
const LISTEN_RETRY_MS = 1000;

export interface AgentL7Options {
  port: number;
  rtnl: Rtnl;
  log: Logger;
  registry: Registry;
  /** The checks of a connection (AgentPolicy.l7Flow). */
  flow: (src: { ip: string; port: number }, dst: { ip: string; port: number }) => FlowChecks;
  /** Changes when flow() may answer differently (AgentPolicy.writes). */
  generation: () => number;
  onAccess?: (e: AccessEvent) => void;
}

export class AgentL7 {
  readonly #o: AgentL7Options;
  readonly #log: Logger;
  readonly proxy: L7SpliceProxy;
  #listening = false;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  #lastError: string | null = null;

  constructor(o: AgentL7Options) {
    this.#o = o;
    this.#log = o.log.child({ component: 'l7-proxy' });
    this.proxy = new L7SpliceProxy({
      log: this.#log, registry: o.registry,
      resolve: (s: Socket) => {
        if (!s.remoteAddress || !s.localAddress) return undefined;
        return o.flow({ ip: stripV4Mapped(s.remoteAddress), port: s.remotePort ?? 0 }, { ip: stripV4Mapped(s.localAddress), port: s.localPort ?? 0 });
      },
      generation: o.generation,
      connectUpstream: (f) => dialTransparent({ ip: f.src.ip }, { ip: f.dst.ip, port: f.dst.port }),
      ...(o.onAccess ? { onAccess: o.onAccess } : {}),
    });
  }

  get listening(): boolean {
    return this.#listening;
  }

  status(): { listening: boolean; address: string; lastError: string | null } {
    return { listening: this.#listening, address: `${L7_PROXY_HOST}:${this.#o.port}`, lastError: this.#lastError };
  }

  /** Routing, then the listener; a listener that cannot be opened (the port
   *  taken: an old agent still closing) is tried again every second. */
  async start(): Promise<void> {
    await ensureProxyRouting(this.#o.rtnl);
    await this.#listen();
  }

  async #listen(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.proxy.listen(this.#o.port, L7_PROXY_HOST);
      makeTransparent(this.proxy.fd());
      this.#listening = true;
      if (this.#lastError) this.#log.info({ port: this.#o.port }, 'l7 proxy listening after failed attempts');
      else this.#log.info({ port: this.#o.port }, 'l7 proxy listening');
      this.#lastError = null;
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.#lastError) this.#log.error({ port: this.#o.port, err: msg, retryMs: LISTEN_RETRY_MS }, 'l7 proxy cannot listen: flows with http rules are refused until it does; retrying');
      this.#lastError = msg;
      this.#retry = setTimeout(() => void this.#listen(), LISTEN_RETRY_MS);
      this.#retry.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    if (this.#listening) await this.proxy.close();
    this.#listening = false;
  }
}

function stripV4Mapped(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
