/**
 * The adapter registry: which adapters exist, which one is active, and the history of changes so
 * a rollback knows what was active before. Each columnist has its own line of adapters and at most
 * one 'active' one (a unique index in the store enforces it); no active adapter means the plain
 * base model answers for that voice.
 *
 * Changing the active adapter is a store transaction followed by `onActiveChange` (the serve
 * process hot-swaps the generation service there). If the swap fails, the store change is undone,
 * so the store never names an adapter that is not the one answering.
 */
import type { Store } from '../store/db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import { MorrisError } from '../errors.ts';
import {
  applyActiveChange,
  findAdapter,
  getActiveAdapter,
  getAdapter,
  lastPromotion,
  listAdapters,
  undoActiveChange,
  type AdapterRow,
} from '../store/adapters.ts';

// The table's reads are used across the app under this module's name too.
export {
  activeAdapters,
  adapterHistory,
  adapterValLoss,
  findAdapter,
  getActiveAdapter,
  getAdapter,
  listAdapters,
  recordEvaluation,
  type AdapterEvent,
  type AdapterRow,
  type AdapterStatus,
} from '../store/adapters.ts';

/** Called after the store names a new active adapter (null = base model) for `columnist`; throw to undo. */
export type ActiveChangeHook = (active: AdapterRow | null, columnist: string) => Promise<void>;

export interface ActiveChange {
  previous: AdapterRow | null;
  active: AdapterRow | null;
}

export class AdapterRegistry {
  constructor(
    readonly store: Store,
    private readonly onActiveChange?: ActiveChangeHook,
  ) {}

  list(columnist?: string): AdapterRow[] {
    return listAdapters(this.store, columnist === undefined ? {} : { columnist });
  }

  /** The columnist's active adapter (default: the default columnist's). */
  active(columnist: string = DEFAULT_COLUMNIST_NAME): AdapterRow | undefined {
    return getActiveAdapter(this.store, columnist);
  }

  /** Makes `id` its columnist's active adapter; the one active for that columnist before is retired. */
  async promote(id: string, actor: string, reason = 'promoted'): Promise<ActiveChange> {
    const target = getAdapter(this.store, id);
    if (target.status === 'active') return { previous: target, active: target };
    const previous = getActiveAdapter(this.store, target.columnist) ?? null;
    this.setActive(target.id, previous?.id ?? null, { action: 'promote', actor, reason, columnist: target.columnist });
    return this.afterChange(previous, target.id, target.columnist);
  }

  /**
   * Reactivates what was active before the current adapter was promoted (possibly the base model);
   * the current one is retired with the reason. Repeated rollbacks walk further back.
   */
  async rollback(actor: string, reason = 'rolled back', columnist: string = DEFAULT_COLUMNIST_NAME): Promise<ActiveChange> {
    const current = getActiveAdapter(this.store, columnist);
    if (!current) {
      throw new MorrisError('BAD_INPUT', `No adapter is active for ${columnist}: the base model is already answering, nothing to roll back.`);
    }
    const ev = lastPromotion(this.store, current.id);
    let targetId = ev?.previous_id ?? null;
    // The earlier adapter may have been deleted from disk/registry since; fall back to base.
    if (targetId && !findAdapter(this.store, targetId)) targetId = null;
    this.setActive(targetId, current.id, { action: 'rollback', actor, reason, columnist });
    return this.afterChange(current, targetId, columnist);
  }

  private setActive(
    targetId: string | null,
    previousId: string | null,
    ev: { action: 'promote' | 'rollback'; actor: string; reason: string; columnist: string },
  ): void {
    applyActiveChange(this.store, targetId, previousId, ev);
  }

  private async afterChange(previous: AdapterRow | null, activeId: string | null, columnist: string): Promise<ActiveChange> {
    const active = activeId ? getAdapter(this.store, activeId) : null;
    if (this.onActiveChange) {
      try {
        await this.onActiveChange(active, columnist);
      } catch (e) {
        // Undo: the store must keep naming the adapter that really answers.
        undoActiveChange(this.store, activeId, previous, (e as Error).message);
        throw new MorrisError('ADAPTER_MISMATCH', `Could not switch the generation service to ${activeId ?? 'the base model'}: ${(e as Error).message}`, {
          hint: 'The previous adapter stays active. Check the adapter was trained for the current base model.',
          cause: e,
        });
      }
    }
    return { previous, active };
  }
}
