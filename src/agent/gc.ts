// A full garbage collection on demand, for the moments the agent knows it
// just dropped a lot: between chunks of a cold sync, after a full resync.
// V8 otherwise lets the old generation grow to about twice what survived the
// last collection before it collects again, and the process's resident memory
// follows that high-water mark (measured: 420+ MB for 10 000 Services whose
// live state is a third of that). bin/hypha starts Node with --expose-gc;
// without it (a test importing the agent) this does nothing.
const gc = (globalThis as { gc?: () => void }).gc;

export function collectGarbage(): void {
  gc?.();
}
