/** The `train_metrics` table: one row per logged training or evaluation loss of a run. */
import type { Store } from './db.ts';

export interface TrainMetricRow {
  step: number;
  kind: 'train' | 'eval';
  loss: number;
  lr?: number;
  gradNorm?: number;
  tokensPerS?: number;
}

export function insertTrainMetric(store: Store, runId: string, m: TrainMetricRow): void {
  store
    .prepare('INSERT INTO train_metrics (run_id, step, kind, loss, lr, grad_norm, tokens_per_s) VALUES (?, ?, ?, ?, ?, ?, ?)')
    .run(runId, m.step, m.kind, m.loss, m.lr ?? null, m.gradNorm ?? null, m.tokensPerS ?? null);
}

/** A resumed run rewrites history after its checkpoint: the killed run's later rows go. */
export function deleteTrainMetricsAfter(store: Store, runId: string, step: number): void {
  if (step === 0) store.prepare('DELETE FROM train_metrics WHERE run_id = ?').run(runId);
  else store.prepare('DELETE FROM train_metrics WHERE run_id = ? AND step > ?').run(runId, step);
}

/** Loss points of the given runs, in step order. */
export function lossPoints(store: Store, runIds: readonly string[]): { step: number; kind: 'train' | 'eval'; loss: number; lr: number | null }[] {
  if (runIds.length === 0) return [];
  return store
    .prepare(`SELECT step, kind, loss, lr FROM train_metrics WHERE run_id IN (${runIds.map(() => '?').join(',')}) AND loss IS NOT NULL ORDER BY step, id`)
    .all(...runIds) as { step: number; kind: 'train' | 'eval'; loss: number; lr: number | null }[];
}
