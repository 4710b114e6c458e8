// Child process for ringbuf.test.ts: leaves a ring buffer subscription open with
// records flowing and ends the process in the way argv[2] names. The parent checks
// that the process ends promptly with the expected status (no hang, no crash).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

import * as bpf from '../index.ts';
import { ethFrame, fixture } from './helpers.ts';

async function subscribe(onRecord: () => void): Promise<() => void> {
  const obj = bpf.openObject(fixture('ringbuf'));
  await bpf.loadObject(obj);
  const events = bpf.objectMap(obj, 'events');
  const emit = bpf.objectProgram(obj, 'emit');
  bpf.ringbufOpen(events, onRecord);
  return () => bpf.progTestRun(emit, { data: ethFrame(), repeat: 2000 });
}

async function main(mode: string): Promise<void> {
  if (mode === 'callback-throws') {
    // an exception thrown by onRecord surfaces as an uncaught exception
    process.on('uncaughtException', (err) => {
      process.exit(err.message === 'from onRecord' ? 7 : 8);
    });
    const run = await subscribe(() => {
      throw new Error('from onRecord');
    });
    run();
    return;
  }
  let seen = 0;
  const run = await subscribe(() => {
    seen++;
  });
  run();
  const flood = setInterval(run, 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  if (seen === 0) throw new Error('no records arrived');
  switch (mode) {
    case 'exit':
      process.exit(0);
    case 'exit-code':
      process.exitCode = 3;
      clearInterval(flood);
      process.exit();
    case 'throw':
      throw new Error('deliberate uncaught exception');
    case 'worker': {
      // a worker with an open subscription is terminated; then the process exits
      const worker = new Worker(new URL(import.meta.url), { workerData: 'in-worker' });
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      await worker.terminate();
      process.exit(0);
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

if (isMainThread) {
  await main(process.argv[2] ?? '');
} else if (workerData === 'in-worker') {
  const run = await subscribe(() => {});
  run();
  setInterval(run, 1);
  parentPort?.postMessage('ready');
}
