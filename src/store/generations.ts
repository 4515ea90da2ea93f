/**
 * The `generations` table, the only module with its SQL: one row per request that got past
 * parsing (refused and rate-limited ones included), opened before generation starts and closed
 * with its outcome. The row id is the reference id a person sees when something fails.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from './db.ts';

/** Who asked (the bots' Requester has this shape; the store does not import the bots). */
export interface GenerationRequester {
  platform: string;
  userId: string;
  channelId?: string;
}

export type GenerationOutcome = 'running' | 'ok' | 'cut' | 'cancelled' | 'failed' | 'refused' | 'rate_limited';

/** Topics are stored up to this many characters (a refused 50 kB topic is not kept whole). */
export const STORED_TOPIC_MAX_CHARS = 2000;

/** Short, readable reference ids such as `g-7f3a9c2e41`. */
export function newGenerationId(): string {
  return `g-${randomBytes(5).toString('hex')}`;
}

export function openGeneration(
  store: Store,
  row: { id: string; requester: GenerationRequester; topic: string; outcome?: GenerationOutcome; error?: string },
): void {
  store
    .prepare(
      `INSERT INTO generations (id, platform, user_id, channel_id, topic, outcome, error)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(
      row.id,
      row.requester.platform,
      row.requester.userId,
      row.requester.channelId ?? null,
      row.topic.slice(0, STORED_TOPIC_MAX_CHARS),
      row.outcome ?? 'running',
      row.error ?? null,
    );
}

export function closeGeneration(
  store: Store,
  id: string,
  result: {
    outcome: GenerationOutcome;
    durationMs: number;
    ttftMs?: number | null;
    nChars?: number;
    baseModel?: string | null;
    adapterId?: string | null;
    datasetId?: string | null;
    error?: string | null;
  },
): void {
  store
    .prepare(
      `UPDATE generations SET outcome = ?, duration_ms = ?, ttft_ms = ?, n_chars = ?,
         base_model = COALESCE(?, base_model), adapter_id = COALESCE(?, adapter_id),
         dataset_id = COALESCE(?, dataset_id), error = ?
       WHERE id = ?`,
    )
    .run(
      result.outcome,
      Math.round(result.durationMs),
      result.ttftMs == null ? null : Math.round(result.ttftMs),
      result.nChars ?? null,
      result.baseModel ?? null,
      result.adapterId ?? null,
      result.datasetId ?? null,
      result.error ?? null,
      id,
    );
}
