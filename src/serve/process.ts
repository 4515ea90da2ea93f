/**
 * `morris serve` as a process: starts everything, then waits for SIGTERM/SIGINT and shuts down
 * cleanly. A second signal during shutdown exits at once.
 */
import { createRequire } from 'node:module';
import { log } from '../log.ts';
import { startServe, type ServeOptions } from './start.ts';

export async function runServeUntilSignal(opts: ServeOptions): Promise<void> {
  const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
  const handle = await startServe({ version: pkg.version, ...opts });
  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        log.warn({ sig }, 'second signal: exiting now');
        process.exit(130);
      }
      signalled = true;
      handle.stop(`received ${sig}`).then(resolve, (e) => {
        log.error({ err: e }, 'shutdown failed');
        process.exitCode = 1;
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Native thread pools (ONNX Runtime) can hold the event loop open after everything is closed.
  process.exit(process.exitCode ?? 0);
}
