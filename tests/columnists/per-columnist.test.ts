/**
 * Everything downstream of a columnist folder belongs to that voice: two columnists scrape into one
 * store, build their own dataset versions with their own style guides, keep their own active
 * adapter (promoting or rolling back one never touches the other), and their chain jobs overlap
 * only within a voice, except training: one at a time on the host.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config.ts';
import { addColumnist, resolveColumnist } from '../../src/columnists/folder.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { openStore, getKv, type Store } from '../../src/store/db.ts';
import { articleTexts, okArticleCount } from '../../src/store/articles.ts';
import { datasetColumnist, datasetExamples, latestDatasetId, listDatasets } from '../../src/store/datasets.ts';
import { insertAdapter, listAdapters } from '../../src/store/adapters.ts';
import { startRun, finishRun } from '../../src/store/job-runs.ts';
import { scrapesBySource } from '../../src/store/scrape-runs.ts';
import { loadProfile } from '../../src/pipeline/crawl/profile.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';
import { SAMPLE_ARCHIVE_DIR, startSampleSite, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { buildDataset, currentDatasetKey, datasetSettingsFromConfig } from '../../src/pipeline/dataset/build.ts';
import { loadStyle } from '../../src/pipeline/dataset/enhance.ts';
import { loadTokenCounter } from '../../src/pipeline/dataset/token-count.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { AdapterRegistry } from '../../src/jobs/registry.ts';
import { columnistOfRun } from '../../src/jobs/runner.ts';
import { adapterToExport, importAdapter } from '../../src/jobs/adapter-transfer.ts';
import { openCheckpoint } from '../../src/model/checkpoint/config.ts';
import { writeRandomAdapter } from '../../src/model/checkpoint/random-checkpoint.ts';
import { getAdapter } from '../../src/store/adapters.ts';
import { closeGeneration, openGeneration } from '../../src/store/generations.ts';
import { recordFeedback } from '../../src/store/feedback.ts';
import { exportPreferenceLines } from '../../src/pipeline/dataset/preferences.ts';

let dir: string;
let config: Config;
let store: Store;
const sites: SampleSite[] = [];
const RIVAL_PROMPT = 'You are the Rival: brisk, upbeat, American spelling, never a joke.';

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-two-voices-'));
  const root = path.join(dir, 'columnists');
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(root, 'morris'), { recursive: true });
  config = loadConfig({ MORRIS_COLUMNISTS_DIR: root, MORRIS_DATA_DIR: path.join(dir, 'data') });
  addColumnist('rival', config, { displayName: 'The Rival', attribution: 'a rival columnist' });
  fs.writeFileSync(path.join(root, 'rival', 'system-prompt.md'), `${RIVAL_PROMPT}\n`);
  // The rival's profile is the sample archive's under another name: same site format, its own frontier.
  const profile = JSON.parse(fs.readFileSync(path.join(root, 'morris', 'sources', 'sample-archive.json'), 'utf8'));
  fs.writeFileSync(path.join(root, 'rival', 'sources', 'archive.json'), JSON.stringify({ ...profile, name: 'archive' }));
  // Two sites, each with half of the sample archive: each voice has its own articles.
  const files = fs.readdirSync(SAMPLE_ARCHIVE_DIR).filter((f) => f.endsWith('.md')).sort();
  for (const [i, part] of [files.slice(0, 13), files.slice(13)].entries()) {
    const d = path.join(dir, `site${i}`);
    fs.mkdirSync(d);
    for (const f of part) fs.copyFileSync(path.join(SAMPLE_ARCHIVE_DIR, f), path.join(d, f));
    sites.push(await startSampleSite({ dir: d }));
  }
  initTinyModel(path.join(dir, 'tiny'));
  store = openStore(path.join(dir, 'morris.db'));
});

afterAll(async () => {
  store?.close();
  for (const s of sites) await s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const fetchOpts = { userAgent: 'MorrisBot/test', rateLimitRps: 500, hostConcurrency: 4, timeoutMs: 3000, retries: 1, maxBytes: 2_000_000 };

describe('two columnists in one store', () => {
  it('each voice scrapes its own sources and builds its own dataset line with its own style guide', async () => {
    const morris = resolveColumnist(undefined, config);
    const rival = resolveColumnist('rival', config);
    const m = await scrapeSource(store, loadProfile('sample-archive', { dir: morris.sourcesDir, baseUrl: sites[0]!.url }), { fetch: fetchOpts });
    const r = await scrapeSource(store, loadProfile('archive', { dir: rival.sourcesDir, baseUrl: sites[1]!.url }), { fetch: fetchOpts, columnist: 'rival' });
    expect(m.new).toBe(13);
    expect(r.new).toBe(14);
    expect(okArticleCount(store, 'morris')).toBe(13);
    expect(okArticleCount(store, 'rival')).toBe(14);
    expect(articleTexts(store, undefined, 'rival').every((a) => a.url.startsWith(sites[1]!.url))).toBe(true);
    // The default voice's sources keep their bare names; another voice's are namespaced.
    expect(scrapesBySource(store).map((s) => s.source).sort()).toEqual(['rival/archive', 'sample-archive']);

    const tokenCounter = await loadTokenCounter(path.join(dir, 'tiny'));
    const settings = datasetSettingsFromConfig(config, { maxTokens: 2048 });
    const outDir = path.join(dir, 'data', 'datasets');
    const dm = await buildDataset(store, { tokenCounter, settings, outDir, style: loadStyle(morris.dir) });
    const dr = await buildDataset(store, { tokenCounter, settings, outDir, style: loadStyle(rival.dir), columnist: 'rival' });
    expect(dm.id).not.toBe(dr.id);
    expect(dr.counts.articles).toBe(14);
    expect(datasetColumnist(store, dm.id)).toBe('morris');
    expect(datasetColumnist(store, dr.id)).toBe('rival');
    expect(JSON.parse(datasetExamples(store, dr.id)[0]!.messages)[0]).toEqual({ role: 'system', content: RIVAL_PROMPT });
    expect(JSON.parse(datasetExamples(store, dm.id)[0]!.messages)[0].content).toMatch(/^You are Morris/);
    expect(latestDatasetId(store)).toBe(dm.id);
    expect(latestDatasetId(store, 'rival')).toBe(dr.id);
    expect(getKv(store, currentDatasetKey('morris'))).toBe(dm.id);
    expect(getKv(store, currentDatasetKey('rival'))).toBe(dr.id);
    expect(listDatasets(store, 'rival').map((d) => d.id)).toEqual([dr.id]);

    // A rebuild of one voice compares with that voice's previous version only.
    const again = await buildDataset(store, { tokenCounter, settings, outDir, style: loadStyle(rival.dir), columnist: 'rival' });
    expect(again).toMatchObject({ id: dr.id, reused: true, previousId: dr.id, newExamples: 0 });
  });

  it('each voice has its own active adapter: promoting or rolling back one leaves the other', async () => {
    for (const [id, columnist] of [['m1', 'morris'], ['r1', 'rival'], ['r2', 'rival']] as const) {
      insertAdapter(store, { id, baseModel: 'tiny', datasetId: null, path: `/adapters/${id}`, status: 'candidate', metrics: {}, reason: null, columnist });
    }
    const changes: string[] = [];
    const registry = new AdapterRegistry(store, async (active, columnist) => void changes.push(`${columnist}:${active?.id ?? 'base'}`));
    await registry.promote('m1', 'test');
    await registry.promote('r1', 'test');
    expect([registry.active()?.id, registry.active('rival')?.id]).toEqual(['m1', 'r1']);
    const c = await registry.promote('r2', 'test');
    expect(c.previous?.id).toBe('r1');
    expect([registry.active()?.id, registry.active('rival')?.id]).toEqual(['m1', 'r2']);
    expect(Object.fromEntries(listAdapters(store).map((a) => [a.id, a.status]))).toEqual({ m1: 'active', r1: 'retired', r2: 'active' });
    await registry.rollback('test', 'worse', 'rival');
    expect([registry.active()?.id, registry.active('rival')?.id]).toEqual(['m1', 'r1']);
    await registry.rollback('test', 'worse');
    expect([registry.active()?.id, registry.active('rival')?.id]).toEqual([undefined, 'r1']);
    expect(changes).toEqual(['morris:m1', 'rival:r1', 'rival:r2', 'rival:r1', 'morris:base']);
    expect(registry.list('rival').map((a) => a.id).sort()).toEqual(['r1', 'r2']);
  });

  it('an imported adapter joins the voice it is imported for; export active takes a voice', async () => {
    const tiny = path.join(dir, 'tiny');
    const src = path.join(dir, 'from-elsewhere');
    writeRandomAdapter(src, openCheckpoint(tiny).config, { r: 4, alpha: 8, targets: ['q_proj', 'v_proj'], seed: 3 });
    const imported = importAdapter(store, src, { setting: tiny, dir: tiny }, path.join(dir, 'adapters'), undefined, 'rival');
    expect(getAdapter(store, imported.id)).toMatchObject({ columnist: 'rival', status: 'candidate' });
    await new AdapterRegistry(store).promote(imported.id, 'test');
    expect(adapterToExport(store, 'active', 'rival').id).toBe(imported.id);
    expect(() => adapterToExport(store, 'active', 'nobody')).toThrow('No adapter is active for nobody');
  });

  it("a voice's preference pairs are its own, prompted with its style guide", () => {
    for (const [id, columnist] of [['g-m', 'morris'], ['g-r', 'rival']] as const) {
      openGeneration(store, { id, requester: { platform: 'slack', userId: 'U1', channelId: 'C1' }, topic: `topic of ${columnist}`, columnist });
      closeGeneration(store, id, { outcome: 'ok', durationMs: 1, article: `article by ${columnist}` });
      recordFeedback(store, { generationId: id, kind: 'edit', editedText: `better ${columnist} text`, platform: 'slack', userId: 'U2' });
    }
    const rival = exportPreferenceLines(store, RIVAL_PROMPT, 'rival').map((l) => JSON.parse(l));
    expect(rival).toHaveLength(1);
    expect(rival[0]).toMatchObject({ prompt: [{ role: 'system', content: RIVAL_PROMPT }, { role: 'user', content: 'Write a column about topic of rival.' }], chosen: [{ content: 'better rival text' }] });
    expect(exportPreferenceLines(store, 'x', 'morris').map((l) => JSON.parse(l).rejected[0].content)).toEqual(['article by morris']);
    expect(exportPreferenceLines(store, 'x')).toHaveLength(2);
  });

  it("chain jobs overlap only within a voice; training is one at a time on the host", () => {
    expect(columnistOfRun('rescrape', {})).toBe('morris');
    expect(columnistOfRun('rebuild', { columnist: 'rival' })).toBe('rival');
    expect(columnistOfRun('backup', { columnist: 'rival' })).toBeNull();
    const a = startRun(store, { job: 'rescrape', trigger: 'test', columnist: 'morris' });
    const b = startRun(store, { job: 'rescrape', trigger: 'test', columnist: 'rival' });
    const c = startRun(store, { job: 'rescrape', trigger: 'test', columnist: 'morris' });
    expect([a.started, b.started, c.started]).toEqual([true, true, false]);
    const t1 = startRun(store, { job: 'retrain', trigger: 'test', columnist: 'morris' });
    const t2 = startRun(store, { job: 'retrain', trigger: 'test', columnist: 'rival' });
    expect([t1.started, t2.started]).toEqual([true, false]);
    expect(t2.run.message).toBe(`skipped: run #${t1.run.id} of retrain (for morris) is still running`);
    expect(t2.run.columnist).toBe('rival');
    for (const r of [a, b, t1]) finishRun(store, r.run.id, { status: 'succeeded' });
    expect(startRun(store, { job: 'retrain', trigger: 'test', columnist: 'rival' }).started).toBe(true);
  });
});
