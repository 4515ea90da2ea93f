/**
 * Every voice's state, through the real HTTP server of a serve with three columnist folders (the
 * default one, a second voice on its own site, and one whose settings are broken): /api/status
 * lists each with its adapter, last runs, pairs, schedule and problems, and who holds the host's
 * training turn; a job posted for a voice runs that voice's chain, behind the session and the
 * same-origin rules of every state change; `morris status` prints the same view; and in headless
 * Chromium each voice has its own Run buttons, which start the job for that voice.
 */
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chromium } from 'playwright-core';
import type { ServeHandle } from '../../src/serve/start.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { startSampleSite, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { listRuns } from '../../src/store/job-runs.ts';
import { claimTrainingLease, releaseTrainingLease } from '../../src/jobs/host-lease.ts';
import { startTinyServe, tinyEnv, waitFor } from '../jobs/helpers.ts';
import { CHROMIUM_ARGS } from '../browser/chromium.ts';
import { runMorris } from '../morris-cli.ts';

const TOKEN = 'test-admin-token';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-voices-web-'));
const columnists = path.join(work, 'columnists');
let site: SampleSite;
let root: string;
let h: ServeHandle;
let close: () => Promise<void>;
let cookie: string;

function request(opts: { method?: string; path: string; headers?: Record<string, string>; body?: string }) {
  const u = new URL(h.url);
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: body ? JSON.parse(body) : null }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
const status = async () => (await request({ path: '/api/status', headers: { cookie } })).body;
const runJob = (job: string, body: unknown, headers: Record<string, string> = { cookie, 'content-type': 'application/json' }) =>
  request({ method: 'POST', path: `/api/jobs/${job}/run`, headers, body: JSON.stringify(body) });

beforeAll(async () => {
  site = await startSampleSite({ port: 0 });
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(columnists, 'morris'), { recursive: true });
  fs.mkdirSync(path.join(columnists, 'rival', 'sources'), { recursive: true });
  fs.writeFileSync(path.join(columnists, 'rival', 'columnist.json'), JSON.stringify({ displayName: 'The Rival', attribution: 'a rival columnist' }));
  fs.writeFileSync(path.join(columnists, 'rival', 'system-prompt.md'), 'You are the Rival, brisk and upbeat.\n');
  const profile = JSON.parse(fs.readFileSync(path.join(COLUMNISTS_DIR, 'morris', 'sources', 'sample-archive.json'), 'utf8'));
  fs.writeFileSync(path.join(columnists, 'rival', 'sources', 'archive.json'), JSON.stringify({ ...profile, name: 'archive', baseUrl: site.url }));
  fs.mkdirSync(path.join(columnists, 'broken'));
  fs.writeFileSync(path.join(columnists, 'broken', 'columnist.json'), '{ "displayName": ');
  ({ root, h, close } = await startTinyServe('morris-voices-web-', { MORRIS_COLUMNISTS_DIR: columnists }));
  // A session as the login page makes one: the cookie every call below carries.
  cookie = await new Promise<string>((resolve, reject) => {
    const u = new URL(h.url);
    const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/login', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      if (res.statusCode !== 200) reject(new Error(`login answered ${res.statusCode}`));
      resolve(String(res.headers['set-cookie']).split(';')[0]!);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ token: TOKEN }));
  });
}, 60_000);

