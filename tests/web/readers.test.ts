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
import { CHROMIUM_ARGS } from '../browser/chromium.ts';

const SHOTS = path.resolve('test-results');
const TOKEN = 'test-admin-token';
const probe = (tag: string) => `<img src=x onerror="window.__xss='${tag}'"><script>window.__xss='${tag}'</script>`;

let h: ServeHandle;
let close: () => Promise<void>;

/** A finished article, dated so the order is certain (rows opened in one millisecond tie). */
function article(id: string, minute: number, opts: { text: string; topic: string; parentId?: string; userId?: string; platform?: string; instruction?: string }) {
  const s = h.store;
  openGeneration(s, { id, requester: { platform: opts.platform ?? 'slack', userId: opts.userId ?? 'U-ASKER', channelId: 'C-NEWS' }, topic: opts.topic, options: { length: 'short' }, parentId: opts.parentId, ...(opts.instruction ? { kind: 'revise' as const, instruction: opts.instruction } : {}) });
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
  // A revision of the first take, asked with HTML in the instruction.
  article('g-hostile003', 3, { text: `Operators and ${probe('article')} the cloud.`, topic: `Cloud ${probe('topic')}`, platform: 'discord', userId: 'D-READER', parentId: 'g-first00001', instruction: `more cloud ${probe('instruction')}` });
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
    for (const p of ['/api/generations', '/api/generations/g-first00001', '/api/pairs', '/readers.js', '/common.js']) {
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
      parentId: null, regenerations: ['g-second0002'], revisions: ['g-hostile003'], excerpt: 'The first take on roaming charges.', durationMs: 1500,
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

const browserState = inject('chromium');

describe('readers pages in headless Chromium', () => {
  let browser: Browser;
  let context: BrowserContext;
  beforeAll(async () => {
    if (!browserState.available) return;
    fs.mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: browserState.path, args: CHROMIUM_ARGS, headless: true });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  });
  afterAll(async () => browser?.close());

  it('signs in, lists articles with lineage and feedback, opens a record, shows the pairs; HTML stays text', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    const page = await context.newPage();
    const errors: string[] = [];
    const dialogs: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // Every request the pages make must succeed (the browser's own favicon probe aside).
    page.on('response', (res) => {
      if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) errors.push(`${res.status()} ${res.url()}`);
    });
    page.on('dialog', (d) => (dialogs.push(d.message()), void d.dismiss()));

    await page.goto(`${h.url}/#generations`);
    await page.waitForURL(/\/login(#.*)?$/);
    await page.fill('#token', TOKEN);
    await page.click('#sign-in');
    await page.waitForSelector('body[data-loaded]');
    await page.click('nav a[data-page="generations"]');
    await page.waitForSelector('body[data-loaded="generations"]');

    // Newest first, each with its lineage and its feedback.
    await expect(page.locator('#generations tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.generation))).resolves.toEqual([
      'g-hostile003',
      'g-second0002',
      'g-first00001',
    ]);
    const first = await page.locator('#generations tr[data-generation="g-first00001"]').innerText();
    for (const s of ['Roaming charges', 'slack', 'U-ASKER', 'lora-test-1', 'tiny-base', 'ds-test-1', 'ok', 'rated down by slack:U-CRITIC', 'regenerate by slack:U-ASKER', 'g-second0002']) expect(first).toContain(s);
    await expect(page.locator('#generations tr[data-generation="g-second0002"]').innerText()).resolves.toContain('regenerates g-first00001');
    const hostile = await page.locator('#generations tr[data-generation="g-hostile003"]').innerText();
    expect(hostile).toContain(`Operators and <img src=x onerror="window.__xss='article'">`);
    expect(hostile).toContain('edit (');
    expect(hostile).toContain('D-EDITOR');
    expect(hostile).toContain(`revises g-first00001: “more cloud ${probe('instruction')}”`);
    await expect(page.locator('#gen-pager .range').innerText()).resolves.toBe('1–3 of 3');
    await page.screenshot({ path: path.join(SHOTS, 'readers-generations.png'), fullPage: true });

    // A click opens the record: lineage, the whole text, the feedback, the family.
    await page.click('#generations tr[data-generation="g-second0002"] .topic');
    await page.waitForSelector('body[data-record="g-second0002"]');
    expect(page.url()).toMatch(/#generations\/g-second0002$/);
    await expect(page.locator('#record-text').innerText()).resolves.toBe('The second, better take on roaming charges.');
    await expect(page.locator('#record-parent').innerText()).resolves.toContain('Regenerates g-first00001');
    await expect(page.locator('#record-lineage').innerText()).resolves.toMatch(/Adapter\s+lora-test-1/);
    await expect(page.locator('#record-feedback').innerText()).resolves.toContain('rated up by slack:U-CRITIC');
    await expect(page.locator('#record-family li').count()).resolves.toBe(2);
    await expect(page.locator('#record-pairs').innerText()).resolves.toContain('rating: chosen g-second0002 over g-first00001');
    // The parent link opens the parent's record.
    await page.click('#record-parent a');
    await page.waitForSelector('body[data-record="g-first00001"]');
    await expect(page.locator('#record-text').innerText()).resolves.toBe('The first take on roaming charges.');

    // The hostile article and its edit: shown as text, nothing runs.
    await page.click('#generations tr[data-generation="g-hostile003"] .topic');
    await page.waitForSelector('body[data-record="g-hostile003"]');
    await expect(page.locator('#record-text').innerText()).resolves.toBe(`Operators and ${probe('article')} the cloud.`);
    await expect(page.locator('#record-title').innerText()).resolves.toContain(probe('topic'));
    await expect(page.locator('#record-parent').innerText()).resolves.toBe(`Revises g-first00001, asked: “more cloud ${probe('instruction')}”`);
    await expect(page.locator('#record-feedback pre.edit').innerText()).resolves.toBe(`A reader's cleaner version. ${probe('edit')}`);
    await page.screenshot({ path: path.join(SHOTS, 'readers-record.png'), fullPage: true });

    // The pairs page: counts by kind, each pair's two sides and where it came from.
    await page.click('nav a[data-page="pairs"]');
    await page.waitForSelector('body[data-loaded="pairs"]');
    await expect(page.locator('#pair-counts').innerText()).resolves.toMatch(/Pairs\s+2[\s\S]*From edits\s+1[\s\S]*From ratings\s+1[\s\S]*From picks\s+0/i); // the cards' titles are upper-cased by CSS
    await expect(page.locator('#pairs .pair').count()).resolves.toBe(2);
    const rated = await page.locator('#pairs .pair.source-rating').innerText();
    expect(rated).toMatch(/Chosen · g-second0002\s+The second, better take/);
    expect(rated).toMatch(/Rejected · g-first00001\s+The first take/);
    const edited = await page.locator('#pairs .pair.source-edit').innerText();
    expect(edited).toContain('Chosen · the reader’s edit');
    expect(edited).toContain(`<script>window.__xss='edit'</script>`);
    await page.click('#pair-filter [data-source="edit"]');
    await page.waitForFunction(() => document.querySelectorAll('#pairs .pair').length === 1);
    await expect(page.locator('#pairs .pair.source-edit').count()).resolves.toBe(1);
    await page.click('#pair-filter [data-source=""]');
    await page.waitForFunction(() => document.querySelectorAll('#pairs .pair').length === 2);
    await page.screenshot({ path: path.join(SHOTS, 'readers-pairs.png'), fullPage: true });

    await expect(page.evaluate(() => (window as unknown as { __xss?: string }).__xss ?? null)).resolves.toBeNull();
    await expect(page.locator('img[src="x"]').count()).resolves.toBe(0);
    await expect(page.locator('main script').count()).resolves.toBe(0);
    expect(dialogs).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);

  it('pages through more articles than fit one page', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    // Twenty refused requests, newer than the seeded articles: they fill the first page.
    for (let i = 10; i < 30; i++) {
      openGeneration(h.store, { id: `g-refused0${i}`, requester: { platform: 'web', userId: 'session:x' }, topic: `blocked topic ${i}`, outcome: 'refused', error: 'blocked' });
      h.store.prepare('UPDATE generations SET started_at = ? WHERE id = ?').run(`2026-12-01T11:${i}:00.000Z`, `g-refused0${i}`);
    }
    // Signed in by the test above: the same browser context keeps its session cookie.
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${h.url}/#generations`);
    await page.waitForSelector('body[data-loaded="generations"]');
    await expect(page.locator('#gen-pager .range').innerText()).resolves.toBe('1–20 of 23');
    await expect(page.locator('#generations tbody tr').first().innerText()).resolves.toMatch(/g-refused029[\s\S]*\(no text kept\)[\s\S]*refused/);
    await expect(page.locator('#gen-pager [data-dir="prev"]').isDisabled()).resolves.toBe(true);
    await page.click('#gen-pager [data-dir="next"]');
    await page.waitForFunction(() => document.querySelector('#gen-pager .range')!.textContent === '21–23 of 23');
    await expect(page.locator('#generations tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.generation))).resolves.toEqual([
      'g-hostile003',
      'g-second0002',
      'g-first00001',
    ]);
    await expect(page.locator('#gen-pager [data-dir="next"]').isDisabled()).resolves.toBe(true);
    await page.click('#gen-pager [data-dir="prev"]');
    await page.waitForFunction(() => document.querySelector('#gen-pager .range')!.textContent === '1–20 of 23');
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
