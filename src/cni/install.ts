// Installing the CNI plugin on a node: the shim binary into the runtime's
// plugin directory and the network configuration list into its conf dir, each
// written atomically (a temporary file in the same directory, renamed over the
// old one), so a runtime never execs a half-copied binary or reads a half
// written conflist. The agent installs once it is ready to serve ADDs and
// uninstalls when Hypha is being removed (not on a restart: pods still need
// DEL, which works with the agent down through the DEL queue).
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DEL_QUEUE_DIR } from './del-queue.ts';
import { DEFAULT_CNI_SOCKET } from './protocol.ts';
import { CNI_VERSIONS, LATEST_CNI_VERSION } from './spec.ts';

export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const CONFLIST_NAME = '05-hypha.conflist';
/** The file name runtimes exec (the conflist's plugin type). */
export const PLUGIN_TYPE = 'hypha';
export const NETWORK_NAME = 'hypha';
/**
 * The reference portmap plugin (hostPort), chained after Hypha's when it sits
 * next to the shim (Hypha's image ships it: hack/cni-plugins) and so gets
 * installed in binDir under this name, never over a node's own portmap.
 */
export const PORTMAP_TYPE = 'hypha-portmap';
/** Where `make build` puts the shim, relative to the checkout (src/cni/cni.mk). */
const SHIM_IN_TREE = 'src/cni/build/hypha-cni';

/**
 * The built shim: src/cni/build/hypha-cni of the checkout this module is in
 * (found by walking up, so it works from src/ and from the stripped .cache/js
 * tree alike). Undefined when it has not been built.
 */
export function findBuiltShim(from: string = path.dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, SHIM_IN_TREE);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

export interface ConflistOptions {
  /** Chain the portmap plugin (hostPort) after Hypha's. */
  portmap?: boolean;
  /** The agent's CNI socket (default /var/run/hypha/cni.sock). */
  agentSocket?: string;
  /** The shim's DEL queue (default /var/lib/hypha/cni-del-queue). */
  delQueueDir?: string;
  /** How long the shim waits for the agent's answer (shim default 120 s when unset). */
  agentTimeoutSeconds?: number;
}

export interface InstallOptions extends ConflistOptions {
  /** The shim to install (default: findBuiltShim()). */
  shimPath?: string;
  /** Default /opt/cni/bin. */
  binDir?: string;
  /** Default /etc/cni/net.d. */
  confDir?: string;
}

export interface Installed {
  /** The installed binary (binDir/hypha). */
  binary: string;
  /** The written conflist (confDir/05-hypha.conflist). */
  conflist: string;
  /** False when the installed binary already had the same content. */
  binaryChanged: boolean;
}

/** The network configuration list Hypha installs. */
export function buildConflist(opts: ConflistOptions = {}): Record<string, unknown> {
  const plugin: Record<string, unknown> = {
    type: PLUGIN_TYPE,
    agentSocket: opts.agentSocket ?? DEFAULT_CNI_SOCKET,
    delQueueDir: opts.delQueueDir ?? DEFAULT_DEL_QUEUE_DIR,
  };
  if (opts.agentTimeoutSeconds !== undefined) plugin.agentTimeoutSeconds = opts.agentTimeoutSeconds;
  const plugins: Record<string, unknown>[] = [plugin];
  if (opts.portmap) plugins.push({ type: PORTMAP_TYPE, capabilities: { portMappings: true }, snat: true });
  return { cniVersion: LATEST_CNI_VERSION, cniVersions: [...CNI_VERSIONS], name: NETWORK_NAME, plugins };
}

const tmpName = (target: string): string => path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);

async function fsyncPath(p: string, flags = 'r'): Promise<void> {
  const fh = await open(p, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write `data` to `target` through a temporary file in the same directory, fsynced, renamed, directory fsynced. */
export async function writeFileAtomic(target: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = tmpName(target);
  try {
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(path.dirname(target));
}

async function sameContent(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([readFile(a), readFile(b)]);
    return x.equals(y);
  } catch {
    return false;
  }
}

/**
 * Copy the shim to binDir/hypha (0755, atomically; skipped when identical).
 * The DaemonSet's init container does this alone (`hypha cni install-binary`),
 * so DELs work from the start even before the agent is ready.
 */
export async function installShim(opts: { binDir?: string; shimPath?: string } = {}): Promise<{ binary: string; binaryChanged: boolean; portmap: boolean }> {
  const shim = opts.shimPath ?? findBuiltShim();
  if (shim === undefined) throw new Error(`the CNI shim is not built (expected ${SHIM_IN_TREE}; run make build)`);
  const binDir = opts.binDir ?? DEFAULT_CNI_BIN_DIR;
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  const binary = path.join(binDir, PLUGIN_TYPE);
  const binaryChanged = await copyAtomic(shim, binary);
  // The portmap plugin, when the shim has one beside it (Hypha's image).
  const portmap = path.join(path.dirname(shim), PORTMAP_TYPE);
  if (existsSync(portmap)) await copyAtomic(portmap, path.join(binDir, PORTMAP_TYPE));
  if (binaryChanged) await fsyncPath(binDir);
  return { binary, binaryChanged, portmap: existsSync(path.join(binDir, PORTMAP_TYPE)) };
}

/** Copy an executable over `target` atomically (0755); false when it already had that content. */
async function copyAtomic(source: string, target: string): Promise<boolean> {
  if (await sameContent(source, target)) return false;
  const tmp = tmpName(target);
  try {
    await copyFile(source, tmp);
    await chmod(tmp, 0o755);
    await fsyncPath(tmp);
    // rename over a binary a runtime is executing is safe: the old inode lives on.
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return true;
}

/** The shim into binDir (installShim) and the conflist into confDir (0644, atomically). */
export async function installCni(opts: InstallOptions = {}): Promise<Installed> {
  const confDir = opts.confDir ?? DEFAULT_CNI_CONF_DIR;
  const { binary, binaryChanged, portmap } = await installShim(opts);
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  const conflist = path.join(confDir, CONFLIST_NAME);
  await writeFileAtomic(conflist, `${JSON.stringify(buildConflist({ portmap, ...opts }), null, 2)}\n`, 0o644);
  return { binary, conflist, binaryChanged };
}

/**
 * Remove the conflist, so the runtime stops sending ADDs to Hypha. The binary
 * stays: pods that still exist need DEL, which succeeds with the agent gone
 * (the shim queues it). Returns whether a conflist was there.
 */
export async function uninstallCni(opts: { confDir?: string } = {}): Promise<boolean> {
  const conflist = path.join(opts.confDir ?? DEFAULT_CNI_CONF_DIR, CONFLIST_NAME);
  try {
    await unlink(conflist);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  await fsyncPath(path.dirname(conflist));
  return true;
}
