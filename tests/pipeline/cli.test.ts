/**
 * The pipeline commands as a person runs them: `morris scrape` against the sample site, then
 * `morris dataset build|stats|list|export` on what it stored.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { startSampleSite, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { runMorris } from '../morris-cli.ts';


let dir: string;
let site: SampleSite;
let env: NodeJS.ProcessEnv;

const morris = (...args: string[]) => runMorris(args, { env, cwd: dir });

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-cli-pipeline-'));
  initTinyModel(path.join(dir, 'tiny'));
  site = await startSampleSite();
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    MORRIS_DATA_DIR: path.join(dir, 'data'),
    MORRIS_MODELS_DIR: path.join(dir, 'models'),
    MORRIS_RATE_LIMIT_RPS: '100',
    MORRIS_HOST_CONCURRENCY: '4',
    LOG_LEVEL: 'warn',
  };
});
afterAll(async () => {
  await site.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// Each command starts the whole CLI (a few seconds on 2 cores), so this test runs only three;
// the behaviour behind them is tested in the library tests next to this file.
describe('morris scrape / dataset', () => {
  it('scrapes the sample site, builds a dataset from it and describes it', async () => {
    const scraped = await morris('scrape', '--source', 'sample-archive', '--base-url', site.url, '--json');
    expect(scraped.stderr).toBe('');
    expect(scraped.code).toBe(0);
    const [s1] = JSON.parse(scraped.stdout);
    expect(s1.new).toBeGreaterThanOrEqual(20);
    expect(s1.failed).toEqual([]);

    const built = await morris('dataset', 'build', '--model', path.join(dir, 'tiny'), '--max-tokens', '2048', '--json');
    expect(built.code).toBe(0);
    const r = JSON.parse(built.stdout);
    expect(r.counts.articles).toBe(s1.new);
    expect(r.counts.dedupe.exact + r.counts.dedupe.near).toBeGreaterThanOrEqual(2);
    const first = JSON.parse(fs.readFileSync(r.files.train, 'utf8').split('\n')[0]);
    expect(first.messages.map((m: { role: string }) => m.role)).toEqual(['system', 'user', 'assistant']);

    const stats = await morris('dataset', 'stats');
    expect(stats.code).toBe(0);
    expect(stats.stdout).toContain(`Dataset ${r.id}`);
    expect(stats.stdout).toMatch(new RegExp(`splits\\s+train ${r.train}, validation ${r.validation}`));
    expect(stats.stdout).toMatch(/length histogram/);
  });
});
