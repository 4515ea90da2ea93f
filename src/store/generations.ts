/**
 * The `generations` table, the only module with its SQL: one row per request that got past
 * parsing (refused and rate-limited ones included), opened before generation starts and closed
 * with its outcome. The row id is the reference id a person sees when something fails.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from './db.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';

/** Who asked (the bots' Requester has this shape; the store does not import the bots). */
export interface GenerationRequester {
  platform: string;
  userId: string;
  channelId?: string;
}

export type GenerationOutcome = 'running' | 'ok' | 'cut' | 'cancelled' | 'failed' | 'refused' | 'rate_limited';

/** Topics are stored up to this many characters (a refused 50 kB topic is not kept whole). */
export const STORED_TOPIC_MAX_CHARS = 2000;

/** A first ask, the same asked again (Regenerate), or a change asked for (a revision). */
export type GenerationKind = 'ask' | 'regenerate' | 'revise';

/** Short, readable reference ids such as `g-7f3a9c2e41`. */
export function newGenerationId(): string {
  return `g-${randomBytes(5).toString('hex')}`;
}

export function openGeneration(
  store: Store,
  row: {
    id: string;
    requester: GenerationRequester;
    topic: string;
    outcome?: GenerationOutcome;
    error?: string;
    /** The request's options (JSON-able), kept so Regenerate can ask the same again. */
    options?: unknown;
    /** The generation this one regenerates or revises. */
    parentId?: string;
    /** How it came to be; with a parent, 'regenerate' unless told it is a revision. */
    kind?: GenerationKind;
    /** A revision's instruction (kept by its regenerations too, which redo the revision). */
    instruction?: string;
    /** The voice asked for (default: the default columnist). */
    columnist?: string;
  },
): void {
  const kind = row.kind ?? (row.parentId ? 'regenerate' : 'ask');
  store
    .prepare(
      `INSERT INTO generations (id, platform, user_id, channel_id, topic, outcome, error, options, parent_id, kind, instruction, columnist)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(
      row.id,
      row.requester.platform,
      row.requester.userId,
      row.requester.channelId ?? null,
      row.topic.slice(0, STORED_TOPIC_MAX_CHARS),
      row.outcome ?? 'running',
      row.error ?? null,
      row.options === undefined ? null : JSON.stringify(row.options),
      row.parentId ?? null,
      kind,
      row.instruction ?? null,
      row.columnist ?? DEFAULT_COLUMNIST_NAME,
    );
}

/** The ids of every generation written in `columnist`'s voice. */
export function generationIdsOfColumnist(store: Store, columnist: string): string[] {
  return (store.prepare('SELECT id FROM generations WHERE columnist = ?').all(columnist) as { id: string }[]).map((r) => r.id);
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
    /** The article's final text (body only, no trailer): what readers rate and edit. */
    article?: string | null;
  },
): void {
  store
    .prepare(
      `UPDATE generations SET outcome = ?, duration_ms = ?, ttft_ms = ?, n_chars = ?,
         base_model = COALESCE(?, base_model), adapter_id = COALESCE(?, adapter_id),
         dataset_id = COALESCE(?, dataset_id), error = ?, article = COALESCE(?, article)
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
      result.article ?? null,
      id,
    );
}

/** One finished (or running) generation, as feedback and Regenerate need it. */
export interface GenerationRecord {
  id: string;
  platform: string;
  userId: string | null;
  channelId: string | null;
  topic: string;
  outcome: GenerationOutcome;
  article: string | null;
  options: unknown;
  parentId: string | null;
  kind: GenerationKind;
  instruction: string | null;
  baseModel: string | null;
  adapterId: string | null;
  datasetId: string | null;
  startedAt: string;
  /** The voice it was written in (Regenerate asks the same one). */
  columnist: string;
}

interface GenerationRow {
  id: string;
  platform: string;
  user_id: string | null;
  channel_id: string | null;
  topic: string;
  outcome: GenerationOutcome;
  article: string | null;
  options: string | null;
  parent_id: string | null;
  kind: GenerationKind;
  instruction: string | null;
  base_model: string | null;
  adapter_id: string | null;
  dataset_id: string | null;
  started_at: string;
  columnist: string;
}

