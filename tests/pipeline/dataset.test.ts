import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { loadTokenCounter, type TokenCounter } from '../../src/pipeline/dataset/token-count.ts';
import {
  composeDataset,
  exportJsonl,
  splitOf,
  type DatasetSettings,
} from '../../src/pipeline/dataset/versions.ts';
import { buildDataset } from '../../src/pipeline/dataset/build.ts';
import { instructionFor, INSTRUCTION_TEMPLATES, loadStyle, selectExtras, type Style } from '../../src/pipeline/dataset/enhance.ts';
import type { ArticleInput } from '../../src/pipeline/dataset/clean-text.ts';
import { readSystemPrompt as readGenerationPrompt } from '../../src/prompts.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { listDatasets } from '../../src/store/datasets.ts';
import { datasetStats } from '../../src/pipeline/dataset/stats.ts';

const SENTENCES = [
  'The operators are doomed, and the vendors are queueing behind them.',
  'Capex rises while revenue does not, which is rarely a sign of a healthy business.',
  'Cue the consultants, who will bill handsomely to recommend more consultants.',
  'The keynote promised transformation; the quarterly results delivered a shrug.',
  'Nobody has yet found the killer app, though many have found the exit.',
  'What could possibly go wrong?',
  'Regulators, meanwhile, are holding another consultation about the last consultation.',
  'The share price has the trajectory of a dropped anvil.',
];

function body(seed: number, paragraphs = 8): string {
  return Array.from({ length: paragraphs }, (_, p) =>
    Array.from({ length: 5 }, (_, s) => SENTENCES[(seed * 7 + p * 3 + s) % SENTENCES.length]).join(' ') + ` (Note ${seed}.${p}.)`,
  ).join('\n\n');
}

const article = (id: number, paragraphs = 8): ArticleInput => ({
  id,
  url: `https://example.org/columns/column-${id}/`,
  title: `Column number ${id} on the coming doom`,
  author: 'Iain Morris',
  published: `2024-02-${String((id % 28) + 1).padStart(2, '0')}`,
  body: body(id, paragraphs),
});

const STYLE: Style = {
  systemPrompt: 'You are Morris. Write gloomy, witty telecom columns.',
  extras: Array.from({ length: 10 }, (_, i) => [
    { role: 'user' as const, content: `Write a column about gadget number ${i}.` },
    { role: 'assistant' as const, content: `Gadget ${i} Is Doomed\n\n${body(100 + i, 3)}` },
  ]),
};

const SETTINGS: DatasetSettings = {
  maxTokens: 4096,
  policy: 'split',
  valFraction: 0.2,
  extraRatio: 0.2,
  nearDupThreshold: 0.85,
  minWords: 50,
};

