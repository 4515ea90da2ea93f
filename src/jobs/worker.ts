/**
 * Entry point of a job worker (forked by fork-worker.ts). Holds no logic: it runs the one task it
 * is sent and reports back over IPC. SIGTERM, SIGINT or losing the parent aborts the task, which
 * checkpoints and returns; the process then exits.
 */
import { isMorrisError } from '../errors.ts';
import { log, setLogLevel } from '../log.ts';
import type { ToParent, ToWorker } from './worker-protocol.ts';
import { runWorkerTask } from './worker-tasks.ts';

const controller = new AbortController();
/** Resolves once the message is handed to the IPC channel, so exiting right after loses nothing. */
const send = (m: ToParent) =>
  new Promise<void>((resolve) => {
    if (!process.connected) return resolve();
    process.send!(m, undefined, {}, () => resolve());
  });

process.on('SIGTERM', () => controller.abort());
process.on('SIGINT', () => controller.abort());
// kill -9 of the serve process: stop at the next checkpoint rather than train on as an orphan.
process.on('disconnect', () => controller.abort());

process.once('message', async (m: ToWorker) => {
  if (m.type !== 'start') return;
  setLogLevel(m.logLevel);
  try {
    const value = await runWorkerTask(m.task, {
      signal: controller.signal,
      progress: (fraction, message) => void send({ type: 'progress', fraction, message }),
      log: (line, level = 'info') => void send({ type: 'log', line, level }),
    });
    await send({ type: 'result', value });
  } catch (e) {
    log.debug({ err: e }, 'worker task failed');
    await send({
      type: 'error',
      code: isMorrisError(e) ? e.code : 'JOB_FAILED',
      message: e instanceof Error ? e.message : String(e),
      hint: isMorrisError(e) ? e.hint : undefined,
    });
  }
  if (process.connected) process.disconnect();
  process.exit(0);
});
