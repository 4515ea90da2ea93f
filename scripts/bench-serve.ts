/**
 * `npm run bench:serve`: many readers at once through the generation service, as a busy channel
 * would ask. A random SmolLM2-135M-shaped model (1 thread, native kernel) serves N = 1, 2, 4, 8
 * simultaneous requests, fp32 then int8; for each N it prints aggregate decode tokens/s, p50/p95
 * time to first token and to completion. The reference, in the same run, is N = 1: what one
 * reader at a time gets, and what a queue of N would cost serially. Then the shared-prefix cache:
 * time to first token of a request behind a 600-token system prompt, with the cache off and warm.
 *
 * Figures (last line, one JSON object): scale_N = aggregate tok/s at N over N = 1 (fp32),
 * int8_scale_8, prefix_ttft_ratio (warm over off), p95_complete_ratio_8 (p95 completion of 8
 * simultaneous requests over a lone request's completion). Targets from issue 15: scale_4 ≥ 3,
 * scale_8 ≥ 5, prefix_ttft_ratio ≤ 0.3, p95_complete_ratio_8 ≤ 2.5.
 *
 *   npm run bench:serve [-- --tokens 128 --quants fp32,int8 --batches 1,2,4,8]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setLogLevel } from '../src/log.ts';
import { writeRandomCheckpoint } from '../src/model/checkpoint/random-checkpoint.ts';
import type { Quant } from '../src/model/graph/compile.ts';
import { loadModel, type GenerationStats, type LoadedModel } from '../src/model/inference/engine.ts';
import { GenerationService } from '../src/model/serving/generation-service.ts';

const { values: args } = parseArgs({
  options: {
    tokens: { type: 'string', default: '128' },
    quants: { type: 'string', default: 'fp32,int8' },
    batches: { type: 'string', default: '1,2,4,8' },
    'system-tokens': { type: 'string', default: '600' },
  },
});
const TOKENS = Number(args.tokens);
const BATCHES = args.batches.split(',').map(Number);

const SMOLLM2_135M = {
  model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
  vocab_size: 49152, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true,
};
const greedy = { temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1, maxNewTokens: TOKENS };

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
const r1 = (x: number) => Math.round(x * 10) / 10;

/**
 * The engine with the bench's settings, and each generation's stats by the time its stream ends
 * (the service's own events carry text, not token timings).
 */
function benchService(modelDir: string, cacheDir: string, quant: Quant, maxBatch: number, prefixCache: boolean, systemPromptFile: string | null) {
  const stats: { started: number; stats: GenerationStats }[] = [];
  const load = async (o: Parameters<typeof loadModel>[0]): Promise<LoadedModel> => {
    const m = await loadModel({ ...o, cacheDir, maxBatch, prefixCacheEntries: prefixCache ? 4 : 0 });
    return {
      ...m,
      info: m.info,
      kernelStats: m.kernelStats,
      stream(input, opts, signal, hooks) {
        const started = performance.now();
        return m.stream(input, opts, signal, { ...hooks, onStats: (s) => (stats.push({ started, stats: s }), hooks?.onStats?.(s)) });
      },
      countTokens: (t) => m.countTokens(t),
      dispose: () => m.dispose(),
    };
  };
  const svc = new GenerationService({
    load,
    baseModel: modelDir,
    systemPromptFile,
    defaults: greedy,
    timeoutS: 600,
    idleUnloadS: 0,
    queueMax: 64,
    maxTopicChars: 10_000,
    device: 'cpu',
    quant,
    decodeKernel: 'native',
    threads: 1,
  });
  return { svc, stats };
}

interface RoundResult { n: number; tokS: number; tokens: number; ttft: number[]; complete: number[] }

/** N requests at once; times from submission. */
async function round(svc: GenerationService, n: number, tag: string): Promise<RoundResult> {
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const submitted = performance.now();
      let first = 0;
      let tokens = 0;
      // Short prompts of different lengths: a topic behind a system prompt the prefix cache already
      // holds, as in production, so the figures are decode throughput (the prefix cache has its own below).
      for await (const ev of svc.generate({ rawText: `${tag} ${i}: late trains${' again'.repeat(i % 4)}.`, sampling: greedy })) {
        if (ev.type === 'text' && !first) first = performance.now() - submitted;
        if (ev.type === 'done') tokens = ev.tokens;
      }
      return { ttft: first, complete: performance.now() - submitted, tokens };
    }),
  );
  const wall = performance.now() - t0;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  return { n, tokS: tokens / (wall / 1000), tokens, ttft: results.map((r) => r.ttft), complete: results.map((r) => r.complete) };
}

