/**
 * Job history in the store (job_runs, job_logs). Starting a run is one IMMEDIATE transaction that
 * checks for a live run of the same job first, so two triggers — from this process, a CLI process
 * or a cron tick — can never both start it: the loser is recorded as 'skipped'. A run about a
 * columnist (the chain's jobs) only blocks runs for the same columnist, except training: one
 * training at a time on the host, whichever voice it is for.
 */
import { isPidAlive, waitForPidExit } from '../pids.ts';
import type { Store } from './db.ts';
import { MorrisError } from '../errors.ts';

export type JobStatus = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped' | 'crashed';

export interface JobRun {
  id: number;
  job: string;
  trigger: string;
  status: JobStatus;
  started_at: string;
  ended_at: string | null;
  progress: number;
  message: string | null;
  error: string | null;
  result: unknown;
  input: unknown;
  pid: number | null;
  child_pid: number | null;
  parent_id: number | null;
  /** The voice a chain job ran for; null for jobs about no columnist. */
  columnist: string | null;
}

export interface JobLogLine {
  id: number;
  run_id: number;
  at: string;
  level: string;
  line: string;
}

interface RawRun extends Omit<JobRun, 'result' | 'input'> {
  result: string | null;
  input: string | null;
}

function parseJson(s: string | null): unknown {
  if (s == null) return null;
  try {
    return JSON.parse(s);
  } catch {
    return s; // older rows or a hand-edited DB: show the text rather than nothing
  }
}

function toRun(r: RawRun): JobRun {
  return { ...r, result: parseJson(r.result), input: parseJson(r.input) };
}

/** True when a process with this pid exists (signal 0 checks without sending anything). */
/** The job only one of may run on the host at a time, for any columnist (training fills the machine). */
export const EXCLUSIVE_ON_HOST = 'retrain';

export type StartOutcome = { started: true; run: JobRun } | { started: false; run: JobRun; blockedBy: JobRun };

/**
 * Starts a run of `job` unless one is live (status running and its owner process alive). A
 * 'running' row whose owner died is marked 'crashed' here too, so a dead process never blocks.
 */
export function startRun(
  store: Store,
  opts: { job: string; trigger: string; input?: unknown; parentId?: number | null; pid?: number; columnist?: string | null },
): StartOutcome {
  const pid = opts.pid ?? process.pid;
  const columnist = opts.columnist ?? null;
  const tx = store.transaction((): StartOutcome => {
    const live = store
      .prepare(`SELECT * FROM job_runs WHERE job = ? AND status = 'running' AND (job = ? OR columnist IS ?) ORDER BY id`)
      .all(opts.job, EXCLUSIVE_ON_HOST, columnist) as RawRun[];
    let blocker: RawRun | undefined;
    for (const r of live) {
      if (isPidAlive(r.pid)) blocker ??= r;
      else markCrashed(store, r.id, `owner process ${r.pid} is gone`);
    }
    const input = opts.input === undefined ? null : JSON.stringify(opts.input);
    if (blocker) {
      const info = store
        .prepare(
          `INSERT INTO job_runs (job, trigger, status, ended_at, message, input, pid, parent_id, columnist)
           VALUES (?, ?, 'skipped', strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?, ?, ?, ?, ?)`,
        )
        .run(opts.job, opts.trigger, `skipped: run #${blocker.id} of ${opts.job}${blocker.columnist && blocker.columnist !== columnist ? ` (for ${blocker.columnist})` : ''} is still running`, input, pid, opts.parentId ?? null, columnist);
      return { started: false, run: getRun(store, Number(info.lastInsertRowid)), blockedBy: toRun(blocker) };
    }
    const info = store
      .prepare(`INSERT INTO job_runs (job, trigger, status, input, pid, parent_id, columnist) VALUES (?, ?, 'running', ?, ?, ?, ?)`)
      .run(opts.job, opts.trigger, input, pid, opts.parentId ?? null, columnist);
    return { started: true, run: getRun(store, Number(info.lastInsertRowid)) };
  });
  return tx.immediate();
}