function toRecord(r: GenerationRow): GenerationRecord {
  return {
    id: r.id,
    platform: r.platform,
    userId: r.user_id,
    channelId: r.channel_id,
    topic: r.topic,
    outcome: r.outcome,
    article: r.article,
    options: r.options === null ? null : (JSON.parse(r.options) as unknown),
    parentId: r.parent_id,
    kind: r.kind,
    instruction: r.instruction,
    baseModel: r.base_model,
    adapterId: r.adapter_id,
    datasetId: r.dataset_id,
    startedAt: r.started_at,
    columnist: r.columnist,
  };
}

const RECORD_COLUMNS = 'id, platform, user_id, channel_id, topic, outcome, article, options, parent_id, kind, instruction, base_model, adapter_id, dataset_id, started_at, columnist';

export function getGeneration(store: Store, id: string): GenerationRecord | undefined {
  const row = store.prepare(`SELECT ${RECORD_COLUMNS} FROM generations WHERE id = ?`).get(id) as GenerationRow | undefined;
  return row && toRecord(row);
}

/**
 * Every generation of one request: the first ask (or revision) and all its regenerations (and
 * theirs), oldest first; alternatives to one another for one prompt. A revision starts a family of
 * its own (its prompt differs). `id` may be any member of the family.
 */
export function generationFamily(store: Store, id: string): GenerationRecord[] {
  const rows = store
    .prepare(
      `WITH RECURSIVE up(id, parent_id) AS (
         SELECT id, CASE WHEN kind = 'regenerate' THEN parent_id END FROM generations WHERE id = ?
         UNION SELECT p.id, CASE WHEN p.kind = 'regenerate' THEN p.parent_id END
           FROM generations p JOIN up ON p.id = up.parent_id
       ),
       root AS (SELECT id FROM up WHERE parent_id IS NULL),
       down(id) AS (
         SELECT id FROM root
         UNION SELECT g.id FROM generations g JOIN down ON g.parent_id = down.id WHERE g.kind = 'regenerate'
       )
       SELECT ${RECORD_COLUMNS} FROM generations WHERE id IN (SELECT id FROM down) ORDER BY started_at, rowid`,
    )
    .all(id) as GenerationRow[];
  return rows.map(toRecord);
}

/**
 * What a generation was asked: its topic and, for a revision (or a regeneration of one), the
 * article it revises and the instruction. This is the prompt its text answers, shared by its whole
 * family, so regenerating it asks the same and a preference pair over it has one prompt.
 */
export function askedFor(store: Store, id: string): { topic: string; revision?: { previousArticle: string; instruction: string } } | undefined {
  let g = getGeneration(store, id);
  const topic = g?.topic;
  // A regeneration asks what its parent asked; walking up ends at the first ask or a revision.
  for (let hops = 0; g && g.kind === 'regenerate' && g.parentId && hops < 10_000; hops++) g = getGeneration(store, g.parentId);
  if (topic === undefined) return undefined;
  if (g?.kind !== 'revise' || !g.parentId || g.instruction === null) return { topic };
  const previous = getGeneration(store, g.parentId)?.article;
  return previous ? { topic, revision: { previousArticle: previous, instruction: g.instruction } } : { topic };
}

// ---------------------------------------------------------------- the dashboard's reads

/** A generation as the dashboard lists it: the record, how it went, and what regenerated it. */
export interface GenerationEntry extends GenerationRecord {
  durationMs: number | null;
  nChars: number | null;
  error: string | null;
  /** Generations whose parent is this one, oldest first: its Regenerate clicks, and revisions asked of it. */
  regenerations: string[];
  revisions: string[];
}

interface EntryRow extends GenerationRow {
  duration_ms: number | null;
  n_chars: number | null;
  error: string | null;
}