async function batches(modelDir: string, cacheDir: string, quant: Quant): Promise<RoundResult[]> {
  const { svc } = benchService(modelDir, cacheDir, quant, Math.max(...BATCHES), true, null);
  await round(svc, 1, 'warm-up');
  const out: RoundResult[] = [];
  for (const n of BATCHES) {
    const r = await round(svc, n, `${quant} n${n}`);
    out.push(r);
    console.log(
      `${quant.padEnd(5)} N=${String(n).padEnd(2)} ${r1(r.tokS).toString().padStart(7)} tok/s aggregate (${r.tokens} tokens)  ` +
        `TTFT p50/p95 ${Math.round(pct(r.ttft, 50))}/${Math.round(pct(r.ttft, 95))} ms  complete p50/p95 ${Math.round(pct(r.complete, 50))}/${Math.round(pct(r.complete, 95))} ms`,
    );
  }
  await svc.close();
  return out;
}

/** TTFT (median of 3) of a topic request behind a long system prompt, the prefix cache off or warm. */
async function prefixTtft(modelDir: string, cacheDir: string, systemPromptFile: string, prefixCache: boolean): Promise<{ ttft: number; promptTokens: number }> {
  const { svc, stats } = benchService(modelDir, cacheDir, 'fp32', 4, prefixCache, systemPromptFile);
  const one = { maxNewTokens: 4 };
  for await (const _ of svc.generate({ topic: 'warm-up', sampling: one }));
  const ttft: number[] = [];
  for (const topic of ['the late trains', 'the bus routes', 'the budget']) {
    for await (const _ of svc.generate({ topic, sampling: one }));
    ttft.push(stats.at(-1)!.stats.ttftMs);
  }
  await svc.close();
  return { ttft: pct(ttft, 50), promptTokens: stats.at(-1)!.stats.promptTokens };
}

const root = mkdtempSync(join(tmpdir(), 'morris-bench-serve-'));
try {
  setLogLevel('warn');
  const modelDir = join(root, 'model');
  const cacheDir = join(root, 'cache');
  writeRandomCheckpoint(modelDir, { config: SMOLLM2_135M, seed: 7, std: 0.02 }, { tokenizer: true });
  console.log(`bench:serve — random SmolLM2-135M shape, 1 thread, ${TOKENS} new tokens a request, greedy; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const summary: Record<string, number | string> = { tokens: TOKENS };
  for (const quant of args.quants.split(',') as Quant[]) {
    const rounds = await batches(modelDir, cacheDir, quant);
    const base = rounds.find((r) => r.n === 1);
    const prefix = quant === 'fp32' ? '' : `${quant}_`;
    for (const r of rounds) {
      summary[`${prefix}tok_s_${r.n}`] = r1(r.tokS);
      if (base && r.n > 1) summary[`${prefix}scale_${r.n}`] = +(r.tokS / base.tokS).toFixed(2);
      summary[`${prefix}ttft_p95_ms_${r.n}`] = Math.round(pct(r.ttft, 95));
      summary[`${prefix}complete_p95_ms_${r.n}`] = Math.round(pct(r.complete, 95));
    }
    const eight = rounds.find((r) => r.n === 8);
    if (base && eight) summary[`${prefix}p95_complete_ratio_8`] = +(pct(eight.complete, 95) / pct(base.complete, 50)).toFixed(2);
  }
  // A system prompt of about --system-tokens tokens (the byte tokenizer: one token a byte).
  const systemPromptFile = join(root, 'system-prompt.md');
  const sentence = 'You write like a weary British telecoms columnist who has seen every hype cycle come and go. ';
  writeFileSync(systemPromptFile, sentence.repeat(Math.ceil(Number(args['system-tokens']) / sentence.length)));
  const off = await prefixTtft(modelDir, cacheDir, systemPromptFile, false);
  const warm = await prefixTtft(modelDir, cacheDir, systemPromptFile, true);
  console.log(`prefix cache: ${off.promptTokens}-token prompts, TTFT ${Math.round(off.ttft)} ms off, ${Math.round(warm.ttft)} ms warm`);
  summary['prefix_prompt_tokens'] = off.promptTokens;
  summary['prefix_ttft_off_ms'] = Math.round(off.ttft);
  summary['prefix_ttft_warm_ms'] = Math.round(warm.ttft);
  summary['prefix_ttft_ratio'] = +(warm.ttft / off.ttft).toFixed(3);
  console.log(JSON.stringify(summary));
} finally {
  rmSync(root, { recursive: true, force: true });
}
