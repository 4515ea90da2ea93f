/**
 * A full disk, for real: the data dir is a 5 MB tmpfs. `morris scrape` and `morris dataset build`
 * stop with DISK_FULL naming the path and what was kept; the counts they give match the rows in
 * the store, and no partial or temp file is left behind. Needs root (mount); skipped otherwise.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { startSampleSite, type SampleArticle, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { runMorris } from '../morris-cli.ts';


let dir: string;
const mounts: string[] = [];
let mountError: string | null = null;

/** A tmpfs of `size` at a new folder under `dir`, or null (and `mountError` says why). */
function mountTmpfs(name: string, size = '5m'): string | null {
  const at = path.join(dir, name);
  fs.mkdirSync(at);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', at], { stdio: 'pipe' });
  } catch (e) {
    mountError = `cannot mount a tmpfs here (needs root): ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
    return null;
  }
  mounts.push(at);
  return at;
}

/** Deterministic, distinct prose: no two articles are duplicates of each other. */
function articles(n: number, bodyChars: number): SampleArticle[] {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  // Made-up words from a large vocabulary, so that near-duplicate detection finds none.
  const word = () => Array.from({ length: 3 + Math.floor(rand() * 6) }, () => 'abcdefghijklmnopqrstuvwxyz'[Math.floor(rand() * 26)]).join('');
  const words = Array.from({ length: 5000 }, word);
  return Array.from({ length: n }, (_, i) => {
    const paras: string[] = [];
    let len = 0;
    while (len < bodyChars) {
      const p = Array.from({ length: 80 }, () => words[Math.floor(rand() * words.length)]).join(' ') + '.';
      paras.push(p[0]!.toUpperCase() + p.slice(1));
      len += p.length;
    }
    return { slug: `column-${i}`, title: `Column number ${i}`, author: 'Iain Morris', published: `2025-01-${String((i % 28) + 1).padStart(2, '0')}`, body: paras.join('\n\n') };
  });
}

const morris = (env: NodeJS.ProcessEnv, ...args: string[]) => runMorris(args, { env, cwd: dir, timeoutMs: 90_000 });

const envFor = (dataDir: string): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  HOME: dir,
  MORRIS_DATA_DIR: dataDir,
  MORRIS_MODELS_DIR: path.join(dir, 'models'),
  MORRIS_RATE_LIMIT_RPS: '100',
  MORRIS_HOST_CONCURRENCY: '4',
  LOG_LEVEL: 'warn',
});

/** Every file under `root`, relative, sorted. */
function filesUnder(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((d) => d.isFile())
    .map((d) => path.relative(root, path.join(d.parentPath, d.name)))
    .sort();
}

/** Room to open the store and read it back after the disk filled (the check, not the test). */
function grow(at: string, size: string): void {
  execFileSync('mount', ['-o', `remount,size=${size}`, at]);
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-disk-full-'));
  initTinyModel(path.join(dir, 'tiny'));
});
afterAll(() => {
  for (const m of mounts) execFileSync('umount', [m]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a full disk', () => {
  let site: SampleSite | undefined;
  afterAll(async () => site?.close());

  it('during a scrape: DISK_FULL with the database path and true counts of what was kept', async (ctx) => {
    const data = mountTmpfs('scrape');
    ctx.skip(data === null, mountError ?? '');
    // About 8 MB of article text for a 5 MB disk.
    site = await startSampleSite({ articles: articles(300, 25_000), pageSize: 100 });
    const r = await morris(envFor(data!), 'scrape', '--source', 'sample-archive', '--base-url', site.url);

    expect(r.code).toBe(1);
    const dbPath = path.join(data!, 'morris.db');
    expect(r.stderr).toContain(`morris: Disk full while writing the database ${dbPath} during the scrape of sample-archive`);
    expect(r.stderr).not.toContain('Unexpected error');
    const m = /kept what was committed before it filled: (\d+) new and (\d+) updated articles/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const reportedNew = Number(m![1]);
    expect(reportedNew).toBeGreaterThan(10);
    expect(reportedNew).toBeLessThan(300);

    grow(data!, '20m');
    const db = new Database(dbPath, { readonly: true });
    try {
      const stored = db.prepare(`SELECT count(*) AS n FROM articles WHERE status = 'ok'`).get() as { n: number };
      expect(stored.n).toBe(reportedNew);
      // When there was room to close the run, its summary says the same.
      const run = db.prepare('SELECT summary FROM scrape_runs').get() as { summary: string | null };
      if (run.summary) expect(JSON.parse(run.summary).new).toBe(reportedNew);
    } finally {
      db.close();
    }
    expect(filesUnder(data!).filter((f) => !/^morris\.db(-wal|-shm)?$/.test(f))).toEqual([]);
  });

  it('during a dataset build: DISK_FULL, nothing registered, no orphan split or temp files', async (ctx) => {
    const data = mountTmpfs('build');
    ctx.skip(data === null, mountError ?? '');
    // About 0.7 MB of text: the scrape fits in 5 MB; the build's three JSONL files (each larger than
    // the text, as the system prompt rides on every example) and its rows do not.
    const small = await startSampleSite({ articles: articles(60, 12_000), pageSize: 100 });
    const env = envFor(data!);
    try {
      const scraped = await morris(env, 'scrape', '--source', 'sample-archive', '--base-url', small.url, '--json');
      expect(scraped.code, scraped.stderr).toBe(0);
      expect(JSON.parse(scraped.stdout)[0].new).toBe(60);
    } finally {
      await small.close();
    }
    // A killed build's temp file (its PID long gone) that this build must sweep.
    fs.mkdirSync(path.join(data!, 'datasets'));
    fs.writeFileSync(path.join(data!, 'datasets', 'deadbeef.train.jsonl.tmp-999999999'), 'partial');
    const r = await morris(env, 'dataset', 'build', '--model', path.join(dir, 'tiny'), '--max-tokens', '2048');
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toMatch(/^morris: Disk full while writing \S+; dataset [\w-]+ was not registered and its partial files were removed/m);
    expect(r.stderr).not.toContain('Unexpected error');

    // The split files written before the disk filled are gone, and so is the killed build's temp file.
    expect(filesUnder(data!).filter((f) => !/^morris\.db(-wal|-shm)?$/.test(f))).toEqual([]);
    const db = new Database(path.join(data!, 'morris.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) AS n FROM datasets').get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT count(*) AS n FROM examples').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });
});