/** Children of each id in one query, so a page of 100 articles is two statements, not 101. */
function childrenOf(store: Store, ids: readonly string[]): Map<string, { regenerations: string[]; revisions: string[] }> {
  const out = new Map(ids.map((id) => [id, { regenerations: [] as string[], revisions: [] as string[] }]));
  if (!ids.length) return out;
  const rows = store
    .prepare(`SELECT id, parent_id AS parentId, kind FROM generations WHERE parent_id IN (SELECT value FROM json_each(?)) ORDER BY started_at, rowid`)
    .all(JSON.stringify(ids)) as { id: string; parentId: string; kind: GenerationKind }[];
  for (const r of rows) out.get(r.parentId)?.[r.kind === 'revise' ? 'revisions' : 'regenerations'].push(r.id);
  return out;
}

function toEntries(store: Store, rows: readonly EntryRow[]): GenerationEntry[] {
  const children = childrenOf(store, rows.map((r) => r.id));
  return rows.map((r) => ({ ...toRecord(r), durationMs: r.duration_ms, nChars: r.n_chars, error: r.error, regenerations: [], revisions: [], ...children.get(r.id) }));
}

const ENTRY_COLUMNS = `${RECORD_COLUMNS}, duration_ms, n_chars, error`;

/** One page of generations, newest first, and how many there are in all. */
export function listGenerations(store: Store, page: { limit: number; offset: number }): { total: number; items: GenerationEntry[] } {
  const { n } = store.prepare('SELECT COUNT(*) AS n FROM generations').get() as { n: number };
  const rows = store.prepare(`SELECT ${ENTRY_COLUMNS} FROM generations ORDER BY started_at DESC, rowid DESC LIMIT ? OFFSET ?`).all(page.limit, page.offset) as EntryRow[];
  return { total: n, items: toEntries(store, rows) };
}

export function getGenerationEntry(store: Store, id: string): GenerationEntry | undefined {
  const row = store.prepare(`SELECT ${ENTRY_COLUMNS} FROM generations WHERE id = ?`).get(id) as EntryRow | undefined;
  return row && toEntries(store, [row])[0];
}

// ---------------------------------------------------------------- one person's data (privacy)

/** A person as the bots know them: a user id is only unique within its platform. */
export interface PersonRef {
  platform: string;
  userId: string;
}

/** Ids of every generation this person asked for (refused and failed ones included). */
export function generationIdsOf(store: Store, person: PersonRef): string[] {
  return (store.prepare('SELECT id FROM generations WHERE platform = ? AND user_id = ? ORDER BY rowid').all(person.platform, person.userId) as { id: string }[]).map(
    (r) => r.id,
  );
}

/**
 * Someone else's regenerations of these articles: they belong to whoever asked for them, so they
 * are kept, only their link to the deleted article goes (see deleteGenerations).
 */
export function regenerationsByOthers(store: Store, ids: readonly string[]): number {
  if (!ids.length) return 0;
  const row = store
    .prepare(
      `SELECT COUNT(*) AS n FROM generations
       WHERE parent_id IN (SELECT value FROM json_each(?)) AND id NOT IN (SELECT value FROM json_each(?))`,
    )
    .get(JSON.stringify(ids), JSON.stringify(ids)) as { n: number };
  return row.n;
}

/**
 * Deletes these generations. Rows pointing at them through parent_id are unlinked first (the
 * foreign key would refuse the delete otherwise); the caller must already have removed their
 * feedback and message links (store/feedback.ts), in the same transaction.
 */
export function deleteGenerations(store: Store, ids: readonly string[]): { deleted: number; unlinked: number } {
  if (!ids.length) return { deleted: 0, unlinked: 0 };
  const json = JSON.stringify(ids);
  const unlinked = regenerationsByOthers(store, ids);
  store.prepare('UPDATE generations SET parent_id = NULL WHERE parent_id IN (SELECT value FROM json_each(?))').run(json);
  const deleted = store.prepare('DELETE FROM generations WHERE id IN (SELECT value FROM json_each(?))').run(json).changes;
  return { deleted, unlinked };
}
