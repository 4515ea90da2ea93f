/**
 * The layer rules of the design (shared/design/ARCHITECTURE.md), checked on the source tree so
 * they stay true: who may import whom, the one module that reads the environment, the one that
 * loads ONNX Runtime, and the tables whose SQL has one owner under src/store/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve('src');

function sources(dir = SRC): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : /\.ts$/.test(e.name) ? [p] : [];
  });
}

const files = sources().map((file) => ({ rel: path.relative(SRC, file).split(path.sep).join('/'), text: fs.readFileSync(file, 'utf8') }));

/** The src/ folders (or top-level files) a file imports from. */
function importedAreas(f: { rel: string; text: string }): string[] {
  const out: string[] = [];
  for (const m of f.text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
    const spec = m[1] ?? m[2]!;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(f.rel), spec));
    out.push(target.split('/')[0]!);
  }
  return out;
}

/** Areas each area must not import (lower layers never reach up). */
const FORBIDDEN: Record<string, readonly string[]> = {
  model: ['bot', 'jobs', 'pipeline', 'web', 'serve', 'cli', 'demo.ts', 'doctor.ts', 'columnists'],
  // Pipeline stages are handed a columnist's folders and name; they never look voices up.
  pipeline: ['bot', 'jobs', 'web', 'serve', 'cli', 'demo.ts', 'columnists'],
  store: ['bot', 'jobs', 'pipeline', 'web', 'serve', 'model', 'cli', 'columnists'],
  // Columnists are data read by every entry point; they know only the pipeline's file formats.
  columnists: ['bot', 'jobs', 'web', 'serve', 'cli', 'model', 'demo.ts', 'doctor.ts'],
  bot: ['jobs', 'web', 'serve', 'cli'],
};

/** Tables whose SQL lives only in their owner module. */
const OWNED_TABLES: Record<string, string> = {
  adapters: 'store/adapters.ts',
  adapter_events: 'store/adapters.ts',
  generations: 'store/generations.ts',
  feedback: 'store/feedback.ts',
  feedback_messages: 'store/feedback.ts',
  slack_requests_seen: 'store/slack-replays.ts',
  train_metrics: 'store/train-metrics.ts',
  kv: 'store/db.ts',
  job_runs: 'store/job-runs.ts',
  job_logs: 'store/job-runs.ts',
  audit_log: 'store/db.ts',
  articles: 'store/articles.ts',
  pages: 'store/crawl-pages.ts',
  crawl_urls: 'store/crawl-urls.ts',
  scrape_runs: 'store/scrape-runs.ts',
  datasets: 'store/datasets.ts',
  examples: 'store/datasets.ts',
};

describe('architecture', () => {
  it('reads every source file', () => {
    expect(files.length).toBeGreaterThan(100);
  });

  it('lower layers never import higher ones', () => {
    const broken = files.flatMap((f) => {
      const area = f.rel.split('/')[0]!;
      return importedAreas(f)
        .filter((a) => FORBIDDEN[area]?.includes(a))
        .map((a) => `${f.rel} imports ${a}`);
    });
    expect(broken).toEqual([]);
  });

  it('only config.ts reads process.env', () => {
    expect(files.filter((f) => f.rel !== 'config.ts' && /process\.env\b/.test(f.text)).map((f) => f.rel)).toEqual([]);
  });

  it('the model layer is handed its settings: it never reads the process config', () => {
    expect(files.filter((f) => f.rel.startsWith('model/') && /\bgetConfig\(/.test(f.text)).map((f) => f.rel)).toEqual([]);
  });

  it('only model/inference/runtime.ts loads onnxruntime-node', () => {
    expect(files.filter((f) => /from\s+'onnxruntime-node'|import\(\s*'onnxruntime-node'/.test(f.text)).map((f) => f.rel)).toEqual(['model/inference/runtime.ts']);
  });

  it('every table the migrations create has an owner module', () => {
    const migrations = files.find((f) => f.rel === 'store/migrations.ts')!.text;
    // <table>_new exists only inside a migration that rebuilds <table> (adapters in 45; articles, crawl_urls, pages in 49).
    const created = [...migrations.matchAll(/CREATE TABLE (?:IF NOT EXISTS )?(\w+)/g)].map((m) => m[1]!).filter((t) => !/_new$/.test(t));
    expect(created.length).toBeGreaterThan(10);
    expect([...new Set(created)].filter((t) => !(t in OWNED_TABLES))).toEqual([]);
  });

  it('no SQL statement outside store/', () => {
    const sql = /['"`]\s*(SELECT\s[\s\S]{0,200}?\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|PRAGMA\s+\w+|CREATE\s+(TABLE|INDEX))\b/;
    expect(files.filter((f) => !f.rel.startsWith('store/') && sql.test(f.text)).map((f) => f.rel)).toEqual([]);
  });

  it('tables with an owner module are queried only there', () => {
    const broken = files.flatMap((f) =>
      Object.entries(OWNED_TABLES)
        .filter(([table, owner]) => f.rel !== owner && !f.rel.startsWith('store/migrations') && new RegExp(`\\b(FROM|INTO|UPDATE|JOIN)\\s+${table}\\b`, 'i').test(f.text))
        .map(([table]) => `${f.rel} queries ${table}`),
    );
    expect(broken).toEqual([]);
  });

  it('serve may import anything but cli; only cli imports serve', () => {
    const broken = files.flatMap((f) => {
      const area = f.rel.split('/')[0]!;
      return importedAreas(f)
        .filter((a) => (area === 'serve' && a === 'cli') || (a === 'serve' && area !== 'serve' && area !== 'cli'))
        .map((a) => `${f.rel} imports ${a}`);
    });
    expect(broken).toEqual([]);
  });
});
