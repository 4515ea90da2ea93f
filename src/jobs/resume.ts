/**
 * Which training to resume at start-up: the latest retrain run, when a crash (kill -9, power
 * loss) or the last shutdown interrupted it, and it recorded where its checkpoints are.
 */
import type { Store } from '../store/db.ts';
import { listRuns, type JobRun } from '../store/job-runs.ts';

/** The message a run gets when a shutdown stops it (it resumes at the next start). */
export const SHUTDOWN_REASON = 'server shutting down; the training resumes at the next start';
/** A training that keeps dying on resume is left alone after this many attempts in a row. */
export const MAX_RESUME_ATTEMPTS = 3;

export interface RetrainInput {
  datasetId?: string;
  /** Training settings; a resume passes the interrupted run's own (the checkpoint is keyed by them). */
  settings?: Record<string, unknown>;
  /** Continue from the checkpoint of the run with these inputs. */
  resume?: boolean;
  /** The voice it trains (default: the default columnist); picks the current dataset when none is named. */
  columnist?: string;
}

/** Saved on the run before training starts: enough to resume it after a crash. */
export interface RetrainProgressRecord {
  datasetId: string;
  settings: Record<string, unknown>;
}

export function wasInterrupted(run: JobRun): boolean {
  return run.status === 'crashed' || (run.status === 'cancelled' && (run.message ?? '').includes(SHUTDOWN_REASON));
}

export function findRetrainToResume(store: Store): { run: JobRun; input: RetrainInput } | undefined {
  const recent = listRuns(store, { job: 'retrain', limit: MAX_RESUME_ATTEMPTS + 1 }).filter((r) => r.status !== 'skipped');
  const last = recent[0];
  if (!last || !wasInterrupted(last)) return undefined;
  const rec = last.result as Partial<RetrainProgressRecord> | null;
  if (!rec?.datasetId || !rec.settings) return undefined;
  const attempts = recent.filter((r) => r.trigger.startsWith('resume:') && wasInterrupted(r)).length;
  if (attempts >= MAX_RESUME_ATTEMPTS) return undefined;
  return { run: last, input: { datasetId: rec.datasetId, settings: rec.settings, resume: true, ...(last.columnist ? { columnist: last.columnist } : {}) } };
}
