/**
 * Runs the real `morris` CLI (or any Node script) as a child process; never throws for a non-zero
 * exit. Asynchronous on purpose: a test that waits with spawnSync blocks its worker's event loop,
 * and a loop of such calls on a loaded machine outlasts vitest's 60 s RPC timeout ("Timeout calling
 * onTaskUpdate", an unhandled error that fails the run though every test passed).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO_ROOT = path.resolve(import.meta.dirname, '..');
export const MORRIS_BIN = path.join(REPO_ROOT, 'bin', 'morris.mjs');

export interface CliResult {
  /** The exit status; null when the child was killed (by the timeout or a signal). */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

/** `node ...args`: the Node running the tests, with its output as text. */
export async function runNode(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  try {
    const r = await run(process.execPath, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? REPO_ROOT, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    // execFile's error carries the output; its code is the exit status, null when killed, or a
    // string (ENOENT) when the child never started: that one says why in its message.
    const err = e as { code: number | string | null; stdout: string; stderr: string; message: string };
    if (typeof err.code === 'string') throw e;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

export function runMorris(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  return runNode([MORRIS_BIN, ...args], opts);
}
