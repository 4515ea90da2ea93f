/**
 * The readers' pages of the dashboard over a real serve process (tiny model, no chain run): a
 * real SQLite store seeded through the store's own functions with articles, a regeneration,
 * ratings and an edit; then the JSON API (admin only, pages, checked parameters) and the
 * generations and pairs pages in headless Chromium, where article text carrying HTML must stay
 * text. Screenshots go to test-results/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import type { ServeHandle } from '../../src/serve/start.ts';
import { recordFeedback } from '../../src/store/feedback.ts';
import { closeGeneration, openGeneration } from '../../src/store/generations.ts';
import { startTinyServe } from '../jobs/helpers.ts';
import { CHROMIUM_ARGS } from './dashboard.test.ts';

const SHOTS = path.resolve('test-results');
const TOKEN = 'test-admin-token';
const probe = (tag: string) => `<img src=x onerror="window.__xss='${tag}'"><script>window.__xss='${tag}'</script>`;

let h: ServeHandle;
let close: () => Promise<void>;

/** A finished article, dated so the order is certain (rows opened in one millisecond tie). */
function article(id: string, minute: number, opts: { text: string; topic: string; parentId?: string; userId?: string; platform?: string }) {
  const s = h.store;
  openGeneration(s, { id, requester: { platform: opts.platform ?? 'slack', userId: opts.userId ?? 'U-ASKER', channelId: 'C-NEWS' }, topic: opts.topic, options: { length: 'short' }, parentId: opts.parentId });
  closeGeneration(s, id, { outcome: 'ok', durationMs: 1500, nChars: opts.text.length, article: opts.text, baseModel: 'tiny-base', adapterId: 'lora-test-1', datasetId: 'ds-test-1' });
  s.prepare('UPDATE generations SET started_at = ? WHERE id = ?').run(`2026-12-01T10:${String(minute).padStart(2, '0')}:00.000Z`, id);
}

beforeAll(async () => {
  ({ h, close } = await startTinyServe('morris-readers-'));
  // A request and its regeneration, rated against each other: one rating pair.
  article('g-first00001', 1, { text: 'The first take on roaming charges.', topic: 'Roaming charges' });
  article('g-second0002', 2, { text: 'The second, better take on roaming charges.', topic: 'Roaming charges', parentId: 'g-first00001' });
  recordFeedback(h.store, { generationId: 'g-first00001', kind: 'rating', value: -1, platform: 'slack', userId: 'U-CRITIC' });
  recordFeedback(h.store, { generationId: 'g-second0002', kind: 'rating', value: 1, platform: 'slack', userId: 'U-CRITIC' });
  recordFeedback(h.store, { generationId: 'g-first00001', kind: 'regenerate', platform: 'slack', userId: 'U-ASKER' });
  // An article carrying HTML, edited by a reader: one edit pair.
  article('g-hostile003', 3, { text: `Operators and ${probe('article')} the cloud.`, topic: `Cloud ${probe('topic')}`, platform: 'discord', userId: 'D-READER' });
  recordFeedback(h.store, { generationId: 'g-hostile003', kind: 'edit', editedText: `A reader's cleaner version. ${probe('edit')}`, platform: 'discord', userId: 'D-EDITOR' });
  recordFeedback(h.store, { generationId: 'g-hostile003', kind: 'rating', value: 1, platform: 'discord', userId: 'D-FAN' });
}, 60_000);

afterAll(async () => close?.());

