/** Whether a process id names a running process (ours or another user's); null/0 → false. */
export function isPidAlive(pid: number | null | undefined): boolean {
  if (!pid || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to another user; it is alive.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Resolves once `pid` has exited (true), or after `timeoutMs` (or an abort) with it still alive
 * (false). Used before resuming a training: the killed server's orphaned worker may still be
 * writing its last checkpoint, and a new worker must not start on that run folder alongside it.
 */
export async function waitForPidExit(pid: number | null | undefined, timeoutMs: number, signal?: AbortSignal, pollMs = 200): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isPidAlive(pid)) {
    if (Date.now() >= until || signal?.aborted) return false;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return true;
}
