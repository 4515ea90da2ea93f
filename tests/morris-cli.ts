/** Runs the real `morris` CLI as a child process; never throws for a non-zero exit. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const MORRIS_BIN = path.resolve(import.meta.dirname, '..', 'bin', 'morris.mjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runMorris(args: string[], opts: { env: NodeJS.ProcessEnv; cwd: string; timeoutMs?: number }): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [MORRIS_BIN, ...args], { env: opts.env, cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
