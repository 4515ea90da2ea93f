/**
 * `morris scrape` and `morris dataset build|stats|list|export|import`. Wiring only: the work is
 * done by scrapeSource / buildDataset and the dataset module; this file reads config, shows
 * progress and prints summaries.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import type { CliContext } from './context.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP, numberOption } from './options.ts';
import { resolveColumnist } from '../columnists/folder.ts';
import { MorrisError } from '../errors.ts';
import { getKv } from '../store/db.ts';
import { baseModelLocation } from '../model/checkpoint/base-model-location.ts';
import type { CrawlProgress, CrawlSummary } from '../pipeline/crawl/crawl.ts';
import { exportJsonl } from '../pipeline/dataset/versions.ts';
import { datasetStats, type DatasetStats } from '../pipeline/dataset/stats.ts';
import { listDatasets } from '../store/datasets.ts';
import { listProfiles, loadProfile } from '../pipeline/crawl/profile.ts';
import {
  buildDataset,
  buildOptionsFromConfig,
  currentDatasetKey,
  datasetOutDir,
  type BuildResult,
} from '../pipeline/dataset/build.ts';
import { scrapeSettingsFromConfig, scrapeSource, sourceKey } from '../pipeline/crawl/scrape.ts';
import { loadTokenCounter } from '../pipeline/dataset/token-count.ts';
import { importDataset } from '../pipeline/dataset/import.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('scrape')
    .description('Scrape configured sources politely and incrementally (robots.txt, rate limits, conditional requests)')
    .option('--source <name>', `source profile in the columnist's sources/ folder (default: MORRIS_SOURCES, else every profile)`)
    .option('--base-url <url>', 'base URL for profiles that use {{baseUrl}} (e.g. the sample site)')
    .option('--max-pages <n>', 'listing pages to walk per listing', numberOption('--max-pages', 1, 100_000, true))
    .option('--full', 're-walk every listing page and revalidate every stored article')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'print the summary as JSON')
    .action(async (o: { source?: string; baseUrl?: string; maxPages?: number; full?: boolean; json?: boolean; columnist?: string }) => {
      const config = ctx.config();
      const voice = resolveColumnist(o.columnist, config);
      // MORRIS_SOURCES names the default voice's sources; another voice scrapes every profile it has.
      const names = o.source ? [o.source] : voice.isDefault && config.MORRIS_SOURCES.length ? config.MORRIS_SOURCES : listProfiles(voice.sourcesDir);
      const summaries: CrawlSummary[] = [];
      for (const name of names) {
        let profile;
        try {
          profile = loadProfile(name, { baseUrl: o.baseUrl, dir: voice.sourcesDir });
        } catch (e) {
          // Running every profile: one that needs --base-url is skipped, not fatal.
          if (!o.source && e instanceof MorrisError && /needs a base URL/.test(e.message)) {
            process.stderr.write(`Skipping ${name}: it needs --base-url.\n`);
            continue;
          }
          throw e;
        }
        const bar = progressBar(name);
        try {
          summaries.push(
            await scrapeSource(ctx.store(), profile, {
              ...scrapeSettingsFromConfig(config),
              full: o.full,
              maxPages: o.maxPages,
              onProgress: bar.update,
              columnist: voice.name,
            }),
          );
        } finally {
          bar.stop();
        }
      }
      if (o.json) process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
      else for (const s of summaries) process.stdout.write(formatScrapeSummary(s));
      if (summaries.some((s) => s.failed.length && s.new + s.updated + s.unchanged === 0)) process.exitCode = 2;
    });

  const dataset = program.command('dataset').description('Build, inspect, export and import training datasets');

  dataset
    .command('build')
    .description('Clean, dedupe and enhance stored articles into a new immutable dataset version (JSONL in data/datasets)')
    .option('--model <dir>', "base model folder whose tokenizer counts tokens (default: MORRIS_BASE_MODEL)")
    .option('--max-tokens <n>', 'longest example in tokens (default: MORRIS_MAX_SEQ_TOKENS)', numberOption('--max-tokens', 16, 131_072, true))
    .option('--policy <policy>', 'what to do with longer articles: split (at paragraphs) or truncate', 'split')
    .option('--source <name>', 'only articles from this source')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'print the result as JSON')
    .action(async (o: { model?: string; maxTokens?: number; policy: string; source?: string; json?: boolean; columnist?: string }) => {
      const voice = resolveColumnist(o.columnist, ctx.config());
      if (o.policy !== 'split' && o.policy !== 'truncate') {
        throw new MorrisError('BAD_INPUT', `--policy must be split or truncate, not "${o.policy}".`);
      }
      const options = await buildOptionsFromConfig(ctx.config(), {
        modelDir: o.model,
        maxTokens: o.maxTokens,
        policy: o.policy,
        source: o.source && sourceKey(voice.name, o.source),
        columnist: voice,
      });
      const r = await buildDataset(ctx.store(), options);
      process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatBuild(r));
    });

  dataset
    .command('stats [id]')
    .description('Counts, token-length histogram and split sizes of a dataset (default: the latest build)')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'print as JSON')
    .action((id: string | undefined, o: { json?: boolean; columnist?: string }) => {
      const store = ctx.store();
      const voice = resolveColumnist(o.columnist, ctx.config()).name;
      const target = id ?? getKv(store, currentDatasetKey(voice)) ?? listDatasets(store, voice)[0]?.id;
      if (!target) throw new MorrisError('NOT_FOUND', 'No datasets yet.', { hint: 'Build one with `morris dataset build`.' });
      const s = datasetStats(store, target);
      process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStats(s));
    });

  dataset
    .command('list')
    .description('Dataset versions of a columnist, newest first')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'print as JSON')
    .action((o: { json?: boolean; columnist?: string }) => {
      const store = ctx.store();
      const voice = resolveColumnist(o.columnist, ctx.config()).name;
      const rows = listDatasets(store, voice);
      const current = getKv(store, currentDatasetKey(voice));
      if (o.json) {
        process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r, settings: JSON.parse(r.settings), stats: undefined, current: r.id === current })), null, 2)}\n`);
        return;
      }
      if (!rows.length) {
        process.stdout.write('No datasets yet. Build one with `morris dataset build`.\n');
        return;
      }
      const lines = rows.map(
        (r) => `${r.id === current ? '*' : ' '} ${r.id}  ${r.created_at.slice(0, 19).replace('T', ' ')}  ${r.origin.padEnd(6)}  train ${String(r.train_count).padStart(5)}  validation ${String(r.val_count).padStart(4)}`,
      );
      process.stdout.write(`${lines.join('\n')}\n(* = latest build)\n`);
    });

  dataset
    .command('export <id>')
    .description('Write a dataset as messages-format JSONL (what TRL and Axolotl read)')
    .requiredOption('--out <file>', 'output file')
    .option('--split <split>', 'only train or validation')
    .action((id: string, o: { out: string; split?: string }) => {
      if (o.split && o.split !== 'train' && o.split !== 'validation') {
        throw new MorrisError('BAD_INPUT', `--split must be train or validation, not "${o.split}".`);
      }
      const n = exportJsonl(ctx.store(), id, path.resolve(o.out), o.split as 'train' | 'validation' | undefined);
      process.stdout.write(`Wrote ${n} examples to ${path.resolve(o.out)}\n`);
    });

  registerImport(dataset, ctx);
}

/** `dataset import` (the importer lives in src/pipeline/dataset/import.ts, owned by training). */
function registerImport(dataset: Command, ctx: CliContext): void {
  dataset
    .command('import <file>')
    .description('Import a messages-format JSONL file (TRL/Axolotl style) as a dataset version')
    .option('--model <dir>', "count tokens with this model's tokenizer (default: MORRIS_BASE_MODEL when present)")
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'print the result as JSON')
    .action(async (jsonl: string, o: { model?: string; json?: boolean; columnist?: string }) => {
      const config = ctx.config();
      const voice = resolveColumnist(o.columnist, config);
      const modelDir = o.model ? path.resolve(o.model) : baseModelLocation(config.MORRIS_BASE_MODEL, config.MORRIS_MODELS_DIR);
      // Token counts are a nicety for imports: without a local tokenizer the rows simply lack them.
      const tokenizer = o.model || fs.existsSync(path.join(modelDir, 'tokenizer.json')) ? await loadTokenCounter(modelDir) : undefined;
      const r = importDataset(ctx.store(), path.resolve(jsonl), tokenizer, { outDir: datasetOutDir(config), columnist: voice.name });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        return;
      }
      const rejected = r.rejected.slice(0, 10).map((x) => `    line ${x.line}: ${x.reason}`);
      process.stdout.write(
        [
          `Dataset ${r.id}${r.created ? '' : ' (already imported)'}: train ${r.train}, validation ${r.validation}${tokenizer ? '' : ' (no tokenizer found: token counts left empty)'}`,
          ...(r.rejectedTotal ? [`  ${r.rejectedTotal} lines rejected${r.rejectedTotal > rejected.length ? ` (first ${rejected.length})` : ''}:`, ...rejected] : []),
          '',
        ].join('\n'),
      );
    });
}

