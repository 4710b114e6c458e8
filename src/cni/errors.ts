// Typed CNI errors. The spec reserves codes 0-99 (well-known errors); 100 and
// up are Hypha's own. docs/cni.md lists every code with what a runtime and an
// operator should do about it.

/** Error codes of the CNI spec (SPEC.md, "Error" result) and Hypha's plugin codes. */
export const CNI_ERR = {
  /** The cniVersion of the config (or the command in that version) is not supported. */
  INCOMPATIBLE_VERSION: 1,
  /** A field of the network configuration is not supported (message names key and value). */
  UNSUPPORTED_FIELD: 2,
  /** The container is unknown or does not exist: the runtime need not clean up. */
  UNKNOWN_CONTAINER: 3,
  /** An environment variable the command needs is missing or invalid (message names it). */
  INVALID_ENV: 4,
  /** I/O failure (reading stdin, talking to the agent, writing state). */
  IO: 5,
  /** The content could not be decoded (stdin is not JSON). */
  DECODE: 6,
  /** The network configuration is invalid (message names field and value). */
  INVALID_CONFIG: 7,
  /** A transient condition: the runtime should retry later (agent not reachable). */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot serve ADD requests now. */
  NOT_AVAILABLE: 50,
  /** STATUS: the plugin cannot serve ADD, and existing pods may have limited connectivity. */
  NOT_AVAILABLE_LIMITED: 51,
  /** No free address left in the node's pod CIDR. */
  NO_FREE_ADDRESS: 100,
  /** CNI_NETNS does not exist or is not a network namespace. */
  BAD_NETNS: 101,
  /** ADD for a (containerId, ifname) that already has an attachment. */
  ALREADY_ATTACHED: 102,
  /** The kernel refused a datapath step (details say which step and why). */
  DATAPATH: 103,
  /** CHECK found the attachment differs from what ADD set up (details list what). */
  CHECK_MISMATCH: 104,
} as const;

export type CniErrorCode = (typeof CNI_ERR)[keyof typeof CNI_ERR];

const KNOWN_CODES = new Set<number>(Object.values(CNI_ERR));

/** Short default messages (the CNI error object's `msg`), by code. */
const DEFAULT_MSG: Record<CniErrorCode, string> = {
  1: 'incompatible CNI version',
  2: 'unsupported field in network configuration',
  3: 'container unknown or does not exist',
  4: 'invalid environment variables',
  5: 'I/O failure',
  6: 'failed to decode content',
  7: 'invalid network configuration',
  11: 'try again later',
  50: 'plugin not available',
  51: 'plugin not available, existing pods may have limited connectivity',
  100: 'no free address in the pod CIDR',
  101: 'invalid network namespace',
  102: 'already attached',
  103: 'datapath step refused by the kernel',
  104: 'attachment differs from what was set up',
};

export function isKnownCode(code: number): code is CniErrorCode {
  return KNOWN_CODES.has(code);
}

export function defaultMessage(code: number): string {
  return isKnownCode(code) ? DEFAULT_MSG[code] : `error ${code}`;
}

export class CniError extends Error {
  /** The CNI error code (spec 1-99, Hypha 100+). */
  readonly code: number;
  /** The longer explanation (the CNI error object's `details`); '' when none. */
  readonly details: string;
  constructor(code: number, message: string, details = '', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export function isCniError(err: unknown, code?: number): err is CniError {
  return err instanceof CniError && (code === undefined || err.code === code);
}

/** errno codes that describe a condition that may clear up by itself. */
const TRANSIENT_ERRNO = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'ENOBUFS', 'ENOMEM', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE']);
/** CNI codes a later retry of the same request may get past. */
const RETRIABLE_CODES = new Set<number>([CNI_ERR.IO, CNI_ERR.TRY_AGAIN_LATER, CNI_ERR.NOT_AVAILABLE, CNI_ERR.NOT_AVAILABLE_LIMITED]);

/**
 * May the same request succeed when retried later? True for try-again-later,
 * I/O and not-available CniErrors, and for errors (or CniErrors caused by
 * errors) whose errno code is transient (EAGAIN, EBUSY, ENOMEM ...). The DEL
 * queue keeps a queued DEL that failed this way; other failures are final.
 */
export function isRetriable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof CniError && RETRIABLE_CODES.has(e.code)) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_ERRNO.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Any thrown value as a CniError. CniErrors pass through; an error from a
 * system call (it has an errno code: a native addon or Node system error)
 * becomes 103 naming the step; anything else becomes 5 with its message.
 */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown; errno?: unknown; op?: unknown; syscall?: unknown };
    const step = typeof e.op === 'string' ? e.op : typeof e.syscall === 'string' ? e.syscall : undefined;
    if (typeof e.code === 'string' && (typeof e.errno === 'number' || step !== undefined)) {
      return new CniError(CNI_ERR.DATAPATH, err.message, `step ${step ?? 'unknown'} failed with ${e.code}`, { cause: err });
    }
    return new CniError(CNI_ERR.IO, err.message, '', { cause: err });
  }
  return new CniError(CNI_ERR.IO, `non-error thrown: ${String(err)}`);
}
