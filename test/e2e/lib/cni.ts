// Hypha's CNI plugin driven the way a container runtime drives it: the
// installed binary exec'd with the CNI environment and the network
// configuration (from the conflist the agent wrote) on stdin, inside the
// node's network namespace. Also a Topology pod wiring, so the harness's pods
// on a node with an agent are made by the agent through the CNI path.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Node, Pod, PodWiring, Topology } from './topology.ts';

export const CONFLIST = '05-hypha.conflist';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';

export interface InvokeOptions {
  containerId?: string;
  /** CNI_NETNS; omitted from the environment when undefined. */
  netns?: string;
  ifname?: string;
  /** CNI_ARGS as key/value pairs. */
  args?: Record<string, string>;
  /** Overrides the conflist's cniVersion. */
  cniVersion?: string;
  prevResult?: unknown;
  /** Extra top-level fields of the network configuration. */
  extra?: Record<string, unknown>;
  /** Raw stdin instead of the configuration (bad-input tests). */
  stdin?: string;
  /** Variables to leave out of the environment. */
  without?: string[];
}

export interface CniOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed (result, error or version object). */
  json: Record<string, unknown> | undefined;
  ms: number;
}

export interface CniPluginOptions {
  topo: Topology;
  node: Node;
  binDir: string;
  confDir: string;
}

export class CniPlugin {
  readonly o: CniPluginOptions;

  constructor(opts: CniPluginOptions) {
    this.o = opts;
  }

  get binary(): string {
    return path.join(this.o.binDir, 'hypha');
  }

  conflist(): { cniVersion: string; name: string; plugins: Record<string, unknown>[] } {
    return JSON.parse(readFileSync(path.join(this.o.confDir, CONFLIST), 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  }

  /** The configuration a runtime passes for the conflist's (only) plugin. */
  netConf(cniVersion?: string): Record<string, unknown> {
    const list = this.conflist();
    const plugin = list.plugins[0] ?? {};
    return { ...plugin, cniVersion: cniVersion ?? list.cniVersion, name: list.name };
  }

  async invoke(command: CniCommand, o: InvokeOptions = {}): Promise<CniOutcome> {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CNI_')) env[k] = v;
    const vars: Record<string, string | undefined> = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: o.containerId,
      CNI_NETNS: o.netns,
      CNI_IFNAME: o.ifname ?? 'eth0',
      CNI_ARGS: o.args ? Object.entries(o.args).map(([k, v]) => `${k}=${v}`).join(';') : undefined,
      CNI_PATH: this.o.binDir,
    };
    for (const [k, v] of Object.entries(vars)) if (v !== undefined && !o.without?.includes(k)) env[k] = v;
    const stdin = o.stdin ?? JSON.stringify({ ...this.netConf(o.cniVersion), ...(o.prevResult === undefined ? {} : { prevResult: o.prevResult }), ...o.extra });
    const t0 = performance.now();
    const r = await this.o.topo.exec(this.o.node, [this.binary], { input: stdin, env, allowFail: true, timeoutMs: 180_000 });
    const ms = performance.now() - t0;
    let json: Record<string, unknown> | undefined;
    try {
      json = r.stdout.trim() === '' ? undefined : (JSON.parse(r.stdout) as Record<string, unknown>);
    } catch {
      json = undefined;
    }
    return { exitCode: r.code ?? -1, stdout: r.stdout, stderr: r.stderr, json, ms };
  }
}

export class CniError extends Error {
  readonly outcome: CniOutcome;
  constructor(what: string, outcome: CniOutcome) {
    super(`${what}: exit ${outcome.exitCode}: ${outcome.stdout.trim() || outcome.stderr.trim()}`);
    this.outcome = outcome;
  }
}

/** A Topology pod wiring through the plugin: ADD on attach, DEL on detach. */
export function cniWiring(plugin: CniPlugin): PodWiring {
  const ids = new Map<string, string>();
  return {
    async attach(p) {
      const containerId = randomUUID().replace(/-/g, '');
      const r = await plugin.invoke('ADD', {
        containerId, netns: p.netnsPath, args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: p.namespace, K8S_POD_NAME: p.name, K8S_POD_INFRA_CONTAINER_ID: containerId },
      });
      if (r.exitCode !== 0 || !r.json) throw new CniError(`CNI ADD for pod ${p.name}`, r);
      const res = r.json as { interfaces: { name: string; mac: string; sandbox?: string }[]; ips: { address: string }[] };
      const host = res.interfaces.find((i) => !i.sandbox);
      const pod = res.interfaces.find((i) => i.sandbox);
      const ip = res.ips[0]?.address.split('/')[0];
      if (!host || !pod || !ip) throw new CniError(`CNI ADD for pod ${p.name} returned no interfaces or address`, r);
      ids.set(p.name, containerId);
      const shown = await plugin.o.topo.exec(p.node, ['ip', '-j', 'link', 'show', 'dev', host.name]);
      const hostIfindex = (JSON.parse(shown.stdout) as { ifindex?: number }[])[0]?.ifindex;
      return { ip, mac: pod.mac, hostIfname: host.name, hostMac: host.mac, ...(hostIfindex === undefined ? {} : { hostIfindex }) };
    },
    async detach(pod: Pod) {
      const containerId = ids.get(pod.name);
      if (!containerId) return;
      const r = await plugin.invoke('DEL', { containerId, netns: plugin.o.topo.netnsPath(pod), args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: pod.name } });
      if (r.exitCode !== 0) throw new CniError(`CNI DEL for pod ${pod.name}`, r);
      ids.delete(pod.name);
    },
  };
}
