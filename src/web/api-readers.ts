/**
 * The readers' side of the dashboard API (docs/api.md, "Articles and feedback"): every article
 * Morris wrote with its lineage and what readers said about it, and the preference pairs the
 * store derives from that. Read-only and admin-only like every route without `access: 'public'`;
 * the SQL stays in store/generations.ts and store/feedback.ts, which own those tables.
 */
import type { Store } from '../store/db.ts';
import { MorrisError } from '../errors.ts';
import { feedbackFor, listFeedback, PAIR_SOURCES, preferencePairs, type FeedbackRow, type PairSource, type PreferencePair } from '../store/feedback.ts';
import { generationFamily, getGenerationEntry, listGenerations, type GenerationEntry } from '../store/generations.ts';
import type { Route } from './router.ts';

/** A page holds at most this many rows: a list page, not an export (the store has that). */
export const MAX_PAGE = 100;
export const DEFAULT_PAGE = 20;
/** The list shows this much of each article; its record has the whole text. */
export const EXCERPT_CHARS = 280;

/**
 * The query of a list route, checked: unknown names are refused rather than ignored, so a typo
 * (`?limt=5`) says so instead of silently returning the default page.
 */
function checkQuery(query: URLSearchParams, route: string, allowed: readonly string[]): void {
  for (const name of new Set(query.keys())) {
    if (!allowed.includes(name)) throw new MorrisError('BAD_INPUT', `Unknown parameter "${name}" for ${route}.`, { hint: `It takes ${allowed.join(', ')}.` });
    if (query.getAll(name).length > 1) throw new MorrisError('BAD_INPUT', `Parameter "${name}" is given more than once.`);
  }
}

function intQuery(query: URLSearchParams, name: string, dflt: number, min: number, max: number): number {
  const v = query.get(name);
  if (v == null) return dflt;
  // Number('') is 0 and Number(' 5') is 5: only plain digits are a whole number here.
  const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new MorrisError('BAD_INPUT', `"${name}" must be a whole number from ${min} to ${max}, got "${v}".`);
  return n;
}

function pageQuery(query: URLSearchParams) {
  return { limit: intQuery(query, 'limit', DEFAULT_PAGE, 1, MAX_PAGE), offset: intQuery(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER) };
}

/** Generation ids are short tokens (`g-7f3a9c2e41`); anything else cannot be one. */
function checkId(id: string): string {
  if (!/^[\w-]{1,64}$/.test(id)) throw new MorrisError('BAD_INPUT', `"${id.slice(0, 80)}" is not a generation id.`, { hint: 'Ids look like g-7f3a9c2e41.' });
  return id;
}

/** What the list shows of a signal: an edit's text is in the article's record, not the list. */
function signal(f: FeedbackRow) {
  return { id: f.id, kind: f.kind, value: f.value, platform: f.platform, userId: f.userId, at: f.at, ...(f.kind === 'edit' ? { editChars: f.editedText?.length ?? 0 } : {}) };
}

function tally(rows: readonly FeedbackRow[]) {
  const n = (kind: FeedbackRow['kind'], value?: number) => rows.filter((r) => r.kind === kind && (value === undefined || r.value === value)).length;
  return { up: n('rating', 1), down: n('rating', -1), regenerate: n('regenerate'), pick: n('pick'), edit: n('edit') };
}

/** A list row: lineage, outcome, the article's start, and its feedback. */
function listItem(g: GenerationEntry, feedback: readonly FeedbackRow[]) {
  const { article, options: _options, ...lineage } = g;
  return {
    ...lineage,
    excerpt: article === null ? null : article.slice(0, EXCERPT_CHARS),
    articleChars: article?.length ?? 0,
    feedback: { counts: tally(feedback), signals: feedback.map(signal) },
  };
}

export function generationsPage(store: Store, query: URLSearchParams) {
  checkQuery(query, 'GET /api/generations', ['limit', 'offset']);
  const { limit, offset } = pageQuery(query);
  const { total, items } = listGenerations(store, { limit, offset });
  // Node 20 has no Map.groupBy.
  const byArticle = new Map<string, FeedbackRow[]>();
  for (const f of feedbackFor(store, items.map((g) => g.id))) {
    byArticle.set(f.generationId, [...(byArticle.get(f.generationId) ?? []), f]);
  }
  return { total, limit, offset, generations: items.map((g) => listItem(g, byArticle.get(g.id) ?? [])) };
}

/** One article's whole record: lineage, text, every signal (edits with their text), its family. */
export function generationRecord(store: Store, id: string) {
  const g = getGenerationEntry(store, checkId(id));
  if (!g) throw new MorrisError('NOT_FOUND', `No generation ${id}.`, { hint: 'GET /api/generations lists them.' });
  const feedback = listFeedback(store, g.id);
  const family = generationFamily(store, g.id).map((m) => ({ id: m.id, parentId: m.parentId, outcome: m.outcome, startedAt: m.startedAt, adapterId: m.adapterId }));
  const pairs = preferencePairs(store).filter((p) => p.chosenId === g.id || p.rejectedId === g.id);
  return { generation: g, feedback: { counts: tally(feedback), signals: feedback }, family, pairs };
}

export function pairsPage(store: Store, query: URLSearchParams) {
  checkQuery(query, 'GET /api/pairs', ['limit', 'offset', 'source']);
  const { limit, offset } = pageQuery(query);
  const source = query.get('source');
  if (source !== null && !PAIR_SOURCES.includes(source as PairSource)) {
    throw new MorrisError('BAD_INPUT', `"source" must be one of ${PAIR_SOURCES.join(', ')}, got "${source.slice(0, 40)}".`);
  }
  // Pairs are derived on each read (store/feedback.ts says why), so the counts are of all of them.
  const all = preferencePairs(store);
  const counts = { total: all.length, ...Object.fromEntries(PAIR_SOURCES.map((s) => [s, all.filter((p) => p.source === s).length])) } as { total: number } & Record<PairSource, number>;
  const shown: PreferencePair[] = source === null ? all : all.filter((p) => p.source === source);
  return { total: shown.length, limit, offset, counts, pairs: shown.slice(offset, offset + limit) };
}

export function readerRoutes(store: Store): Route[] {
  return [
    { method: 'GET', path: '/api/generations', handler: ({ query }) => generationsPage(store, query) },
    { method: 'GET', path: '/api/generations/:id', handler: ({ params }) => generationRecord(store, params.id!) },
    { method: 'GET', path: '/api/pairs', handler: ({ query }) => pairsPage(store, query) },
  ];
}