async function get(p: string, token: string | null = TOKEN) {
  const res = await fetch(`${h.url}${p}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: res.headers.get('content-type')?.includes('json') ? ((await res.json()) as any) : await res.text() };
}

describe('readers API', () => {
  it('needs the admin: 401 for the API without it, the page redirects to /login', async () => {
    for (const p of ['/api/generations', '/api/generations/g-first00001', '/api/pairs']) {
      const r = await get(p, null);
      expect(r.status, p).toBe(401);
      expect(r.body.error).toMatchObject({ code: 'UNAUTHORIZED' });
      expect((await get(p, 'wrong-token')).status, p).toBe(401);
    }
    const page = await get('/', null);
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login');
  });

  it('lists generations newest first, a page at a time, with lineage and feedback', async () => {
    const all = await get('/api/generations');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ total: 3, limit: 20, offset: 0 });
    expect(all.body.generations.map((g: { id: string }) => g.id)).toEqual(['g-hostile003', 'g-second0002', 'g-first00001']);
    const first = all.body.generations[2];
    expect(first).toMatchObject({
      platform: 'slack', userId: 'U-ASKER', topic: 'Roaming charges', outcome: 'ok', baseModel: 'tiny-base', adapterId: 'lora-test-1', datasetId: 'ds-test-1',
      parentId: null, regenerations: ['g-second0002'], excerpt: 'The first take on roaming charges.', durationMs: 1500,
      feedback: { counts: { up: 0, down: 1, regenerate: 1, pick: 0, edit: 0 } },
    });
    expect(first.feedback.signals[0]).toMatchObject({ kind: 'rating', value: -1, platform: 'slack', userId: 'U-CRITIC', at: expect.any(String) });
    expect(first.article).toBeUndefined(); // the list has an excerpt; the record has the text
    expect(all.body.generations[0].feedback.signals[0]).toMatchObject({ kind: 'edit', userId: 'D-EDITOR', editChars: expect.any(Number) });

    const p1 = await get('/api/generations?limit=2');
    expect(p1.body.generations.map((g: { id: string }) => g.id)).toEqual(['g-hostile003', 'g-second0002']);
    const p2 = await get('/api/generations?limit=2&offset=2');
    expect(p2.body).toMatchObject({ total: 3, limit: 2, offset: 2 });
    expect(p2.body.generations.map((g: { id: string }) => g.id)).toEqual(['g-first00001']);
    expect((await get('/api/generations?offset=50')).body.generations).toEqual([]);
  });

  it("one generation's record: the whole text, every signal with edits' text, its family and pairs", async () => {
    const r = await get('/api/generations/g-second0002');
    expect(r.status).toBe(200);
    expect(r.body.generation).toMatchObject({ id: 'g-second0002', parentId: 'g-first00001', article: 'The second, better take on roaming charges.', options: { length: 'short' }, channelId: 'C-NEWS' });
    expect(r.body.family.map((m: { id: string }) => m.id)).toEqual(['g-first00001', 'g-second0002']);
    expect(r.body.pairs).toEqual([expect.objectContaining({ source: 'rating', chosenId: 'g-second0002', rejectedId: 'g-first00001' })]);
    const edited = await get('/api/generations/g-hostile003');
    expect(edited.body.feedback.signals.find((f: { kind: string }) => f.kind === 'edit').editedText).toContain("A reader's cleaner version.");
    const missing = await get('/api/generations/g-nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'NOT_FOUND', message: 'No generation g-nope.' });
  });

  it('lists the preference pairs with counts by kind, filtered by source', async () => {
    const r = await get('/api/pairs');
    expect(r.body).toMatchObject({ total: 2, limit: 20, offset: 0, counts: { total: 2, edit: 1, rating: 1, pick: 0 } });
    expect(r.body.pairs).toEqual([
      expect.objectContaining({ source: 'edit', rejectedId: 'g-hostile003', chosenId: null, chosen: expect.stringContaining('cleaner version') }),
      expect.objectContaining({ source: 'rating', chosenId: 'g-second0002', rejectedId: 'g-first00001', topic: 'Roaming charges' }),
    ]);
    const edits = await get('/api/pairs?source=rating&limit=1');
    expect(edits.body).toMatchObject({ total: 1, limit: 1, counts: { total: 2 } });
    expect(edits.body.pairs.map((p: { source: string }) => p.source)).toEqual(['rating']);
    expect((await get('/api/pairs?offset=1&limit=1')).body.pairs.map((p: { source: string }) => p.source)).toEqual(['rating']);
  });

  it('refuses bad parameters with 400 and a message that names them', async () => {
    const cases: [string, RegExp][] = [
      ['/api/generations?limit=0', /"limit" must be a whole number from 1 to 100, got "0"/],
      ['/api/generations?limit=101', /"limit" must be a whole number from 1 to 100/],
      ['/api/generations?limit=abc', /"limit" must be a whole number/],
      ['/api/generations?limit=', /"limit" must be a whole number/],
      ['/api/generations?limit=2.5', /"limit" must be a whole number/],
      ['/api/generations?offset=-1', /"offset" must be a whole number from 0/],
      ['/api/generations?limt=5', /Unknown parameter "limt" for GET \/api\/generations/],
      ['/api/generations?limit=1&limit=2', /"limit" is given more than once/],
      ['/api/pairs?source=vibes', /"source" must be one of edit, rating, pick, got "vibes"/],
      ['/api/pairs?limit=1000', /"limit" must be a whole number from 1 to 100/],
      ['/api/generations/bad%20id%3Cx%3E', /is not a generation id/],
    ];
    for (const [p, message] of cases) {
      const r = await get(p);
      expect(r.status, p).toBe(400);
      expect(r.body.error.code, p).toBe('BAD_INPUT');
      expect(r.body.error.message, p).toMatch(message);
    }
  });
});
