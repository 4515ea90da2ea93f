/**
 * Messages between the serve process and a job worker (child process, IPC with structured clone).
 * The parent sends one `start`; the child answers with any number of `progress`/`log` and exactly
 * one `result` or `error`, then exits. SIGTERM (or the parent going away) asks the task to
 * checkpoint and stop.
 */
import type { TrainTaskOptions, EvalTaskOptions, DpoTaskOptions } from './worker-tasks.ts';

export type WorkerTask = { kind: 'train'; options: TrainTaskOptions } | { kind: 'evaluate'; options: EvalTaskOptions } | { kind: 'dpo'; options: DpoTaskOptions };

/** `logLevel`: the parent's, so a worker is as quiet or as chatty as the process that started it. */
export type ToWorker = { type: 'start'; task: WorkerTask; logLevel: string };

export type ToParent =
  | { type: 'progress'; fraction: number; message?: string }
  | { type: 'log'; line: string; level: 'info' | 'warn' | 'error' }
  | { type: 'result'; value: unknown }
  | { type: 'error'; code: string; message: string; hint?: string };
