/**
 * Each columnist's state, the one view behind `morris status`, `/api/status` and the dashboard:
 * its folder (and why it does not check out), what it has in the store (articles, latest dataset,
 * active adapter), the last run of each step of its chain, readers' pairs on its articles (and how
 * many are new since its last DPO), its schedule (and, in a serve process, the next runs), and
 * what runs for it now. A broken folder is listed with its problems, never hidden.
 */
import type { Config } from '../config.ts';
import { checkAllColumnists } from '../columnists/check.ts';
import { DEFAULT_COLUMNIST_NAME, loadColumnist, type Columnist } from '../columnists/folder.ts';
import { isMorrisError } from '../errors.ts';
import { getActiveAdapter } from '../store/adapters.ts';
import { okArticleCount } from '../store/articles.ts';
import { latestDatasetId } from '../store/datasets.ts';
import type { Store } from '../store/db.ts';
import { pairCountsByColumnist } from '../store/feedback.ts';
import { listRuns, type JobRun } from '../store/job-runs.ts';
import { pairsSinceLastDpo } from './chain.ts';
import type { ScheduledJob } from './scheduler.ts';

/** The chain's steps whose last run a voice's state shows. */
export const VOICE_STEPS = ['rescrape', 'rebuild', 'retrain', 'evaluate', 'dpo'] as const;
export type VoiceStep = (typeof VOICE_STEPS)[number];

export interface LastRun {
  id: number;
  status: string;
  started_at: string;
  ended_at: string | null;
  /** The run's summary line, or its error. */
  message: string | null;
}

export interface ColumnistState {
  name: string;
  displayName: string | null;
  default: boolean;
  ok: boolean;
  /** Why the folder does not check out (empty when it does); the scheduler skips such a voice. */
  problems: string[];
  articles: number;
  latestDataset: string | null;
  activeAdapter: { id: string; promoted_at: string | null; dataset_id: string | null } | null;
  /** The last run of each step of the chain that did not just skip (null: never ran). */
  last: Record<VoiceStep, LastRun | null>;
  /** Readers' preference pairs on this voice's articles; `new` arrived since its last DPO run. */
  pairs: { total: number; new: number };
  /** The voice's chain schedule from its settings (null when its settings do not load). */
  schedule: { rescrape: string; rebuild: string; retrain: string } | null;
  /** What the running scheduler has for it, with the next runs (empty outside `morris serve`). */
  scheduled: { job: string; expression: string; nextRun: string | null }[];
  running: { id: number; job: string; progress: number; message: string | null }[];
}

function lastRun(store: Store, job: string, columnist: string): LastRun | null {
  const r = listRuns(store, { job, columnist, limit: 20 }).find((x) => x.status !== 'skipped');
  return r ? { id: r.id, status: r.status, started_at: r.started_at, ended_at: r.ended_at, message: r.error ?? r.message } : null;
}

export function columnistStates(config: Config, store: Store, scheduled: readonly ScheduledJob[] = []): ColumnistState[] {
  const running = listRuns(store, { status: 'running', limit: 100 });
  const pairTotals = pairCountsByColumnist(store);
  return checkAllColumnists(config).map((c) => {
    let voice: Columnist | null = null;
    try {
      voice = loadColumnist(c.name, config);
    } catch (e) {
      if (!isMorrisError(e)) throw e; // its settings do not load: `problems` says why
    }
    const active = getActiveAdapter(store, c.name);
    const pairs = pairsSinceLastDpo(store, c.name, pairTotals.get(c.name) ?? 0);
    return {
      name: c.name,
      displayName: voice?.displayName ?? null,
      default: c.name === DEFAULT_COLUMNIST_NAME,
      ok: c.ok,
      problems: c.problems,
      articles: okArticleCount(store, c.name),
      latestDataset: latestDatasetId(store, c.name) ?? null,
      activeAdapter: active ? { id: active.id, promoted_at: active.promoted_at, dataset_id: active.dataset_id } : null,
      last: Object.fromEntries(VOICE_STEPS.map((job) => [job, lastRun(store, job, c.name)])) as Record<VoiceStep, LastRun | null>,
      pairs: { total: pairs.total, new: pairs.fresh },
      schedule: voice ? { ...voice.settings.schedule } : null,
      // The default voice's schedules carry no columnist (MORRIS_CRON_*); the others' name theirs.
      scheduled: scheduled.filter((s) => (s.columnist ?? DEFAULT_COLUMNIST_NAME) === c.name).map(({ job, expression, nextRun }) => ({ job, expression, nextRun })),
      running: running.filter((r: JobRun) => r.columnist === c.name).map((r) => ({ id: r.id, job: r.job, progress: r.progress, message: r.message })),
    };
  });
}
