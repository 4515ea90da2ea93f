/**
 * The job runner: starts named jobs with history in the store, refuses overlap (the second
 * trigger is recorded as 'skipped'), reports progress and log lines, and cancels. Cancellation
 * works across processes: `morris jobs cancel ID` leaves a request in the store that the owning
 * runner picks up within a second.
 */
import { EventEmitter } from 'node:events';
import type { Store } from '../store/db.ts';
import { deleteKv, getKv, setKv } from '../store/db.ts';
import { childLog } from '../log.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import { describeError, isMorrisError, MorrisError } from '../errors.ts';
import {
  appendLog,
  finishRun,
  getRun,
  setChildPid,
  setResult,
  startRun,
  updateProgress,
  type JobRun,
} from '../store/job-runs.ts';

const log = childLog('jobs');

/** How often a runner looks for cancel requests left by other processes. */
export const CANCEL_POLL_MS = 1000;
/** Progress writes are throttled so a chatty job does not hammer the store. */
export const PROGRESS_WRITE_MS = 250;

export interface JobContext {
  readonly runId: number;
  readonly store: Store;
  readonly signal: AbortSignal;
  log(line: string, level?: 'info' | 'warn' | 'error'): void;
  /** fraction in [0, 1] */
  progress(fraction: number, message?: string): void;
  setChildPid(pid: number | null): void;
  /** Saved with the run at once (e.g. where a training writes checkpoints, for resume). */
  setResult(result: unknown): void;
}

export type JobHandler = (ctx: JobContext, input: any) => Promise<unknown>;

export interface TriggerOptions {
  trigger?: string;
  input?: unknown;
  parentId?: number | null;
}

export interface Triggered {
  started: boolean;
  run: JobRun;
  /** Resolves with the finished run (a skipped run resolves at once). Never rejects. */
  done: Promise<JobRun>;
}

export type RunnerEvent =
  | { type: 'start'; run: JobRun }
  | { type: 'skipped'; run: JobRun }
  | { type: 'end'; run: JobRun }
  | { type: 'progress'; runId: number; job: string; progress: number; message?: string }
  | { type: 'log'; runId: number; job: string; level: string; line: string };

/** The chain's jobs are about one voice (input.columnist, else the default one); others about none. */
const CHAIN_JOBS = new Set(['rescrape', 'rebuild', 'retrain', 'evaluate', 'dpo']);

export function columnistOfRun(job: string, input: unknown): string | null {
  if (!CHAIN_JOBS.has(job)) return null;
  const named = (input as { columnist?: unknown } | null | undefined)?.columnist;
  return typeof named === 'string' && named ? named : DEFAULT_COLUMNIST_NAME;
}

export function cancelKey(runId: number): string {
  return `job.cancel.${runId}`;
}

/** Leaves a cancel request for whichever process owns the run. */
export function requestCancel(store: Store, runId: number): JobRun {
  const run = getRun(store, runId);
  if (run.status !== 'running') {
    throw new MorrisError('BAD_INPUT', `Run #${runId} (${run.job}) is not running (it is ${run.status}).`);
  }
  setKv(store, cancelKey(runId), new Date().toISOString());
  return run;
}

interface Live {
  run: JobRun;
  controller: AbortController;
  done: Promise<JobRun>;
}

