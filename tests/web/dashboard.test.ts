/**
 * The dashboard over a real serve process in this test process (tiny model, sample site): the
 * JSON API behind the admin token, then the pages in headless Chromium (Debian's, driven by
 * playwright-core): sign-in through the login page, status, data, jobs, the adapters page with
 * its loss chart, a streamed generation in the playground, and data carrying HTML that must
 * render as text. Screenshots go to test-results/. Without chromium (and no root to install it,
 * see tests/global-setup.ts) the browser tests report themselves skipped with the command to run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import type { ServeHandle } from '../../src/serve/start.ts';
import { adapterValLoss, getAdapter } from '../../src/jobs/registry.ts';
import { startTinyServe } from '../jobs/helpers.ts';
import { CHROMIUM_ARGS } from '../browser/chromium.ts';

const SHOTS = path.resolve('test-results');
const TOKEN = 'test-admin-token';

let h: ServeHandle;
let close: () => Promise<void>;
let promoted: string;

beforeAll(async () => {
  ({ h, close } = await startTinyServe('morris-web-'));
  // Real history for the pages: the whole chain once, ending with a promoted adapter.
  const s = await h.control.start('rescrape', { trigger: 'test' });
  const runs = await s.finished;
  expect(runs.map((r) => `${r.job}:${r.status}`)).toEqual(['rescrape:succeeded', 'rebuild:succeeded', 'retrain:succeeded', 'evaluate:succeeded']);
  expect(runs[3]!.message).toMatch(/^promoted/);
  promoted = h.registry.active()!.id;
}, 180_000);

afterAll(async () => close?.());

async function api(p: string, init: RequestInit & { token?: string | null } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = init.token === undefined ? TOKEN : init.token;
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${h.url}${p}`, { ...init, headers });
  return { status: res.status, body: (await res.json()) as any };
}

describe('JSON API', () => {
  it('reads status, data, jobs and adapters with the token', async () => {
    const st = await api('/api/status');
    expect(st.status).toBe(200);
    expect(st.body.activeAdapter.id).toBe(promoted);
    expect(st.body.engine.adapterId).toBe(promoted);
    expect(st.body.bots).toEqual([]);
    const data = await api('/api/data');
    expect(data.body.articlesOk).toBeGreaterThan(20);
    expect(data.body.datasets).toHaveLength(1);
    const jobs = await api('/api/jobs?limit=10');
    expect(jobs.body.runs.map((r: { job: string }) => r.job)).toEqual(['evaluate', 'retrain', 'rebuild', 'rescrape']);
    const one = await api(`/api/jobs/${jobs.body.runs[1].id}`);
    expect(one.body.logs.some((l: { line: string }) => /step \d+\/8/.test(l.line))).toBe(true);
    const ad = await api(`/api/adapters/${promoted}`);
    expect(ad.body.curve.train.length).toBe(8);
    expect(ad.body.curve.eval.length).toBeGreaterThanOrEqual(2);
    // The list shows the gate's validation loss for the evaluated adapter.
    const list = await api('/api/adapters');
    const row = list.body.adapters.find((a: { id: string }) => a.id === promoted);
    expect(row.valLoss).toBe(ad.body.adapter.eval.candidate.valLoss);
    expect(row.valLoss).toBeGreaterThan(0);
  });

  it('refuses state changes without the admin token, with one JSON error shape', async () => {
    const none = await api('/api/adapters/rollback', { method: 'POST', token: null });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('UNAUTHORIZED');
    const wrong = await api('/api/jobs/rescrape/run', { method: 'POST', token: 'nope' });
    expect(wrong.status).toBe(401);
    const missing = await api('/api/adapters/nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'NOT_FOUND' });
    const malformed = await api('/api/adapters/%E0%A4%A');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatchObject({ code: 'BAD_INPUT' });
    const bad = await api('/api/generate', { method: 'POST', body: '{"topic": ""}' });
    expect(bad.body.error.hint).toBeTruthy();
    expect(bad.status).toBe(400);
    const notJson = await api('/api/jobs/rebuild/run', { method: 'POST', token: TOKEN, body: '{oops' });
    expect(notJson.status).toBe(400);
    expect(h.registry.active()!.id).toBe(promoted);
  });

  it('rollback and promote by id with the token swap the adapter the service uses', async () => {
    const rb = await api('/api/adapters/rollback', { method: 'POST', token: TOKEN });
    expect(rb.body).toEqual({ previous: promoted, active: null });
    expect(h.service.status().adapterId).toBeNull();
    const pr = await api(`/api/adapters/${promoted}/promote`, { method: 'POST', token: TOKEN });
    expect(pr.body).toEqual({ previous: null, active: promoted });
    expect(h.service.status().adapterId).toBe(promoted);
  });
});

const browserState = inject('chromium');

describe('pages in headless Chromium', () => {
  let browser: Browser;
  let context: BrowserContext;
  beforeAll(async () => {
    if (!browserState.available) return;
    fs.mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: browserState.path, args: CHROMIUM_ARGS, headless: true });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  });
  afterAll(async () => browser?.close());

  it('signs in through the login page; a wrong token is refused there', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${h.url}/#status`);
    await page.waitForURL(/\/login(#.*)?$/);
    await page.fill('#token', 'not-the-token');
    await page.click('#sign-in');
    await page.waitForSelector('#login-error:not([hidden])');
    await expect(page.locator('#login-error').innerText()).resolves.toContain('not the admin token');
    await page.fill('#token', TOKEN);
    await page.click('#sign-in');
    await page.waitForSelector('body[data-loaded="status"]');
    // The session cookie is out of the page's reach, and no token sits in its storage.
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'morris_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await expect(page.evaluate(() => document.cookie + JSON.stringify(localStorage))).resolves.toBe('{}');
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-signed-in.png') });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it('loads every page, shows the loss chart, and streams a generation in the playground', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('requestfailed', (r) => {
      if (!r.url().startsWith(h.url)) errors.push(`request outside the server: ${r.url()}`);
    });

    await page.goto(`${h.url}/#status`);
    await page.waitForSelector('body[data-loaded="status"]');
    await expect(page.locator('#status-cards').innerText()).resolves.toContain(promoted);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-status.png'), fullPage: true });

    await page.click('nav a[data-page="data"]');
    await page.waitForSelector('body[data-loaded="data"]');
    await expect(page.locator('#articles tbody').innerText()).resolves.toContain('sample-archive');

    await page.click('nav a[data-page="jobs"]');
    await page.waitForSelector('body[data-loaded="jobs"]');
    await page.click('#runs tbody tr:nth-child(2)'); // the retrain run
    await page.waitForFunction(() => /step \d+\/8/.test(document.querySelector('#run-log')!.textContent ?? ''));
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-jobs.png'), fullPage: true });

    await page.click('nav a[data-page="adapters"]');
    await page.waitForSelector('body[data-loaded="adapters"]');
    await page.waitForSelector('#loss-svg polyline.series-train');
    const points = await page.locator('#loss-svg polyline.series-train').getAttribute('points');
    expect(points!.trim().split(/\s+/)).toHaveLength(8);
    await expect(page.locator('#loss-svg polyline.series-validation').count()).resolves.toBe(1);
    await expect(page.locator(`#adapters tr[data-adapter="${promoted}"]`).innerText()).resolves.toContain(adapterValLoss(getAdapter(h.store, promoted))!.toFixed(4));
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-adapters.png'), fullPage: true });

    await page.click('nav a[data-page="playground"]');
    await page.fill('#topic', 'Operators discover the metaverse, again');
    await page.fill('#max-tokens', '120');
    // Watch the text grow while it streams: more than one distinct non-empty length before done.
    const lengths = page.evaluate(
      () =>
        new Promise<number[]>((resolve) => {
          const out = document.querySelector('#output')!;
          const seen: number[] = [];
          const obs = new MutationObserver(() => {
            if (!(out as HTMLElement).dataset.done) seen.push(out.textContent!.length);
            else {
              obs.disconnect();
              resolve(seen);
            }
          });
          obs.observe(out, { childList: true, characterData: true, subtree: true, attributes: true });
        }),
    );
    await page.click('#generate');
    const seen = await lengths;
    expect(new Set(seen.filter((n) => n > 0)).size).toBeGreaterThan(1);
    await expect(page.locator('#gen-status').innerText()).resolves.toContain(`adapter: ${promoted}`);
    expect((await page.locator('#output').innerText()).length).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-playground.png'), fullPage: true });
    // Recorded like a bot request.
    const row = h.store.prepare(`SELECT * FROM generations WHERE platform = 'web' ORDER BY started_at DESC LIMIT 1`).get() as Record<string, unknown>;
    expect(row).toMatchObject({ outcome: 'ok', adapter_id: promoted, topic: 'Operators discover the metaverse, again' });
    expect(row.ttft_ms).toBeGreaterThan(0);

    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('admin buttons work from the signed-in page', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    const page = await context.newPage();
    await page.goto(`${h.url}/#adapters`);
    await page.waitForSelector('body[data-loaded="adapters"]');
    await page.click('#rollback');
    await page.waitForFunction(() => document.querySelector('#flash')!.textContent!.includes('Rolled back'));
    expect(h.registry.active()).toBeUndefined();
    await page.click(`button[data-promote="${promoted}"]`);
    await page.waitForFunction(() => document.querySelector('#flash')!.textContent!.includes('Active adapter is now'));
    expect(h.registry.active()!.id).toBe(promoted);
    await page.close();
  }, 60_000);

  it('HTML in topics, titles, sources, error messages and article text renders as text', async (ctx) => {
    if (!browserState.available) ctx.skip(browserState.reason);
    const probe = (tag: string) => `<img src=x onerror="window.__xss='${tag}'"><script>window.__xss='${tag}'</script>`;
    h.store
      .prepare(`INSERT INTO articles (source, url, title, body, status) VALUES (?, 'http://127.0.0.1/xss', ?, ?, 'ok')`)
      .run(probe('source'), probe('title'), probe('body'));
    h.store.prepare(`INSERT INTO job_runs (job, trigger, status, ended_at, error) VALUES ('rescrape', ?, 'failed', strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?)`).run(probe('trigger'), probe('error'));
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => (dialogs.push(d.message()), void d.dismiss()));
    await page.goto(`${h.url}/#data`);
    await page.waitForSelector('body[data-loaded="data"]');
    await expect(page.locator('#articles tbody').innerText()).resolves.toContain(`<img src=x onerror="window.__xss='source'">`);
    await page.click('nav a[data-page="jobs"]');
    await page.waitForSelector('body[data-loaded="jobs"]');
    await expect(page.locator('#runs tbody').innerText()).resolves.toContain(`<script>window.__xss='error'</script>`);
    await page.click('nav a[data-page="playground"]');
    await page.fill('#topic', probe('topic'));
    await page.fill('#max-tokens', '16');
    await page.click('#generate');
    await page.waitForSelector('#output[data-done]');
    await expect(page.locator('#gen-status').innerText()).resolves.toMatch(/Done|Failed/);
    await expect(page.locator('#output').innerText()).resolves.toContain('AI-generated in the style of');
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-xss-probes.png'), fullPage: true });
    await expect(page.evaluate(() => (window as unknown as { __xss?: string }).__xss ?? null)).resolves.toBeNull();
    await expect(page.locator('img[src="x"]').count()).resolves.toBe(0);
    expect(dialogs).toEqual([]);
    await page.close();
  }, 60_000);
});