afterAll(async () => {
  await close?.();
  await site?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('each columnist on /api/status, and jobs posted for a voice', () => {
  it('lists every voice with its state, the broken one with its reason', async () => {
    const s = await status();
    expect(s.columnists.map((c: { name: string; ok: boolean; default: boolean }) => [c.name, c.ok, c.default])).toEqual([
      ['broken', false, false],
      ['morris', true, true],
      ['rival', true, false],
    ]);
    const [broken, morris, rival] = s.columnists;
    expect(broken.problems.join(' ')).toMatch(/columnist\.json is not valid JSON/);
    expect([broken.schedule, broken.scheduled]).toEqual([null, []]);
    for (const c of [morris, rival]) {
      expect(c.last).toEqual({ rescrape: null, rebuild: null, retrain: null, evaluate: null, dpo: null });
      expect(c.pairs).toEqual({ total: 0, new: 0 });
      expect(c.activeAdapter).toBeNull();
      // Rescrape is off in this config; each voice's own readers' pairs watch runs.
      expect(c.schedule).toMatchObject({ rescrape: 'off' });
      expect(c.scheduled.map((x: { job: string }) => x.job)).toEqual(['dpo']);
    }
    expect(rival.displayName).toBe('The Rival');
    expect(s.training).toEqual({ holder: null, queued: [], waitingFor: null });
  });

  it("a job posted for a voice runs that voice's chain; only that voice's state moves", async () => {
    const r = await runJob('rescrape', { columnist: 'rival', chain: false });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ started: true, run: { job: 'rescrape', columnist: 'rival', trigger: 'web:admin' } });
    await waitFor(() => listRuns(h.store, { job: 'rescrape', columnist: 'rival' }).find((x) => x.status !== 'running'), 30_000, 100);
    const s = await status();
    const [, morris, rival] = s.columnists;
    expect(rival.last.rescrape).toMatchObject({ id: r.body.run.id, status: 'succeeded' });
    expect(rival.articles).toBeGreaterThan(20);
    expect([morris.last.rescrape, morris.articles]).toEqual([null, 0]);
  }, 60_000);

  it('an unknown or malformed voice is refused with what to do; every state change still needs a session and same-origin JSON', async () => {
    const before = listRuns(h.store, { limit: 1000 }).length;
    const unknown = await runJob('rescrape', { columnist: 'nobody' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'UNKNOWN_COLUMNIST', message: 'No columnist named "nobody". Known columnists: broken, morris, rival.' });
    const malformed = await runJob('rescrape', { columnist: 5 });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.hint).toMatch(/"columnist": "morris"/);
    expect((await runJob('rescrape', { columnist: 'rival' }, { 'content-type': 'application/json' })).status).toBe(401);
    expect((await runJob('rescrape', { columnist: 'rival' }, { cookie, 'content-type': 'application/json', origin: 'https://evil.example' })).status).toBe(403);
    expect((await runJob('rescrape', { columnist: 'rival' }, { cookie, 'content-type': 'text/plain' })).status).toBe(415);
    expect(listRuns(h.store, { limit: 1000 })).toHaveLength(before);
  });

  it("shows who holds the host's training turn, and `morris status` prints the same view of every voice", async () => {
    const lease = claimTrainingLease(h.store, { what: 'SFT training for rival', command: 'morris train' });
    if (!lease.claimed) throw new Error('the lease should be free');
    try {
      expect((await status()).training.holder).toMatchObject({ what: 'SFT training for rival', command: 'morris train', pid: process.pid });
      const env = { ...process.env, ...tinyEnv(root, { MORRIS_COLUMNISTS_DIR: columnists }) };
      // Run asynchronously: a blocked event loop would stall this process's own server, whose
      // idle keep-alive sockets then close under the next request (ECONNRESET).
      const json = await runMorris(['status', '--json'], { env, cwd: process.cwd() });
      expect(json.code, json.stderr).toBe(0);
      const st = JSON.parse(json.stdout);
      expect(st.columnists.map((c: { name: string }) => c.name)).toEqual(['broken', 'morris', 'rival']);
      expect(st.columnists[2].last.rescrape.status).toBe('succeeded');
      expect(st.training.holder.what).toBe('SFT training for rival');
      const text = await runMorris(['status'], { env, cwd: process.cwd() });
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/Training: +SFT training for rival \(morris train, pid \d+, since .*\) holds the host's turn/);
      expect(text.stdout).toMatch(/^ {2}broken: adapter none \(base model\); 0 articles; dataset —\n {4}BROKEN \(the scheduler skips it\): .*not valid JSON/m);
      expect(text.stdout).toMatch(/^ {2}rival — The Rival: adapter none \(base model\); \d+ articles;.*\n {4}last: scrape #\d+ succeeded .*; dataset never; train never; evaluate never; dpo never\n {4}pairs: 0 \(0 new since its last DPO\); schedule: rescrape off, /m);
      expect(text.stdout).toMatch(/^ {2}morris \(default\)/m);
    } finally {
      releaseTrainingLease(h.store, lease.lease);
    }
  }, 120_000);
  it("each voice's active adapter is its own: promoted by id, rolled back by naming the voice", async () => {
    h.store
      .prepare(`INSERT INTO adapters (id, base_model, path, status, metrics, columnist) VALUES ('rival-a1', 'tiny', ?, 'candidate', '{}', 'rival')`)
      .run(path.join(root, 'models', 'adapters', 'rival-a1'));
    const promoted = await request({ method: 'POST', path: '/api/adapters/rival-a1/promote', headers: { cookie, 'content-type': 'application/json' }, body: '{}' });
    expect(promoted.body).toEqual({ previous: null, active: 'rival-a1' });
    const s = await status();
    expect(s.columnists.map((c: { activeAdapter: { id: string } | null }) => c.activeAdapter?.id ?? null)).toEqual([null, null, 'rival-a1']);
    expect(s.activeAdapter).toBeNull(); // the default voice's
    // Without a voice, a roll-back is the default voice's (which has nothing to roll back).
    const none = await request({ method: 'POST', path: '/api/adapters/rollback', headers: { cookie, 'content-type': 'application/json' }, body: '{}' });
    expect([none.status, none.body.error.message]).toEqual([400, expect.stringContaining('No adapter is active for morris')]);
    const unknown = await request({ method: 'POST', path: '/api/adapters/rollback', headers: { cookie, 'content-type': 'application/json' }, body: '{"columnist":"nobody"}' });
    expect(unknown.status).toBe(404);
    const rolled = await request({ method: 'POST', path: '/api/adapters/rollback', headers: { cookie, 'content-type': 'application/json' }, body: '{"columnist":"rival"}' });
    expect(rolled.body).toEqual({ previous: 'rival-a1', active: null });
    expect(h.registry.active('rival')).toBeUndefined();
  });
});