export class JobRunner {
  readonly events = new EventEmitter();
  private readonly live = new Map<number, Live>();
  private readonly poll: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly store: Store,
    private readonly handlers: Readonly<Record<string, JobHandler>>,
  ) {
    this.events.setMaxListeners(100);
    this.poll = setInterval(() => this.pollCancelRequests(), CANCEL_POLL_MS);
    this.poll.unref();
  }

  jobNames(): string[] {
    return Object.keys(this.handlers);
  }

  /** Starts `job` unless it is already running anywhere; returns at once. */
  trigger(job: string, opts: TriggerOptions = {}): Triggered {
    const handler = this.handlers[job];
    if (!handler) {
      throw new MorrisError('BAD_INPUT', `Unknown job "${job}".`, { hint: `Jobs: ${this.jobNames().join(', ')}.` });
    }
    if (this.closed) throw new MorrisError('BUSY', 'The job runner is shutting down; no new jobs start.');
    const outcome = startRun(this.store, { job, trigger: opts.trigger ?? 'manual', input: opts.input, parentId: opts.parentId, columnist: columnistOfRun(job, opts.input) });
    if (!outcome.started) {
      log.info({ job, runId: outcome.run.id, blockedBy: outcome.blockedBy.id }, 'job already running; skipped');
      this.emit({ type: 'skipped', run: outcome.run });
      return { started: false, run: outcome.run, done: Promise.resolve(outcome.run) };
    }
    const run = outcome.run;
    const controller = new AbortController();
    const done = this.execute(run, handler, controller, opts.input);
    this.live.set(run.id, { run, controller, done });
    this.emit({ type: 'start', run });
    return { started: true, run, done };
  }

  /** Triggers and waits for the end. */
  async run(job: string, opts: TriggerOptions = {}): Promise<JobRun> {
    return this.trigger(job, opts).done;
  }

  /** Cancels a run this runner owns; returns false when it owns no such live run. */
  cancel(runId: number, why = 'cancelled by request'): boolean {
    const l = this.live.get(runId);
    if (!l) return false;
    appendLog(this.store, runId, why, 'warn');
    l.controller.abort(new MorrisError('CANCELLED', why));
    return true;
  }

  liveRuns(): JobRun[] {
    return [...this.live.keys()].map((id) => getRun(this.store, id));
  }

  isRunning(job: string): boolean {
    return [...this.live.values()].some((l) => l.run.job === job);
  }

  /** Stops taking jobs, cancels the live ones (a training checkpoints) and waits up to graceMs. */
  async shutdown(graceMs: number, reason = 'server shutting down'): Promise<void> {
    this.closed = true;
    clearInterval(this.poll);
    const pending = [...this.live.values()];
    for (const l of pending) this.cancel(l.run.id, reason);
    await Promise.race([
      Promise.all(pending.map((l) => l.done)),
      new Promise((r) => setTimeout(r, graceMs).unref()),
    ]);
  }

  private emit(e: RunnerEvent): void {
    this.events.emit('event', e);
  }

  private async execute(run: JobRun, handler: JobHandler, controller: AbortController, input: unknown): Promise<JobRun> {
    const store = this.store;
    let lastProgressWrite = 0;
    const ctx: JobContext = {
      runId: run.id,
      store,
      signal: controller.signal,
      log: (line, level = 'info') => {
        appendLog(store, run.id, line, level);
        log[level === 'error' ? 'error' : level === 'warn' ? 'warn' : 'info']({ job: run.job, runId: run.id }, line);
        this.emit({ type: 'log', runId: run.id, job: run.job, level, line });
      },
      progress: (fraction, message) => {
        const now = Date.now();
        if (now - lastProgressWrite >= PROGRESS_WRITE_MS || fraction >= 1) {
          lastProgressWrite = now;
          updateProgress(store, run.id, fraction, message);
        }
        this.emit({ type: 'progress', runId: run.id, job: run.job, progress: fraction, message });
      },
      setChildPid: (pid) => setChildPid(store, run.id, pid),
      setResult: (result) => setResult(store, run.id, result),
    };
    ctx.log(`started (${run.trigger})`);
    try {
      const result = await handler(ctx, input ?? {});
      if (controller.signal.aborted) throw controller.signal.reason;
      finishRun(store, run.id, { status: 'succeeded', result, message: summarise(result) });
      ctx.log('succeeded');
    } catch (e) {
      const cancelled = controller.signal.aborted || (isMorrisError(e) && e.code === 'CANCELLED');
      if (cancelled) {
        finishRun(store, run.id, { status: 'cancelled', message: describeError(controller.signal.reason ?? e) });
        ctx.log('cancelled', 'warn');
      } else {
        log.error({ err: e, job: run.job, runId: run.id }, 'job failed');
        finishRun(store, run.id, { status: 'failed', error: describeError(e) });
        appendLog(store, run.id, `failed: ${describeError(e)}`, 'error');
      }
    } finally {
      this.live.delete(run.id);
      deleteKv(store, cancelKey(run.id));
    }
    const ended = getRun(store, run.id);
    this.emit({ type: 'end', run: ended });
    return ended;
  }

  private pollCancelRequests(): void {
    for (const id of this.live.keys()) {
      if (getKv(this.store, cancelKey(id))) this.cancel(id, 'cancelled by request');
    }
  }
}

/** One line for the history table from a job's result object. */
function summarise(result: unknown): string | undefined {
  if (result && typeof result === 'object' && 'summary' in result && typeof (result as { summary: unknown }).summary === 'string') {
    return (result as { summary: string }).summary;
  }
  return undefined;
}
