/**
 * The `adapters` and `adapter_events` tables, the only module with their SQL: which adapters
 * exist, their status and metrics, and every change of the active one. The promotion logic
 * (hot swap, undo on failure) is jobs/registry.ts; the trainer registers through insertAdapter.
 * Every adapter belongs to one columnist, and each columnist has at most one active adapter.
 */
import type { Store } from './db.ts';
import { MorrisError } from '../errors.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

/** 'failed': a training that collapsed or did not improve (model/train/judge.ts); never a candidate. */
export type AdapterStatus = 'candidate' | 'active' | 'retired' | 'rejected' | 'failed';

export interface AdapterRow {
  id: string;
  created_at: string;
  base_model: string;
  dataset_id: string | null;
  path: string;
  status: AdapterStatus;
  metrics: Record<string, unknown>;
  eval: Record<string, unknown> | null;
  reason: string | null;
  promoted_at: string | null;
  columnist: string;
}

export interface AdapterEvent {
  id: number;
  at: string;
  action: 'promote' | 'rollback';
  adapter_id: string | null;
  previous_id: string | null;
  actor: string;
  reason: string | null;
  columnist: string;
}

type Raw = Omit<AdapterRow, 'metrics' | 'eval'> & { metrics: string; eval: string | null };

function parseObj(s: string | null): Record<string, unknown> | null {
  if (s == null) return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' ? v : { value: v };
  } catch {
    return { unparsed: s };
  }
}

function toRow(r: Raw): AdapterRow {
  return { ...r, metrics: parseObj(r.metrics) ?? {}, eval: parseObj(r.eval) };
}

/** An adapter's validation loss: the evaluation gate's figure, else the trainer's own (metrics eval_loss). */
export function adapterValLoss(a: AdapterRow): number | undefined {
  const ev = a.eval as { candidate?: { valLoss?: unknown } } | null;
  const v = ev?.candidate?.valLoss ?? a.metrics.eval_loss;
  return typeof v === 'number' ? v : undefined;
}

/** Adapters, newest first: one columnist's, or (without one) every columnist's. */
export function listAdapters(store: Store, opts: { limit?: number; columnist?: string } = {}): AdapterRow[] {
  const rows =
    opts.columnist === undefined
      ? store.prepare('SELECT * FROM adapters ORDER BY created_at DESC, rowid DESC LIMIT ?').all(opts.limit ?? 200)
      : store.prepare('SELECT * FROM adapters WHERE columnist = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(opts.columnist, opts.limit ?? 200);
  return (rows as Raw[]).map(toRow);
}

export function findAdapter(store: Store, id: string): AdapterRow | undefined {
  const r = store.prepare('SELECT * FROM adapters WHERE id = ?').get(id) as Raw | undefined;
  return r && toRow(r);
}

export function getAdapter(store: Store, id: string): AdapterRow {
  const a = findAdapter(store, id);
  if (!a) throw new MorrisError('NOT_FOUND', `No adapter "${id}".`, { hint: 'List adapters with `morris adapters list`.' });
  return a;
}

/** A columnist's active adapter (default: the default columnist's); none means its base model answers. */
export function getActiveAdapter(store: Store, columnist: string = DEFAULT_COLUMNIST_NAME): AdapterRow | undefined {
  const r = store.prepare(`SELECT * FROM adapters WHERE status = 'active' AND columnist = ?`).get(columnist) as Raw | undefined;
  return r && toRow(r);
}

/** Every columnist's active adapter. */
export function activeAdapters(store: Store): AdapterRow[] {
  return (store.prepare(`SELECT * FROM adapters WHERE status = 'active' ORDER BY columnist`).all() as Raw[]).map(toRow);
}

export function adapterHistory(store: Store, limit = 50, columnist?: string): AdapterEvent[] {
  return columnist === undefined
    ? (store.prepare('SELECT * FROM adapter_events ORDER BY id DESC LIMIT ?').all(limit) as AdapterEvent[])
    : (store.prepare('SELECT * FROM adapter_events WHERE columnist = ? ORDER BY id DESC LIMIT ?').all(columnist, limit) as AdapterEvent[]);
}

/** Saves the evaluation outcome; status becomes 'rejected' when `reject` (kept on disk either way). */
export function recordEvaluation(store: Store, id: string, evaluation: unknown, reason: string, reject = false): void {
  store
    .prepare(`UPDATE adapters SET eval = ?, reason = ?, status = CASE WHEN ? AND status = 'candidate' THEN 'rejected' ELSE status END WHERE id = ?`)
    .run(JSON.stringify(evaluation), reason, reject ? 1 : 0, id);
}

/** Registers a trained adapter (status candidate, or failed with the judge's reason). */
export function insertAdapter(
  store: Store,
  a: { id: string; baseModel: string; datasetId: string | null; path: string; status: AdapterStatus; metrics: unknown; reason: string | null; columnist?: string },
): void {
  store
    .prepare('INSERT INTO adapters (id, base_model, dataset_id, path, status, metrics, reason, columnist) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
    .run(a.id, a.baseModel, a.datasetId, a.path, a.status, JSON.stringify(a.metrics), a.reason, a.columnist ?? DEFAULT_COLUMNIST_NAME);
}

/** The latest promotion of `adapterId` (what was active before it), if any. */
export function lastPromotion(store: Store, adapterId: string): AdapterEvent | undefined {
  return store
    .prepare(`SELECT * FROM adapter_events WHERE adapter_id = ? AND action = 'promote' ORDER BY id DESC LIMIT 1`)
    .get(adapterId) as AdapterEvent | undefined;
}

/**
 * One change of the active adapter, atomically: the previous one retired, the target (null = base
 * model) active, the event recorded.
 */
export function applyActiveChange(
  store: Store,
  targetId: string | null,
  previousId: string | null,
  ev: { action: 'promote' | 'rollback'; actor: string; reason: string; columnist?: string },
): void {
  const tx = store.transaction(() => {
    if (previousId) {
      store
        .prepare(`UPDATE adapters SET status = 'retired', reason = ? WHERE id = ? AND status = 'active'`)
        .run(ev.action === 'rollback' ? `${ev.reason} by ${ev.actor}` : `replaced by ${targetId}`, previousId);
    }
    if (targetId) {
      store
        .prepare(`UPDATE adapters SET status = 'active', promoted_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), reason = ? WHERE id = ?`)
        .run(`${ev.reason} (${ev.actor})`, targetId);
    }
    store
      .prepare('INSERT INTO adapter_events (action, adapter_id, previous_id, actor, reason, columnist) VALUES (?, ?, ?, ?, ?, ?)')
      .run(ev.action, targetId, previousId, ev.actor, ev.reason, ev.columnist ?? DEFAULT_COLUMNIST_NAME);
  });
  tx.immediate();
}

/** Undoes the last applyActiveChange after a failed swap: the store names what really answers. */
export function undoActiveChange(store: Store, activeId: string | null, previous: AdapterRow | null, why: string): void {
  const undo = store.transaction(() => {
    if (activeId) store.prepare(`UPDATE adapters SET status = 'candidate', reason = ? WHERE id = ?`).run(`swap failed: ${why}`, activeId);
    if (previous) store.prepare(`UPDATE adapters SET status = 'active', reason = ? WHERE id = ?`).run(previous.reason, previous.id);
    store.prepare('DELETE FROM adapter_events WHERE id = (SELECT MAX(id) FROM adapter_events)').run();
  });
  undo.immediate();
}