const browserState = inject('chromium');

describe('the dashboard in headless Chromium', () => {
  it('shows each voice with its own Run buttons, which post the job for that voice', async (ctx) => {
    if (!browserState.available) {
      ctx.skip(browserState.reason);
      return;
    }
    const browser = await chromium.launch({ executablePath: browserState.path, args: CHROMIUM_ARGS, headless: true });
    try {
      const page = await (await browser.newContext()).newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${h.url}/#status`);
      await page.waitForURL(/\/login(#.*)?$/);
      await page.fill('#token', TOKEN);
      await page.click('#sign-in');
      await page.waitForSelector('body[data-loaded="status"]');
      await expect(page.locator('#columnists tbody tr').count()).resolves.toBe(3);
      await expect(page.locator('#columnists tr[data-columnist="broken"]').innerText()).resolves.toMatch(/does not load, the scheduler skips it: .*not valid JSON/);
      await expect(page.locator('#columnists tr[data-columnist="broken"] button').count()).resolves.toBe(0);
      await expect(page.locator('#columnists tr[data-columnist="rival"]').innerText()).resolves.toMatch(/scrape succeeded/);
      for (const voice of ['morris', 'rival']) {
        await expect(page.locator(`#columnists tr[data-columnist="${voice}"] button[data-run-job]`).allInnerTexts()).resolves.toEqual(['Run rescrape', 'Run rebuild', 'Run retrain', 'Run dpo']);
      }
      await page.screenshot({ path: path.resolve('test-results', 'dashboard-voices-status.png'), fullPage: true });
      const before = listRuns(h.store, { job: 'rescrape', limit: 100 }).length;
      await page.click('#columnists tr[data-columnist="rival"] button[data-run-job="rescrape"]');
      await page.waitForFunction(() => /Started rescrape #\d+ for rival/.test(document.querySelector('#flash')!.textContent ?? ''));
      const runs = listRuns(h.store, { job: 'rescrape', limit: 100 });
      expect(runs).toHaveLength(before + 1);
      expect(runs[0]).toMatchObject({ columnist: 'rival', trigger: 'web:admin' });
      // The jobs page: one group of buttons per voice that loads, and the voice of each run.
      await page.click('nav a[data-page="jobs"]');
      await page.waitForSelector('body[data-loaded="jobs"]');
      await expect(page.locator('#job-buttons div[data-columnist]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.columnist))).resolves.toEqual(['morris', 'rival']);
      await expect(page.locator('#runs tbody tr').first().innerText()).resolves.toContain('rival');
      await page.screenshot({ path: path.resolve('test-results', 'dashboard-voices-jobs.png'), fullPage: true });
      // The adapters page: a roll-back button for each other voice with an active adapter.
      await request({ method: 'POST', path: '/api/adapters/rival-a1/promote', headers: { cookie, 'content-type': 'application/json' }, body: '{}' });
      await page.click('nav a[data-page="adapters"]');
      await page.waitForSelector('body[data-loaded="adapters"]');
      await expect(page.locator('#adapters tr[data-adapter="rival-a1"]').innerText()).resolves.toMatch(/rival\s.*active/s);
      await page.click('#rollbacks button[data-rollback="rival"]');
      await page.waitForFunction(() => /Rolled back rival: base model answers now/.test(document.querySelector('#flash')!.textContent ?? ''));
      expect(h.registry.active('rival')).toBeUndefined();
      // The flash comes before the page reloads its adapters, so the button goes a moment later.
      await page.waitForFunction(() => document.querySelectorAll('#rollbacks button[data-rollback]').length === 0, undefined, { timeout: 10_000 });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