function progressBar(name: string) {
  const bar = new SingleBar(
    { format: `${name} {phase} [{bar}] {value}/{total} {url}`, hideCursor: true, clearOnComplete: true, stream: process.stderr },
  );
  let started = false;
  return {
    update: (p: CrawlProgress) => {
      const url = (p.url ?? '').slice(-60);
      const phase = p.phase === 'discover' ? 'discovering' : 'fetching';
      // Discovery does not know how many pages there are: keep the bar one step short of full.
      const total = p.phase === 'discover' ? p.done + 1 : Math.max(p.total, 1);
      if (!started) {
        bar.start(total, p.done, { phase, url });
        started = true;
      }
      bar.setTotal(total);
      bar.update(p.done, { phase, url });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

function countBy(list: { reason: string }[]): string[] {
  const m = new Map<string, number>();
  for (const x of list) m.set(x.reason, (m.get(x.reason) ?? 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1]).map(([r, n]) => `    ${String(n).padStart(4)}  ${r}`);
}

export function formatScrapeSummary(s: CrawlSummary): string {
  const lines = [
    `Scrape of ${s.source}${s.full ? ' (full)' : ''}: ${(s.durationMs / 1000).toFixed(1)} s, ${s.requests} requests (${s.notModified} answered 304), ${(s.bytes / 1024).toFixed(0)} KiB`,
    `  discovered   ${s.discovered} article URLs on ${s.listingPages} listing pages + feeds/sitemaps (${s.filtered} other links ignored)`,
    `  new          ${s.new}`,
    `  updated      ${s.updated}`,
    `  unchanged    ${s.unchanged}`,
    `  robots.txt   ${s.skippedRobots} skipped`,
    `  off-host     ${s.offHost} refused (links or redirects outside ${s.source}'s hosts, or to private addresses)`,
    ...s.offHostUrls.slice(0, 5).map((x) => `         ${x.url}: ${x.reason}`),
    `  bad-encoding ${s.badEncoding} of the skipped below (decoded text over 1% U+FFFD: bytes not in the page's charset)`,
    `  skipped      ${s.skipped.length}`,
    ...countBy(s.skipped),
    `  failed       ${s.failed.length}`,
    ...countBy(s.failed.map((f) => ({ reason: f.reason.replace(/: https?:\/\/\S+$/, '') }))),
  ];
  for (const [k, n] of Object.entries(s.warnings)) lines.push(`  warning      ${n} × ${k}`);
  for (const c of s.caps) lines.push(`  capped       ${c.message}; ${s.pending} URLs pending, the next run continues`);
  return `${lines.join('\n')}\n`;
}

function formatBuild(r: BuildResult): string {
  const c = r.counts;
  const dropped = Object.entries(c.clean.dropped).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  const stripped = Object.entries(c.clean.linesStripped).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  return [
    `Dataset ${r.id}${r.reused ? ' (unchanged inputs: existing version reused)' : ''}`,
    `  articles     ${c.articles} stored → ${c.clean.kept} after cleaning (dropped: ${dropped}; boilerplate lines stripped: ${stripped})`,
    `  dedupe       ${c.dedupe.kept} kept, ${c.dedupe.exact} exact and ${c.dedupe.near} near duplicates removed`,
    `  examples     ${r.examples} (train ${r.train}, validation ${r.validation}; ${c.extras} extra style examples)`,
    `  length       ${c.length.fitted} fitted, ${c.length.truncated} truncated, ${c.length.split} split into ${c.length.splitParts} parts`,
    `  vs previous  ${r.previousId ? `${r.previousId}: ${r.newExamples} new, ${r.removedExamples} removed examples` : `${r.newExamples} new examples (first build)`}`,
    `  files        ${r.files.train}`,
    `               ${r.files.validation}`,
    `               ${r.files.all}`,
    '',
  ].join('\n');
}

function formatStats(s: DatasetStats): string {
  const max = Math.max(1, ...s.histogram.map((h) => h.count));
  const hist = s.histogram.map((h) => `    ≤${String(h.upTo).padStart(6)}  ${String(h.count).padStart(5)}  ${'█'.repeat(Math.round((h.count / max) * 40))}`);
  const t = s.tokens;
  return [
    `Dataset ${s.id} (${s.origin}, ${s.createdAt})`,
    `  examples     ${s.examples} from ${s.articles} articles (${Object.entries(s.byKind).map(([k, n]) => `${n} ${k}`).join(', ')})`,
    `  splits       train ${s.bySplit.train}, validation ${s.bySplit.validation}`,
    t ? `  tokens       total ${t.total}, min ${t.min}, median ${t.p50}, mean ${t.mean}, p95 ${t.p95}, max ${t.max}` : '  tokens       not counted',
    ...(hist.length ? ['  length histogram (tokens per example):', ...hist] : []),
    '',
  ].join('\n');
}
