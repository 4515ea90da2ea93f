/**
 * The adapter registry: which adapters exist, which one is active, and the history of changes so
 * a rollback knows what was active before. At most one adapter is 'active' (a unique index in the
 * store enforces it); no active adapter means the plain base model answers.
 *
 * Changing the active adapter is a store transaction followed by `onActiveChange` (the serve
 * process hot-swaps the generation service there). If the swap fails, the store change is undone,
 * so the store never names an adapter that is not the one answering.
 */
import type { Store } from '../store/db.ts';
import { MorrisError } from '../errors.ts';

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
}

export interface AdapterEvent {
  id: number;
  at: string;
  action: 'promote' | 'rollback';
  adapter_id: string | null;
  previous_id: string | null;
  actor: string;
  reason: string | null;
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

export function listAdapters(store: Store, opts: { limit?: number } = {}): AdapterRow[] {
  return (store.prepare('SELECT * FROM adapters ORDER BY created_at DESC, rowid DESC LIMIT ?').all(opts.limit ?? 200) as Raw[]).map(toRow);
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

export function getActiveAdapter(store: Store): AdapterRow | undefined {
  const r = store.prepare(`SELECT * FROM adapters WHERE status = 'active'`).get() as Raw | undefined;
  return r && toRow(r);
}

export function adapterHistory(store: Store, limit = 50): AdapterEvent[] {
  return store.prepare('SELECT * FROM adapter_events ORDER BY id DESC LIMIT ?').all(limit) as AdapterEvent[];
}

/** Saves the evaluation outcome; status becomes 'rejected' when `reject` (kept on disk either way). */
export function recordEvaluation(store: Store, id: string, evaluation: unknown, reason: string, reject = false): void {
  store
    .prepare(`UPDATE adapters SET eval = ?, reason = ?, status = CASE WHEN ? AND status = 'candidate' THEN 'rejected' ELSE status END WHERE id = ?`)
    .run(JSON.stringify(evaluation), reason, reject ? 1 : 0, id);
}

/** Called after the store names a new active adapter (null = base model); throw to undo. */
export type ActiveChangeHook = (active: AdapterRow | null) => Promise<void>;

export interface ActiveChange {
  previous: AdapterRow | null;
  active: AdapterRow | null;
}

export class AdapterRegistry {
  constructor(
    readonly store: Store,
    private readonly onActiveChange?: ActiveChangeHook,
  ) {}

  list(): AdapterRow[] {
    return listAdapters(this.store);
  }

  active(): AdapterRow | undefined {
    return getActiveAdapter(this.store);
  }

  /** Makes `id` the active adapter; the one active before is retired. */
  async promote(id: string, actor: string, reason = 'promoted'): Promise<ActiveChange> {
    const target = getAdapter(this.store, id);
    if (target.status === 'active') return { previous: target, active: target };
    const previous = getActiveAdapter(this.store) ?? null;
    this.setActive(target.id, previous?.id ?? null, { action: 'promote', actor, reason });
    return this.afterChange(previous, target.id);
  }

  /**
   * Reactivates what was active before the current adapter was promoted (possibly the base model);
   * the current one is retired with the reason. Repeated rollbacks walk further back.
   */
  async rollback(actor: string, reason = 'rolled back'): Promise<ActiveChange> {
    const current = getActiveAdapter(this.store);
    if (!current) {
      throw new MorrisError('BAD_INPUT', 'No adapter is active: the base model is already answering, nothing to roll back.');
    }
    const ev = this.store
      .prepare(`SELECT * FROM adapter_events WHERE adapter_id = ? AND action = 'promote' ORDER BY id DESC LIMIT 1`)
      .get(current.id) as AdapterEvent | undefined;
    let targetId = ev?.previous_id ?? null;
    // The earlier adapter may have been deleted from disk/registry since; fall back to base.
    if (targetId && !findAdapter(this.store, targetId)) targetId = null;
    this.setActive(targetId, current.id, { action: 'rollback', actor, reason });
    return this.afterChange(current, targetId);
  }

  private setActive(
    targetId: string | null,
    previousId: string | null,
    ev: { action: 'promote' | 'rollback'; actor: string; reason: string },
  ): void {
    const tx = this.store.transaction(() => {
      if (previousId) {
        this.store
          .prepare(`UPDATE adapters SET status = 'retired', reason = ? WHERE id = ? AND status = 'active'`)
          .run(ev.action === 'rollback' ? `${ev.reason} by ${ev.actor}` : `replaced by ${targetId}`, previousId);
      }
      if (targetId) {
        this.store
          .prepare(`UPDATE adapters SET status = 'active', promoted_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), reason = ? WHERE id = ?`)
          .run(`${ev.reason} (${ev.actor})`, targetId);
      }
      this.store
        .prepare('INSERT INTO adapter_events (action, adapter_id, previous_id, actor, reason) VALUES (?, ?, ?, ?, ?)')
        .run(ev.action, targetId, previousId, ev.actor, ev.reason);
    });
    tx.immediate();
  }

  private async afterChange(previous: AdapterRow | null, activeId: string | null): Promise<ActiveChange> {
    const active = activeId ? getAdapter(this.store, activeId) : null;
    if (this.onActiveChange) {
      try {
        await this.onActiveChange(active);
      } catch (e) {
        // Undo: the store must keep naming the adapter that really answers.
        const undo = this.store.transaction(() => {
          if (activeId) this.store.prepare(`UPDATE adapters SET status = 'candidate', reason = ? WHERE id = ?`).run(`swap failed: ${(e as Error).message}`, activeId);
          if (previous) this.store.prepare(`UPDATE adapters SET status = 'active', reason = ? WHERE id = ?`).run(previous.reason, previous.id);
          this.store.prepare('DELETE FROM adapter_events WHERE id = (SELECT MAX(id) FROM adapter_events)').run();
        });
        undo.immediate();
        throw new MorrisError('ADAPTER_MISMATCH', `Could not switch the generation service to ${activeId ?? 'the base model'}: ${(e as Error).message}`, {
          hint: 'The previous adapter stays active. Check the adapter was trained for the current base model.',
          cause: e,
        });
      }
    }
    return { previous, active };
  }
}