export function getRun(store: Store, id: number): JobRun {
  const r = store.prepare('SELECT * FROM job_runs WHERE id = ?').get(id) as RawRun | undefined;
  if (!r) throw new MorrisError('NOT_FOUND', `No job run #${id}.`, { hint: 'List runs with `morris jobs history`.' });
  return toRun(r);
}

export function listRuns(store: Store, opts: { job?: string; limit?: number; status?: JobStatus; columnist?: string } = {}): JobRun[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (opts.job) {
    where.push('job = ?');
    args.push(opts.job);
  }
  if (opts.status) {
    where.push('status = ?');
    args.push(opts.status);
  }
  if (opts.columnist) {
    where.push('columnist = ?');
    args.push(opts.columnist);
  }
  const sql = `SELECT * FROM job_runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`;
  return (store.prepare(sql).all(...args, opts.limit ?? 50) as RawRun[]).map(toRun);
}

export function updateProgress(store: Store, id: number, progress: number, message?: string): void {
  const p = Math.max(0, Math.min(1, Number.isFinite(progress) ? progress : 0));
  store
    .prepare(`UPDATE job_runs SET progress = ?, message = COALESCE(?, message) WHERE id = ? AND status = 'running'`)
    .run(p, message ?? null, id);
}

export function setChildPid(store: Store, id: number, childPid: number | null): void {
  store.prepare('UPDATE job_runs SET child_pid = ? WHERE id = ?').run(childPid, id);
}

export function setResult(store: Store, id: number, result: unknown): void {
  store.prepare('UPDATE job_runs SET result = ? WHERE id = ?').run(JSON.stringify(result ?? null), id);
}

/** Ends a run; only a run still 'running' changes, so a late writer cannot overwrite 'crashed'. */
export function finishRun(
  store: Store,
  id: number,
  end: { status: Exclude<JobStatus, 'running' | 'skipped'>; message?: string; error?: string; result?: unknown },
): void {
  store
    .prepare(
      `UPDATE job_runs SET status = ?, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'),
         message = COALESCE(?, message), error = ?, result = COALESCE(?, result),
         progress = CASE WHEN ? = 'succeeded' THEN 1 ELSE progress END
       WHERE id = ? AND status = 'running'`,
    )
    .run(
      end.status,
      end.message ?? null,
      end.error ?? null,
      end.result === undefined ? null : JSON.stringify(end.result),
      end.status,
      id,
    );
}

export function markCrashed(store: Store, id: number, why: string): void {
  store
    .prepare(
      `UPDATE job_runs SET status = 'crashed', ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), error = ?
       WHERE id = ? AND status = 'running'`,
    )
    .run(why, id);
  appendLog(store, id, `marked crashed: ${why}`, 'error');
}

/** Runs left 'running' by processes that no longer exist; marks them crashed and returns them. */
export function recoverCrashedRuns(store: Store): JobRun[] {
  const rows = store.prepare(`SELECT * FROM job_runs WHERE status = 'running'`).all() as RawRun[];
  const crashed: JobRun[] = [];
  for (const r of rows) {
    if (isPidAlive(r.pid)) continue;
    markCrashed(store, r.id, `process ${r.pid} ended while the run was in progress`);
    crashed.push(getRun(store, r.id));
  }
  return crashed;
}

export function appendLog(store: Store, runId: number, line: string, level: 'info' | 'warn' | 'error' = 'info'): void {
  store.prepare('INSERT INTO job_logs (run_id, level, line) VALUES (?, ?, ?)').run(runId, level, line);
}

export function getLogs(store: Store, runId: number, opts: { afterId?: number; limit?: number } = {}): JobLogLine[] {
  return store
    .prepare('SELECT * FROM job_logs WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?')
    .all(runId, opts.afterId ?? 0, opts.limit ?? 1000) as JobLogLine[];
}

// Used by the job runner's callers and tests under this module's name.
// Process checks that go with the runs' pids, under this module's name for its callers.
export { isPidAlive, waitForPidExit };
