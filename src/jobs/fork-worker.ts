/**
 * Parent side of the job worker: runs one heavy task (training, evaluation) in a child process so
 * the serve process keeps answering. The child gets a thread budget (passed to the task), a JS heap
 * cap, a lower CPU priority, and an RSS watchdog enforces the memory budget: over it, the child is
 * asked to checkpoint and stop. Cancelling sends SIGTERM; the task checkpoints and exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MorrisError, type ErrorCode } from '../errors.ts';
import type { WorkerTask, ToParent } from './worker-protocol.ts';
import { REPO_ROOT } from '../paths.ts';
import { log } from '../log.ts';

const WORKER_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.ts');

/** How often the parent samples the child's resident memory. */
export const RSS_CHECK_MS = 1000;
/** A child asked to stop gets this long to checkpoint before SIGKILL. */
export const STOP_GRACE_MS = 60_000;
/** Niceness for the worker: the serving process wins the CPU when both want it. */
export const WORKER_NICE = 10;

export interface WorkerBudget {
  threads: number;
  memoryMb: number;
}

export interface WorkerHooks {
  signal?: AbortSignal;
  onProgress?(fraction: number, message?: string): void;
  onLog?(line: string, level: 'info' | 'warn' | 'error'): void;
  onSpawn?(pid: number): void;
}

/** Resident set size of a process in MB, from /proc (Linux); undefined elsewhere. */
export function readRssMb(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function runWorker<R>(task: WorkerTask, budget: WorkerBudget, hooks: WorkerHooks = {}): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    // JS heap is a slice of the budget; native (ONNX Runtime) memory is watched through RSS.
    const heapMb = Math.max(256, Math.floor(budget.memoryMb / 2));
    const child: ChildProcess = fork(WORKER_ENTRY, [], {
      execArgv: ['--import', 'tsx', `--max-old-space-size=${heapMb}`],
      // `--import tsx` resolves from the working directory: the repo root finds it wherever
      // morris was started from (every path in a task is absolute).
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    const pid = child.pid!;
    try {
      os.setPriority(pid, WORKER_NICE);
    } catch {
      // Not permitted on some hosts; the thread budget still limits contention.
    }
    hooks.onSpawn?.(pid);
    let result: { ok: true; value: R } | { ok: false; error: MorrisError } | undefined;
    let stopReason: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (why: string) => {
      if (stopReason) return;
      stopReason = why;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      killTimer.unref();
    };
    const onAbort = () => stop('cancelled');
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (hooks.signal?.aborted) onAbort();

    const watchdog = setInterval(() => {
      const rss = readRssMb(pid);
      if (rss !== undefined && rss > budget.memoryMb) {
        hooks.onLog?.(`worker uses ${rss.toFixed(0)} MB, over MORRIS_TRAIN_MEMORY_MB=${budget.memoryMb}: stopping it`, 'error');
        stop('memory');
      }
    }, RSS_CHECK_MS);
    watchdog.unref();

    child.on('message', (m: ToParent) => {
      if (m.type === 'progress') hooks.onProgress?.(m.fraction, m.message);
      else if (m.type === 'log') hooks.onLog?.(m.line, m.level);
      else if (m.type === 'result') result = { ok: true, value: m.value as R };
      else if (m.type === 'error') {
        result = { ok: false, error: new MorrisError(m.code as ErrorCode, m.message, { hint: m.hint }) };
      }
    });
    child.on('error', (e) => {
      result ??= { ok: false, error: new MorrisError('JOB_FAILED', `Worker process failed: ${e.message}`, { cause: e }) };
    });
    child.on('exit', (code, sig) => {
      clearInterval(watchdog);
      if (killTimer) clearTimeout(killTimer);
      hooks.signal?.removeEventListener('abort', onAbort);
      if (stopReason === 'memory') {
        return reject(
          new MorrisError('JOB_FAILED', `Training went over the memory budget (MORRIS_TRAIN_MEMORY_MB=${budget.memoryMb}) and was stopped after its checkpoint.`, {
            hint: 'Raise MORRIS_TRAIN_MEMORY_MB, or lower maxSeqLen / batchSize in the training config.',
          }),
        );
      }
      if (stopReason === 'cancelled') return reject(new MorrisError('CANCELLED', 'cancelled; the worker checkpointed and stopped'));
      if (result?.ok) return resolve(result.value);
      if (result) return reject(result.error);
      reject(new MorrisError('JOB_FAILED', `Worker process ended without a result (exit code ${code}, signal ${sig}).`));
    });
    child.send({ type: 'start', task, logLevel: log.level });
  });
}
