/**
 * `npm run bench:serve-latency`: time to first token of generations in a serve process, idle and
 * while a retrain runs in its worker process on the same host (MORRIS_TRAIN_THREADS threads, lower
 * CPU priority). Builds everything offline in a temp folder: a small random Llama, the bundled
 * sample archive scraped into a dataset, then the serve process with its generation service.
 * The last line is one JSON object with the figures.
 *
 *   npm run bench:serve-latency [-- --requests 20 --train-threads 1 --serve-threads 1]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setConfigForTests } from '../src/config.ts';
import { setLogLevel } from '../src/log.ts';
import { initTinyModel } from '../src/model/tiny/index.ts';
import { startSampleSite } from '../src/pipeline/crawl/sample-site.ts';
import { startServe, type ServeHandle } from '../src/serve/start.ts';
import { listRuns } from '../src/store/job-runs.ts';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '20' },
    'train-threads': { type: 'string', default: '1' },
    'serve-threads': { type: 'string', default: '1' },
    'max-new-tokens': { type: 'string', default: '24' },
  },
});
const N = Number(args.requests);
/** Big enough that a training step takes real CPU (~SmolLM2 layer width, fewer layers). */
const DIMS = { hidden: 384, intermediate: 1024, layers: 6, heads: 6, kvHeads: 2, vocab: 1024 };

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function measure(h: ServeHandle, label: string): Promise<{ ttft: number[]; total: number[] }> {
  const ttft: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    let first = 0;
    for await (const ev of h.generator.generate({ topic: `Network slicing, part ${i}`, maxNewTokens: Number(args['max-new-tokens']), temperature: 0.8, requestId: `${label}-${i}` })) {
      if (ev.type === 'text' && !first) first = performance.now() - t0;
    }
    ttft.push(first);
    total.push(performance.now() - t0);
  }
  return { ttft, total };
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-bench-latency-'));
try {
  setLogLevel('warn');
  initTinyModel(path.join(root, 'models', 'bench'), { dims: DIMS });
  const site = await startSampleSite({ port: 0 });
  const config = setConfigForTests({
    MORRIS_DATA_DIR: path.join(root, 'data'),
    MORRIS_MODELS_DIR: path.join(root, 'models'),
    MORRIS_BASE_MODEL: path.join(root, 'models', 'bench'),
    MORRIS_RATE_LIMIT_RPS: '100',
    MORRIS_CRON_RESCRAPE: 'off',
    MORRIS_MAX_SEQ_TOKENS: '512',
    MORRIS_THREADS: args['serve-threads'],
    MORRIS_TRAIN_THREADS: args['train-threads'],
    MORRIS_IDLE_UNLOAD_S: '0',
    LOG_LEVEL: 'warn',
  });
  const h = await startServe({
    config,
    port: 0,
    host: '127.0.0.1',
    sources: [{ name: 'sample-archive', baseUrl: site.url }],
    // Training examples with a one-line system prompt keep steps short; generations use the real
    // style guide as the prompt (~1,100 tokens of prefill for this tokenizer), as in production.
    style: { systemPrompt: 'You are Morris, a dry British telecoms columnist.', extras: [] },
    // Long enough to outlast the measurement; cancelled afterwards.
    trainOverrides: { maxSteps: 10_000, saveEvery: 50, evalEvery: 0, rank: 8, alpha: 16, gradAccum: 1, maxSeqLen: 512 },
    bots: false,
  });
  try {
    for (const job of ['rescrape', 'rebuild']) {
      const [r] = await (await h.control.start(job, { trigger: 'bench', chain: false })).finished;
      if (r!.status !== 'succeeded') throw new Error(`${job} failed: ${r!.error}`);
    }
    await measure(h, 'warmup'); // loads the model
    const idle = await measure(h, 'idle');

    const started = await h.control.start('retrain', { trigger: 'bench', chain: false });
    // Measure only once the worker is really training (graph built, steps running).
    for (;;) {
      const r = listRuns(h.store, { job: 'retrain', limit: 1 })[0]!;
      if (r.status !== 'running') throw new Error(`retrain ended early: ${r.status} ${r.error}`);
      if (/^step \d+/.test(r.message ?? '')) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const busy = await measure(h, 'train');
    const trainMsg = listRuns(h.store, { job: 'retrain', limit: 1 })[0]!.message;
    h.control.cancel(started.run.id);
    await started.finished;

    const row = (name: string, m: { ttft: number[]; total: number[] }) =>
      `${name.padEnd(22)} ${pct(m.ttft, 50).toFixed(1).padStart(8)} ${pct(m.ttft, 95).toFixed(1).padStart(8)} ${pct(m.total, 50).toFixed(1).padStart(10)}`;
    console.log(`model: random Llama ${JSON.stringify(DIMS)}; ${N} requests of ${args['max-new-tokens']} new tokens each; ${os.cpus().length} CPUs`);
    console.log(`serve threads ${args['serve-threads']}, training worker threads ${args['train-threads']} (nice 10); training at: ${trainMsg}`);
    console.log(`${'condition'.padEnd(22)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'total p50'.padStart(10)}   (time to first token)`);
    console.log(row('idle', idle));
    console.log(row('while retraining', busy));
    console.log(
      JSON.stringify({
        ttft_idle_p50_ms: +pct(idle.ttft, 50).toFixed(1),
        ttft_idle_p95_ms: +pct(idle.ttft, 95).toFixed(1),
        ttft_training_p50_ms: +pct(busy.ttft, 50).toFixed(1),
        ttft_training_p95_ms: +pct(busy.ttft, 95).toFixed(1),
        total_idle_p50_ms: +pct(idle.total, 50).toFixed(1),
        total_training_p50_ms: +pct(busy.total, 50).toFixed(1),
        requests: N,
        cpus: os.cpus().length,
      }),
    );
  } finally {
    await h.stop('bench over');
    await site.close();
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
