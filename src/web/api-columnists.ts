/**
 * `GET /api/columnists`: each voice's state for the dashboard: its folder (and whether it checks
 * out), what it has in the store (articles, latest dataset, active adapter), its schedules and its
 * running jobs. A broken folder is listed with its problems, never hidden.
 */
import type { Config } from '../config.ts';
import { checkAllColumnists } from '../columnists/check.ts';
import { DEFAULT_COLUMNIST_NAME, loadColumnist } from '../columnists/folder.ts';
import { isMorrisError } from '../errors.ts';
import type { Scheduler } from '../jobs/scheduler.ts';
import { getActiveAdapter } from '../store/adapters.ts';
import { okArticleCount } from '../store/articles.ts';
import { latestDatasetId } from '../store/datasets.ts';
import type { Store } from '../store/db.ts';
import { listRuns } from '../store/job-runs.ts';

export interface ColumnistState {
  name: string;
  displayName: string | null;
  default: boolean;
  ok: boolean;
  problems: string[];
  articles: number;
  latestDataset: string | null;
  activeAdapter: { id: string; promoted_at: string | null; dataset_id: string | null } | null;
  scheduled: { job: string; expression: string; nextRun: string | null }[];
  running: { id: number; job: string; progress: number }[];
}

export function columnistStates(config: Config, store: Store, scheduler?: Scheduler): ColumnistState[] {
  const scheduled = scheduler?.jobs() ?? [];
  const running = listRuns(store, { status: 'running', limit: 100 });
  return checkAllColumnists(config).map((c) => {
    let displayName: string | null = null;
    try {
      displayName = loadColumnist(c.name, config).displayName;
    } catch (e) {
      if (!isMorrisError(e)) throw e; // its settings do not load: `problems` says why
    }
    const isDefault = c.name === DEFAULT_COLUMNIST_NAME;
    const active = getActiveAdapter(store, c.name);
    return {
      name: c.name,
      displayName,
      default: isDefault,
      ok: c.ok,
      problems: c.problems,
      articles: okArticleCount(store, c.name),
      latestDataset: latestDatasetId(store, c.name) ?? null,
      activeAdapter: active ? { id: active.id, promoted_at: active.promoted_at, dataset_id: active.dataset_id } : null,
      // The default voice's schedules carry no columnist (MORRIS_CRON_*); the others' name theirs.
      scheduled: scheduled.filter((s) => (s.columnist ?? DEFAULT_COLUMNIST_NAME) === c.name).map(({ job, expression, nextRun }) => ({ job, expression, nextRun })),
      running: running.filter((r) => r.columnist === c.name).map((r) => ({ id: r.id, job: r.job, progress: r.progress })),
    };
  });
}
