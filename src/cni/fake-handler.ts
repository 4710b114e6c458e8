// An in-memory CniHandler for tests of the CNI front half (shim, server, DEL
// queue): it keeps attachments in a map and hands out addresses from a /24.
// A containerId can ask for a failure: `fail-<code>-...` throws CniError(code),
// `throw-plain-...` a plain Error, `throw-errno-...` an errno-style error.
import { CNI_ERR, CniError } from './errors.ts';
import type { CniHandler, CniRequest, CniResult, GcRequest, NetConf } from './types.ts';

export interface FakeCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';
  containerId?: string;
  ifname?: string;
  netns?: string;
  args?: Record<string, string>;
  pid?: number;
  config: NetConf;
  validAttachments?: GcRequest['validAttachments'];
}

const key = (containerId: string, ifname: string): string => `${containerId}/${ifname}`;

export class FakeHandler implements CniHandler {
  readonly calls: FakeCall[] = [];
  readonly attachments = new Map<string, CniResult>();
  /** STATUS answers this code (50/51) while set. */
  statusError: number | undefined;
  /** Awaited before each call is handled (a test can hold calls in flight). */
  gate: ((call: FakeCall) => Promise<void> | void) | undefined;
  #next = 2;

  #failure(containerId: string): void {
    const m = /^fail-(\d+)/.exec(containerId);
    if (m) throw new CniError(Number(m[1]), `fake failure ${m[1]} for ${containerId}`, `asked for by containerId ${containerId}`);
    if (containerId.startsWith('throw-plain')) throw new TypeError(`fake bug for ${containerId}`);
    if (containerId.startsWith('throw-errno')) {
      throw Object.assign(new Error(`RTM_NEWLINK: Operation not permitted`), { code: 'EPERM', errno: -1, op: 'veth_create' });
    }
  }

  async #enter(call: FakeCall): Promise<void> {
    this.calls.push(call);
    await this.gate?.(call);
  }

  #call(command: FakeCall['command'], req: CniRequest): FakeCall {
    return { command, containerId: req.containerId, ifname: req.ifname, netns: req.netns, args: req.args, pid: req.pid, config: req.config };
  }

  async add(req: CniRequest): Promise<CniResult> {
    await this.#enter(this.#call('ADD', req));
    this.#failure(req.containerId);
    const k = key(req.containerId, req.ifname);
    if (this.attachments.has(k)) throw new CniError(CNI_ERR.ALREADY_ATTACHED, `${req.containerId} already has ${req.ifname}`);
    const n = this.#next++;
    const hex = n.toString(16).padStart(2, '0');
    const result: CniResult = {
      interfaces: [
        { name: `lxc${hex}`, mac: `02:00:00:00:01:${hex}` },
        { name: req.ifname, mac: `02:00:00:00:02:${hex}`, sandbox: req.netns, mtu: 1450 },
      ],
      ips: [
        { address: `10.244.0.${n}/32`, gateway: '169.254.1.1', interface: 1 },
        { address: `fd00:10:244::${hex}/128`, interface: 1 },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '169.254.1.1', mtu: 1450, advmss: 1410, priority: 10, table: 254, scope: 0 },
        { dst: '::/0', gw: 'fe80::1' },
      ],
      dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] },
    };
    this.attachments.set(k, result);
    return result;
  }

  async del(req: CniRequest): Promise<void> {
    await this.#enter(this.#call('DEL', req));
    this.#failure(req.containerId);
    this.attachments.delete(key(req.containerId, req.ifname));
  }

  async check(req: CniRequest): Promise<void> {
    await this.#enter(this.#call('CHECK', req));
    this.#failure(req.containerId);
    const have = this.attachments.get(key(req.containerId, req.ifname));
    if (!have) throw new CniError(CNI_ERR.CHECK_MISMATCH, `${req.containerId} has no ${req.ifname}`, 'attachment missing');
    const want = req.config.prevResult?.ips.map((i) => i.address) ?? [];
    const got = have.ips.map((i) => i.address);
    if (want.length > 0 && want.join(',') !== got.join(',')) {
      throw new CniError(CNI_ERR.CHECK_MISMATCH, `${req.containerId}/${req.ifname} differs from prevResult`, `ips: want ${want.join(',')}, have ${got.join(',')}`);
    }
  }

  async gc(req: GcRequest): Promise<void> {
    await this.#enter({ command: 'GC', config: req.config, validAttachments: req.validAttachments });
    const keep = new Set(req.validAttachments.map((a) => key(a.containerId, a.ifname)));
    for (const k of [...this.attachments.keys()]) if (!keep.has(k)) this.attachments.delete(k);
  }

  async status(config: NetConf): Promise<void> {
    await this.#enter({ command: 'STATUS', config });
    if (this.statusError !== undefined) throw new CniError(this.statusError, 'fake agent not ready');
  }
}
