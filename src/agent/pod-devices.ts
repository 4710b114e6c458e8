// Finds pods' host-side veths by name pattern and attaches the pod programs
// to each one that appears (or reappears with a new ifindex). Until the CNI
// plugin creates endpoints itself, this is how pods get the datapath.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import * as native from '../../native/index.ts';
import type { Devices } from '../datapath/devices.ts';
import type { EndpointsSync } from './endpoints.ts';

export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/** Interface names of this network namespace (/proc/self/net/dev is per netns). */
export function listInterfaces(): string[] {
  return readFileSync('/proc/self/net/dev', 'utf8')
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0]?.trim() ?? '')
    .filter((n) => n !== '');
}

export class PodDevices {
  readonly #devices: Devices;
  readonly #patterns: RegExp[];
  readonly #log: Logger;
  readonly #attached = new Map<string, number>();
  readonly #endpoints: EndpointsSync | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(devices: Devices, patterns: string[], log: Logger, endpoints?: EndpointsSync) {
    this.#devices = devices;
    this.#patterns = patterns.map(globToRegExp);
    this.#log = log;
    this.#endpoints = endpoints;
  }

  get attached(): ReadonlyMap<string, number> {
    return this.#attached;
  }

  /** Attach to new devices; with `verify`, re-attach to all (repairs a filter removed by hand). */
  scan(verify = false): void {
    const names = listInterfaces().filter((n) => this.#patterns.some((p) => p.test(n)));
    const present = new Set(names);
    for (const n of [...this.#attached.keys()]) if (!present.has(n)) this.#attached.delete(n);
    for (const name of names) {
      try {
        if (!verify && this.#attached.get(name) === native.ifNameToIndex(name)) continue;
        const ifindex = this.#devices.attachPod(name);
        if (this.#attached.get(name) !== ifindex) {
          this.#log.info({ device: name, ifindex }, 'pod device attached');
          this.#attached.set(name, ifindex);
        }
      } catch (err) {
        // A veth can vanish between listing and attaching (pod deleted).
        this.#log.warn({ device: name, err: (err as Error).message }, 'pod device not attached');
      }
    }
    // The pods behind the attached devices, for direct delivery.
    this.#endpoints?.sync(this.#attached).catch((err: Error) => this.#log.warn({ err: err.message }, 'local pods not updated'));
  }

  start(intervalMs: number): void {
    this.scan();
    this.#timer = setInterval(() => this.scan(), intervalMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
