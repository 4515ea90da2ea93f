/**
 * npm run bench:extract [-- --compare] [--limit N] [--only TEXT] [--worst N] [--dump DIR] [--bench DIR]
 *
 * Runs the project's article extractor on the shared extraction benchmark
 * (../shared/extraction-bench: 181 real pages with Zyte's ground truth) and scores the body with
 * the benchmark's own metric module, imported from there so the numbers are comparable with the
 * stored outputs of trafilatura, Readability.js, newspaper and the rest. Prints a comparison table
 * (--compare: every stored extractor) and ends with one JSON line
 * {"f1","precision","recall","median_ms"}.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { extractArticle } from '../src/pipeline/extract/article.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Where the benchmark lives unless --bench says otherwise: next to the repository. */
const DEFAULT_BENCH = path.resolve(REPO, '../shared/extraction-bench');

interface BodyScores { precision: number; recall: number; f1: number; accuracy: number; f1_std?: number }
interface PageScore { precision: number; recall: number; f1: number }
interface Metric {
  evaluateBodies(pages: { trueBody: string; predBody: string }[], opts?: { nBootstrap?: number; seed?: number }):
    { overall: BodyScores; perPage: PageScore[] };
}

interface Options { compare: boolean; limit?: number; only?: string; worst: number; dump?: string; bootstrap: number; bench: string }

function parseArgs(argv: string[]): Options {
  const opts: Options = { compare: false, worst: 0, bootstrap: 200, bench: DEFAULT_BENCH };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--compare') opts.compare = true;
    else if (a === '--limit') opts.limit = Number(value());
    else if (a === '--only') opts.only = value();
    else if (a === '--worst') opts.worst = Number(value());
    else if (a === '--dump') opts.dump = value();
    else if (a === '--bootstrap') opts.bootstrap = Number(value());
    else if (a === '--bench') opts.bench = path.resolve(value());
    else throw new Error(`unknown option ${a} (expected --compare, --limit N, --only TEXT, --worst N, --dump DIR, --bootstrap N, --bench DIR)`);
  }
  return opts;
}

async function loadMetric(bench: string): Promise<Metric> {
  const file = path.join(bench, 'metric.mjs');
  if (!existsSync(file) || !existsSync(path.join(bench, 'data', 'zyte', 'ground-truth.json'))) {
    console.error(`extraction benchmark not found at ${bench} (expected metric.mjs and data/zyte/ground-truth.json).\n` +
      'It lives next to this repository as ../shared/extraction-bench (or pass --bench DIR); without it there is nothing to score.');
    process.exit(2);
  }
  return (await import(pathToFileURL(file).href)) as Metric;
}

interface Truth { articleBody?: string; url?: string }

/** The q-quantile the benchmark's own runner reports (element at floor(q·n) of the sorted list). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
}

/** Stored outputs of other extractors, scored on the same pages with the same metric. */
function referenceRows(metric: Metric, zyte: string, ids: string[], truth: Record<string, Truth>, bootstrap: number) {
  const dir = path.join(zyte, 'reference-outputs');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const data = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { version?: string; output?: Record<string, { articleBody?: string }> };
    const output = data.output ?? (data as Record<string, { articleBody?: string }>);
    const pages = ids.map((id) => ({ trueBody: truth[id]!.articleBody ?? '', predBody: output[id]?.articleBody ?? '' }));
    return { name: f.replace(/\.json$/, ''), version: String(data.version ?? ''), body: metric.evaluateBodies(pages, { nBootstrap: bootstrap }).overall };
  });
}

function printTable(rows: { name: string; version: string; body: BodyScores }[]): void {
  const f3 = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(3) : '  n/a');
  console.log(`\n${'system'.padEnd(26)} ${'version'.padEnd(10)} ${'F1'.padEnd(14)} ${'precision'.padEnd(9)} ${'recall'.padEnd(9)} accuracy`);
  for (const r of [...rows].sort((a, b) => b.body.f1 - a.body.f1)) {
    const b = r.body;
    console.log(`${r.name.padEnd(26)} ${r.version.slice(0, 10).padEnd(10)} ${f3(b.f1)} ± ${f3(b.f1_std)}  ${f3(b.precision).padEnd(9)} ${f3(b.recall).padEnd(9)} ${f3(b.accuracy)}`);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const metric = await loadMetric(opts.bench);
  const zyte = path.join(opts.bench, 'data', 'zyte');
  const truth = JSON.parse(readFileSync(path.join(zyte, 'ground-truth.json'), 'utf8')) as Record<string, Truth>;
  let ids = Object.keys(truth).sort();
  if (opts.only) ids = ids.filter((id) => id.includes(opts.only!) || (truth[id]!.url ?? '').includes(opts.only!));
  if (opts.limit) ids = ids.slice(0, opts.limit);

  const preds: Record<string, string> = {};
  const ms: number[] = [];
  for (const id of ids) {
    const html = gunzipSync(readFileSync(path.join(zyte, 'html', `${id}.html.gz`))).toString('utf8');
    const t0 = performance.now();
    preds[id] = extractArticle(html, truth[id]!.url ?? '').body;
    ms.push(performance.now() - t0);
  }

  const pages = ids.map((id) => ({ trueBody: truth[id]!.articleBody ?? '', predBody: preds[id]! }));
  const result = metric.evaluateBodies(pages, { nBootstrap: opts.bootstrap });
  const ours = result.overall;

  if (opts.worst > 0) {
    const ranked = ids.map((id, i) => ({ id, url: truth[id]!.url ?? '', ...result.perPage[i]! }))
      .sort((a, b) => a.f1 - b.f1).slice(0, opts.worst);
    console.log('\nworst pages (P R F1 id url):');
    for (const r of ranked) console.log(`${r.precision.toFixed(3)} ${r.recall.toFixed(3)} ${r.f1.toFixed(3)}  ${r.id.slice(0, 12)}  ${r.url}`);
  }
  if (opts.dump) {
    mkdirSync(opts.dump, { recursive: true });
    for (const id of ids) {
      writeFileSync(path.join(opts.dump, `${id.slice(0, 12)}.pred.txt`), preds[id]!);
      writeFileSync(path.join(opts.dump, `${id.slice(0, 12)}.true.txt`), truth[id]!.articleBody ?? '');
    }
  }

  const refs = referenceRows(metric, zyte, ids, truth, opts.bootstrap);
  const shown = opts.compare ? refs : refs.filter((r) => ['trafilatura', 'newspaper', 'readability_js'].includes(r.name));
  printTable([...shown, { name: '>> morris extract', version: 'this run', body: ours }]);
  console.log(`\n${ids.length} pages; per page: median ${quantile(ms, 0.5).toFixed(1)} ms, p95 ${quantile(ms, 0.95).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms; node ${process.version}`);
  console.log(JSON.stringify({
    f1: Number(ours.f1.toFixed(4)), precision: Number(ours.precision.toFixed(4)),
    recall: Number(ours.recall.toFixed(4)), median_ms: Number(quantile(ms, 0.5).toFixed(2)),
  }));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : String(e));
  process.exit(1);
});