let dir: string;
let counter: TokenCounter;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-dataset-'));
  initTinyModel(path.join(dir, 'tiny'));
  counter = await loadTokenCounter(path.join(dir, 'tiny'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('composeDataset', () => {
  const articles = Array.from({ length: 30 }, (_, i) => article(i + 1));

  it('gives the same id and examples for the same inputs in any order', () => {
    const a = composeDataset(articles, STYLE, SETTINGS, counter);
    const b = composeDataset([...articles].reverse(), STYLE, SETTINGS, counter);
    expect(b.id).toBe(a.id);
    expect(b.examples).toEqual(a.examples);
    expect(a.id).toMatch(/^ds-[0-9a-f]{16}$/);
  });

  it('changes the id when an input or a setting changes', () => {
    const base = composeDataset(articles, STYLE, SETTINGS, counter).id;
    const edited = articles.map((x, i) => (i === 3 ? { ...x, body: `${x.body}\n\nOne more paragraph of gloom.` } : x));
    expect(composeDataset(edited, STYLE, SETTINGS, counter).id).not.toBe(base);
    expect(composeDataset(articles, STYLE, { ...SETTINGS, maxTokens: 2048 }, counter).id).not.toBe(base);
    expect(composeDataset(articles, { ...STYLE, systemPrompt: 'Be nice.' }, SETTINGS, counter).id).not.toBe(base);
    expect(composeDataset(articles, STYLE, SETTINGS, { ...counter, id: 'other-tokenizer' }).id).not.toBe(base);
  });

  it('splits by article with a stable hash that more articles do not disturb', () => {
    const small = composeDataset(articles.slice(0, 20), STYLE, SETTINGS, counter);
    const big = composeDataset(articles, STYLE, SETTINGS, counter);
    const sideOf = (ds: typeof small) => new Map(ds.examples.filter((e) => e.articleId).map((e) => [e.articleId, e.split]));
    const s1 = sideOf(small);
    const s2 = sideOf(big);
    for (const [id, split] of s1) expect(s2.get(id)).toBe(split);
    for (const [id, split] of s2) expect(split).toBe(splitOf(`https://example.org/columns/column-${id}/`, 0.2));
    const val = [...s2.values()].filter((x) => x === 'validation').length;
    expect(val).toBeGreaterThan(0);
    expect(val).toBeLessThan(15);
  });

  it("a small archive's fallback held-out article is the same wherever the archive is served", () => {
    // 0.1% validation: six articles all hash into train, so the one with the smallest hash is held out.
    const settings = { ...SETTINGS, valFraction: 0.001, extraRatio: 0 };
    const at = (origin: string) => articles.slice(0, 6).map((a) => ({ ...a, url: a.url.replace('https://example.org', origin) }));
    const heldOut = (origin: string) => composeDataset(at(origin), STYLE, settings, counter).examples.filter((e) => e.split === 'validation').map((e) => e.articleId);
    const held = heldOut('https://example.org');
    expect(new Set(held).size).toBe(1);
    for (const origin of ['http://127.0.0.1:41234', 'http://127.0.0.1:50001', 'https://mirror.example.net']) expect(heldOut(origin)).toEqual(held);
  });

  it('builds system/user/assistant examples with deterministic instructions and extras at the ratio', () => {
    const ds = composeDataset(articles, STYLE, SETTINGS, counter);
    const byKind = (k: string) => ds.examples.filter((e) => e.kind === k);
    expect(byKind('article')).toHaveLength(30);
    expect(byKind('extra')).toHaveLength(Math.round(0.2 * 30));
    for (const e of ds.examples) {
      expect(e.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant']);
      expect(e.messages[0].content).toBe(STYLE.systemPrompt);
      expect(e.nTokens).toBe(counter.countChat(e.messages));
    }
    const first = byKind('article').find((e) => e.articleId === 1)!;
    expect(first.messages[1].content).toBe(instructionFor(articles[0]));
    expect(first.messages[2].content.startsWith(`${articles[0].title}\n\n`)).toBe(true);
    // Several templates are in use across 30 articles.
    const openings = new Set(byKind('article').map((e) => e.messages[1].content.split(' ').slice(0, 2).join(' ')));
    expect(openings.size).toBeGreaterThanOrEqual(3);
    expect(INSTRUCTION_TEMPLATES.length).toBeGreaterThanOrEqual(5);
  });

  it('truncate keeps every example under the limit and counts the cuts', () => {
    const long = [article(1, 40), article(2, 3)];
    const fullLen = counter.countChat([
      { role: 'system', content: STYLE.systemPrompt },
      { role: 'user', content: instructionFor(long[0]) },
      { role: 'assistant', content: `${long[0].title}\n\n${long[0].body}` },
    ]);
    const max = Math.floor(fullLen / 3);
    const ds = composeDataset(long, { ...STYLE, extras: [] }, { ...SETTINGS, maxTokens: max, policy: 'truncate' }, counter);
    expect(ds.examples).toHaveLength(2);
    expect(ds.length).toMatchObject({ truncated: 1, fitted: 1, split: 0 });
    for (const e of ds.examples) expect(e.nTokens).toBeLessThanOrEqual(max);
    const cut = ds.examples.find((e) => e.articleId === 1)!;
    // Cut at a paragraph boundary: the kept text is a prefix of whole paragraphs.
    expect(`${long[0].title}\n\n${long[0].body}`.startsWith(cut.messages[2].content)).toBe(true);
  });

  it('split packs paragraphs into parts under the limit that together hold the whole article', () => {
    const long = article(1, 40);
    const fullLen = counter.countChat([
      { role: 'system', content: STYLE.systemPrompt },
      { role: 'user', content: instructionFor(long) },
      { role: 'assistant', content: `${long.title}\n\n${long.body}` },
    ]);
    const max = Math.floor(fullLen / 3);
    const ds = composeDataset([long], { ...STYLE, extras: [] }, { ...SETTINGS, maxTokens: max, policy: 'split' }, counter);
    expect(ds.examples.length).toBeGreaterThanOrEqual(3);
    expect(ds.length).toMatchObject({ split: 1, splitParts: ds.examples.length, truncated: 0 });
    for (const e of ds.examples) expect(e.nTokens).toBeLessThanOrEqual(max);
    expect(new Set(ds.examples.map((e) => e.split)).size).toBe(1);
    const rebuilt = ds.examples.map((e) => e.messages[2].content).join('\n\n');
    expect(rebuilt).toBe(`${long.title}\n\n${long.body}`);
    expect(ds.examples[1].messages[1].content).toMatch(/^Continue your column "Column number 1/);
  });

  it('refuses a limit that leaves no room for an answer, and an empty dataset', () => {
    expect(() => composeDataset([article(1)], STYLE, { ...SETTINGS, maxTokens: 16 }, counter)).toThrow(/leaves no room/);
    expect(() => composeDataset([], { ...STYLE, extras: [] }, SETTINGS, counter)).toThrow(/No articles/);
  });
});

describe('enhance', () => {
  it('loads the bundled style: a system prompt and valid extra examples', () => {
    const style = loadStyle();
    expect(style.systemPrompt.length).toBeGreaterThan(200);
    expect(style.extras.length).toBeGreaterThanOrEqual(20);
    for (const m of style.extras) expect(m.map((x) => x.role)).toEqual(['user', 'assistant']);
  });

  it('trains on the system prompt generation uses: editor comments dropped, an empty guide refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-style-'));
    try {
      const file = path.join(dir, 'system-prompt.md');
      fs.writeFileSync(file, '<!-- editors: keep this under a page -->\nYou are the columnist.\n<!-- end -->\n');
      const style = loadStyle(dir);
      expect(style.systemPrompt).toBe('You are the columnist.');
      expect(style.systemPrompt).toBe(readGenerationPrompt(file));
      fs.writeFileSync(file, '<!-- only a note -->\n');
      expect(() => loadStyle(dir)).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('selects extras by a stable hash, at most all of them', () => {
    const a = selectExtras(STYLE.extras, 10, 0.3);
    expect(a).toHaveLength(3);
    expect(selectExtras([...STYLE.extras].reverse(), 10, 0.3)).toEqual(a);
    expect(selectExtras(STYLE.extras, 1000, 0.3)).toHaveLength(STYLE.extras.length);
  });
});

describe('buildDataset with the store', () => {
  let store: Store;
  const outDir = () => path.join(dir, 'datasets');
  const insert = (a: ArticleInput) =>
    store
      .prepare(`INSERT INTO articles (source, url, title, author, published, body, status) VALUES ('test', ?, ?, ?, ?, ?, 'ok')`)
      .run(a.url, a.title, a.author, a.published, a.body);

  beforeAll(() => {
    store = openStore(path.join(dir, 'morris.db'));
    for (let i = 1; i <= 12; i++) insert(article(i));
    insert({ ...article(13), url: 'https://example.org/columns/copy/', published: '2025-01-01' , body: article(1).body }); // exact duplicate of 1
    insert({ ...article(14), body: 'Too short.' });
  });
  afterAll(() => store.close());

  it('builds, stores and exports a version; rebuilding unchanged inputs reuses it without new rows', async () => {
    const opts = { tokenCounter: counter, settings: SETTINGS, outDir: outDir(), style: STYLE };
    const r1 = await buildDataset(store, opts);
    expect(r1.reused).toBe(false);
    expect(r1.previousId).toBeNull();
    expect(r1.counts.dedupe).toMatchObject({ exact: 1 });
    expect(r1.counts.clean.dropped).toEqual({ 'too short (< 50 words)': 1 });
    expect(r1.examples).toBe(12 + Math.round(0.2 * 12));
    expect(r1.newExamples).toBe(r1.examples);
    const lines = fs.readFileSync(r1.files.all, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(r1.examples);
    expect(Object.keys(lines[0])).toEqual(['messages']);
    expect(fs.readFileSync(r1.files.train, 'utf8').trim().split('\n')).toHaveLength(r1.train);
    expect(fs.readFileSync(r1.files.validation, 'utf8').trim().split('\n').filter(Boolean)).toHaveLength(r1.validation);
    const dupRow = store.prepare<[], { status: string }>(`SELECT status FROM articles WHERE url = 'https://example.org/columns/copy/'`).get();
    expect(dupRow?.status).toBe('duplicate');

    const rowsBefore = store.prepare('SELECT count(*) n FROM examples').get() as { n: number };
    fs.rmSync(r1.files.train); // files are rewritten from the rows when missing
    const r2 = await buildDataset(store, opts);
    expect(r2).toMatchObject({ id: r1.id, reused: true, previousId: r1.id, newExamples: 0, removedExamples: 0 });
    expect(store.prepare('SELECT count(*) n FROM examples').get()).toEqual(rowsBefore);
    expect(fs.existsSync(r1.files.train)).toBe(true);
    expect(listDatasets(store)).toHaveLength(1);

    insert(article(15));
    const r3 = await buildDataset(store, opts);
    expect(r3.id).not.toBe(r1.id);
    expect(r3.previousId).toBe(r1.id);
    expect(r3.newExamples).toBeGreaterThanOrEqual(1);
    expect(listDatasets(store).map((d) => d.id)).toEqual([r3.id, r1.id]);

    const stats = datasetStats(store, r3.id);
    expect(stats.examples).toBe(r3.examples);
    expect(stats.bySplit.train + stats.bySplit.validation).toBe(r3.examples);
    expect(stats.histogram.reduce((s, h) => s + h.count, 0)).toBe(r3.examples);
    expect(stats.tokens!.max).toBeLessThanOrEqual(SETTINGS.maxTokens);

    const out = path.join(dir, 'export.jsonl');
    expect(exportJsonl(store, r3.id, out, 'train')).toBe(r3.train);
    expect(fs.readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(r3.train);
    expect(() => exportJsonl(store, 'ds-nope', out)).toThrow(/No dataset/);
  });

  it('says clearly when the tokenizer is missing', async () => {
    await expect(loadTokenCounter(path.join(dir, 'no-model'))).rejects.toMatchObject({ code: 'MODEL_MISSING' });
  });
});
