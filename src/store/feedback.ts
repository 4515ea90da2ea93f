/**
 * The `feedback` and `feedback_messages` tables, the only module with their SQL: every reader
 * signal on an article (a 👍/👎 rating, a Regenerate click, a pick among regenerations, a suggested
 * edit), who gave it and which model it judges; and which platform messages show which article.
 * Preference pairs for DPO (TRL's chosen/rejected) are derived here from those signals, never
 * stored, so a changed rule applies to all history at once.
 */
import { MorrisError } from '../errors.ts';
import type { Store } from './db.ts';
import { askedFor, generationFamily, generationIdsOfColumnist, getGeneration, type GenerationRecord } from './generations.ts';

export type FeedbackKind = 'rating' | 'regenerate' | 'pick' | 'edit';

export interface FeedbackInput {
  generationId: string;
  kind: FeedbackKind;
  /** +1 (👍) or -1 (👎); ratings only. */
  value?: 1 | -1;
  /** The reader's version of the article; edits only. */
  editedText?: string;
  /** Where the signal came from and who gave it (the clicker, not necessarily the requester). */
  platform: string;
  userId: string;
}

/** Edits are kept up to this many characters (an article is a few thousand). */
export const EDIT_MAX_CHARS = 40_000;

/** Records one signal; the article's adapter and dataset are copied onto it. */
export function recordFeedback(store: Store, input: FeedbackInput): { id: number; generation: GenerationRecord } {
  const generation = getGeneration(store, input.generationId);
  if (!generation) {
    throw new MorrisError('NOT_FOUND', `No article ${input.generationId} to give feedback on.`, {
      hint: 'The article may be from another Morris database; ask for a new one.',
    });
  }
  if (input.kind === 'rating' && input.value !== 1 && input.value !== -1) throw new MorrisError('BAD_INPUT', 'A rating is +1 or -1.');
  if (input.kind === 'edit' && !input.editedText?.trim()) throw new MorrisError('BAD_INPUT', 'An edit needs the edited text.', { hint: 'Change the article text, then submit.' });
  const info = store
    .prepare(
      `INSERT INTO feedback (generation_id, kind, value, edited_text, platform, user_id, adapter_id, dataset_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(
      generation.id,
      input.kind,
      input.kind === 'rating' ? input.value! : null,
      input.kind === 'edit' ? input.editedText!.slice(0, EDIT_MAX_CHARS) : null,
      input.platform,
      input.userId,
      generation.adapterId,
      generation.datasetId,
    );
  return { id: Number(info.lastInsertRowid), generation };
}

export interface FeedbackRow {
  id: number;
  generationId: string;
  kind: FeedbackKind;
  value: number | null;
  editedText: string | null;
  platform: string;
  userId: string;
  adapterId: string | null;
  datasetId: string | null;
  at: string;
}

export function listFeedback(store: Store, generationId?: string): FeedbackRow[] {
  const sql = `SELECT id, generation_id AS generationId, kind, value, edited_text AS editedText, platform, user_id AS userId,
                      adapter_id AS adapterId, dataset_id AS datasetId, at
               FROM feedback ${generationId ? 'WHERE generation_id = ?' : ''} ORDER BY id`;
  return (generationId ? store.prepare(sql).all(generationId) : store.prepare(sql).all()) as FeedbackRow[];
}

/** The signals on each of these articles, oldest first (the dashboard's page of articles). */
export function feedbackFor(store: Store, generationIds: readonly string[]): FeedbackRow[] {
  if (!generationIds.length) return [];
  return store
    .prepare(
      `SELECT id, generation_id AS generationId, kind, value, edited_text AS editedText, platform, user_id AS userId,
              adapter_id AS adapterId, dataset_id AS datasetId, at
       FROM feedback WHERE generation_id IN (SELECT value FROM json_each(?)) ORDER BY id`,
    )
    .all(JSON.stringify(generationIds)) as FeedbackRow[];
}

// ---------------------------------------------------------------- messages showing an article

/** Remembers that these platform messages show `generationId` (a long article spans several). */
export function linkArticleMessages(store: Store, platform: string, messageIds: readonly string[], generationId: string): void {
  const insert = store.prepare('INSERT OR REPLACE INTO feedback_messages (platform, message_id, generation_id) VALUES (?, ?, ?)');
  store.transaction(() => {
    for (const m of messageIds) insert.run(platform, m, generationId);
  })();
}

export function articleForMessage(store: Store, platform: string, messageId: string): string | undefined {
  const row = store.prepare('SELECT generation_id AS id FROM feedback_messages WHERE platform = ? AND message_id = ?').get(platform, messageId) as
    | { id: string }
    | undefined;
  return row?.id;
}

// ---------------------------------------------------------------- preference pairs

export type PairSource = 'edit' | 'rating' | 'pick';
export const PAIR_SOURCES: readonly PairSource[] = ['edit', 'rating', 'pick'];

export interface PreferencePair {
  /** What the texts answer: the topic and, for a revision, the article revised and the instruction. */
  topic: string;
  revision?: { previousArticle: string; instruction: string };
  chosen: string;
  rejected: string;
  source: PairSource;
  /** The generation whose text is `rejected` (for an edit, the article that was edited). */
  rejectedId: string;
  /** The generation whose text is `chosen`; null for an edit (the reader wrote it). */
  chosenId: string | null;
  /** The first generation of the request the two texts answer (its family, see generationFamily). */
  familyId: string;
}

/** A reader's latest rating counts; clicking 👍 then 👎 is a change of mind, not two votes. */
function netRatings(rows: readonly FeedbackRow[]): Map<string, number> {
  const latest = new Map<string, { generationId: string; value: number }>();
  for (const r of rows) if (r.kind === 'rating' && r.value !== null) latest.set(`${r.generationId}\u0000${r.platform}:${r.userId}`, { generationId: r.generationId, value: r.value });
  const net = new Map<string, number>();
  for (const { generationId, value } of latest.values()) net.set(generationId, (net.get(generationId) ?? 0) + value);
  return net;
}

/**
 * Pairs, in feedback order:
 * 1. an edit: chosen = the reader's text, rejected = the article as written;
 * 2. within one request's family (the first ask or a revision, and its regenerations): every
 *    article readers rated up on balance against every one rated down ('rating');
 * 3. a reader's choice among the takes of one request: an article rated up on balance (or
 *    picked) against each other take of it nobody rated either way, or whose votes cancel out
 *    ('pick': regenerate, then 👍 on one and nothing on the other).
 * Articles without text (failed, or from before texts were kept) make no pairs. With `columnist`,
 * only pairs on that voice's articles (a pair trains the voice its texts were written in).
 */
export function preferencePairs(store: Store, columnist?: string): PreferencePair[] {
  const all = derivePairs(store);
  if (columnist === undefined) return all;
  const ofVoice = new Set(generationIdsOfColumnist(store, columnist));
  return all.filter((p) => ofVoice.has(p.rejectedId));
}

/** How many pairs each voice has (by its articles), derived once for all voices. */
export function pairCountsByColumnist(store: Store): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of derivePairs(store)) {
    const voice = getGeneration(store, p.rejectedId)?.columnist;
    if (voice) counts.set(voice, (counts.get(voice) ?? 0) + 1);
  }
  return counts;
}

function derivePairs(store: Store): PreferencePair[] {
  const rows = listFeedback(store);
  const pairs: PreferencePair[] = [];
  const seen = new Set<string>();
  const add = (p: PreferencePair) => {
    const key = `${p.source}\u0000${p.chosenId ?? p.chosen}\u0000${p.rejectedId}`;
    if (seen.has(key) || !p.chosen.trim() || !p.rejected.trim() || p.chosen.trim() === p.rejected.trim()) return;
    seen.add(key);
    pairs.push(p);
  };
  const prompts = new Map<string, ReturnType<typeof askedFor>>();
  const prompt = (id: string) => {
    if (!prompts.has(id)) prompts.set(id, askedFor(store, id));
    return prompts.get(id);
  };
  const context = (id: string) => {
    const asked = prompt(id);
    return asked ? { topic: asked.topic, ...(asked.revision ? { revision: asked.revision } : {}) } : undefined;
  };
  for (const r of rows) {
    if (r.kind !== 'edit' || r.editedText === null) continue;
    const g = getGeneration(store, r.generationId);
    const asked = context(r.generationId);
    if (g?.article && asked) {
      const familyId = generationFamily(store, g.id)[0]?.id ?? g.id;
      add({ ...asked, chosen: r.editedText, rejected: g.article, source: 'edit', rejectedId: g.id, chosenId: null, familyId });
    }
  }
  const net = netRatings(rows);
  const picked = new Set(rows.filter((r) => r.kind === 'pick').map((r) => r.generationId));
  const families = new Map<string, GenerationRecord[]>();
  for (const id of [...net.keys(), ...picked]) {
    const family = generationFamily(store, id);
    if (family.length > 1) families.set(family[0]!.id, family);
  }
  for (const [familyId, family] of families) {
    const asked = context(familyId);
    if (!asked) continue;
    const written = family.filter((g) => g.article);
    const preferred = written.filter((g) => (net.get(g.id) ?? 0) > 0 || picked.has(g.id));
    const down = written.filter((g) => (net.get(g.id) ?? 0) < 0 && !picked.has(g.id));
    const neither = written.filter((g) => (net.get(g.id) ?? 0) === 0 && !picked.has(g.id));
    for (const c of preferred) {
      for (const r of down) add({ ...asked, chosen: c.article!, rejected: r.article!, source: 'rating', chosenId: c.id, rejectedId: r.id, familyId });
    }
    for (const c of preferred) {
      for (const r of neither) add({ ...asked, chosen: c.article!, rejected: r.article!, source: 'pick', chosenId: c.id, rejectedId: r.id, familyId });
    }
  }
  return pairs;
}

// ---------------------------------------------------------------- stats

export interface FeedbackStats {
  ratings: { up: number; down: number };
  regenerations: number;
  picks: number;
  edits: number;
  pairs: { total: number } & Record<PairSource, number>;
  /** Net rating per adapter that wrote a rated article ('none' for the base model alone). */
  byAdapter: { adapterId: string; up: number; down: number }[];
}

/** Every voice's signals, or (with `columnist`) only those on that voice's articles. */
export function feedbackStats(store: Store, columnist?: string): FeedbackStats {
  // @ids NULL: every voice. The voice is the article's (generations.columnist), not stored twice.
  const ofVoice = `(@ids IS NULL OR generation_id IN (SELECT value FROM json_each(@ids)))`;
  const voice = { ids: columnist === undefined ? null : JSON.stringify(generationIdsOfColumnist(store, columnist)) };
  const counts = store.prepare(`SELECT kind, value, COUNT(*) AS n FROM feedback WHERE ${ofVoice} GROUP BY kind, value`).all(voice) as {
    kind: FeedbackKind;
    value: number | null;
    n: number;
  }[];
  const count = (kind: FeedbackKind, value?: number) => counts.filter((c) => c.kind === kind && (value === undefined || c.value === value)).reduce((s, c) => s + c.n, 0);
  const pairs = preferencePairs(store, columnist);
  const bySource = (s: PairSource) => pairs.filter((p) => p.source === s).length;
  const byAdapter = store
    .prepare(
      `SELECT COALESCE(adapter_id, 'none') AS adapterId, SUM(value = 1) AS up, SUM(value = -1) AS down
       FROM feedback WHERE kind = 'rating' AND ${ofVoice} GROUP BY COALESCE(adapter_id, 'none') ORDER BY adapterId`,
    )
    .all(voice) as { adapterId: string; up: number; down: number }[];
  return {
    ratings: { up: count('rating', 1), down: count('rating', -1) },
    regenerations: count('regenerate'),
    picks: count('pick'),
    edits: count('edit'),
    pairs: { total: pairs.length, edit: bySource('edit'), rating: bySource('rating'), pick: bySource('pick') },
    byAdapter,
  };
}

// ---------------------------------------------------------------- one person's data (privacy)

export interface PersonFeedbackCounts {
  /** Signals this person gave, on anyone's article. */
  given: number;
  /** Signals other people gave on this person's articles. */
  onTheirArticles: number;
  /** Platform messages linked to this person's articles. */
  messages: number;
}

const PERSON_FEEDBACK = `(platform = ? AND user_id = ?) OR generation_id IN (SELECT value FROM json_each(?))`;

/** What deletePersonFeedback would remove; `articleIds` are the person's generations. */
export function countPersonFeedback(store: Store, person: { platform: string; userId: string }, articleIds: readonly string[]): PersonFeedbackCounts {
  const json = JSON.stringify(articleIds);
  const given = (store.prepare('SELECT COUNT(*) AS n FROM feedback WHERE platform = ? AND user_id = ?').get(person.platform, person.userId) as { n: number }).n;
  const onTheirArticles = (
    store
      .prepare(
        `SELECT COUNT(*) AS n FROM feedback
         WHERE generation_id IN (SELECT value FROM json_each(?)) AND NOT (platform = ? AND user_id = ?)`,
      )
      .get(json, person.platform, person.userId) as { n: number }
  ).n;
  const messages = (store.prepare('SELECT COUNT(*) AS n FROM feedback_messages WHERE generation_id IN (SELECT value FROM json_each(?))').get(json) as { n: number }).n;
  return { given, onTheirArticles, messages };
}

/**
 * Deletes the signals this person gave and every signal and message link on their articles.
 * Preference pairs are derived from these rows (never stored), so pairs built on them go too.
 * Run it in the caller's transaction, before their generations are deleted.
 */
export function deletePersonFeedback(store: Store, person: { platform: string; userId: string }, articleIds: readonly string[]): PersonFeedbackCounts {
  const counts = countPersonFeedback(store, person, articleIds);
  const json = JSON.stringify(articleIds);
  store.prepare(`DELETE FROM feedback WHERE ${PERSON_FEEDBACK}`).run(person.platform, person.userId, json);
  store.prepare('DELETE FROM feedback_messages WHERE generation_id IN (SELECT value FROM json_each(?))').run(json);
  return counts;
}
