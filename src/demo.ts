/**
 * The offline demo: the whole loop on embedded defaults, through the same library functions and
 * jobs that `morris serve` runs. A fresh folder each time so every stage really runs:
 * sample archive on 127.0.0.1 → scrape → dataset → tiny model → LoRA training → evaluation and
 * promotion → readers' feedback on its articles (a bundled file of preference pairs) → a DPO stage
 * on top of the promoted adapter → the gate with readers' held-out preference accuracy → a second
 * columnist's whole chain (data/sample-voice) → an article on a sample topic in both voices at
 * once, one base model serving both adapters.
 */
import fs from 'node:fs';
import path from 'node:path';
import { deriveConfig, type Config } from './config.ts';
import { MorrisError } from './errors.ts';
import { openStore, type Store } from './store/db.ts';
import { startSampleSite, SAMPLE_ARCHIVE_DIR, readArticleFolder, type SampleSite } from './pipeline/crawl/sample-site.ts';
import { COLUMNISTS_DIR, DEFAULT_COLUMNIST_NAME, REPO_DATA_DIR } from './paths.ts';
import { resolveColumnist } from './columnists/folder.ts';
import { servingSystemPrompt } from './prompts.ts';
import type { JobSystem } from './jobs/system.ts';
import { initTinyModel } from './model/tiny/index.ts';
import { buildJobSystem } from './jobs/system.ts';
import { runChain } from './jobs/chain.ts';
import type { RunnerEvent } from './jobs/runner.ts';
import type { JobRun } from './store/job-runs.ts';
import { createGenerationService } from './model/serving/create.ts';
import { getActiveAdapter, getAdapter } from './store/adapters.ts';
import { datasetJsonlPath } from './store/datasets.ts';
import { okArticleCount } from './store/articles.ts';
import { importPreferenceLines } from './pipeline/dataset/preferences.ts';
import { DEMO_FEEDBACK_FILE } from './paths.ts';

export const DEMO_TOPIC = 'the telecom industry discovers that AI agents need networks too';

/** The demo's second voice: a columnist folder and its own archive (see data/sample-voice/README.md). */
export const SAMPLE_VOICE = { name: 'lark', dir: path.join(REPO_DATA_DIR, 'sample-voice', 'lark'), articles: path.join(REPO_DATA_DIR, 'sample-voice', 'articles'), source: 'lark-archive' };

/** Training settings small enough for a 2-core laptop, large enough to beat the base model. */
export const DEMO_TRAINING = {
  maxSteps: 24,
  gradAccum: 2,
  lr: 1e-2,
  rank: 8,
  alpha: 16,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  // The style guide alone is ~1,100 tokens for the tiny model's 512-token vocabulary.
  maxSeqLen: 1536,
  evalEvery: 8,
  saveEvery: 8,
  warmupSteps: 2,
};

export interface DemoOptions {
  /** Where everything is written (wiped first). */
  dir: string;
  topic?: string;
  maxNewTokens?: number;
  /** Progress and results; the article text itself goes to `onArticleText`. */
  print: (line: string) => void;
  onArticleText: (text: string) => void;
}

export interface DemoSummary {
  dir: string;
  dbPath: string;
  siteUrl: string;
  articles: number;
  datasetId: string | null;
  datasetFile: string | null;
  adapterId: string | null;
  adapterDir: string | null;
  promoted: boolean;
  valLoss: { base: number | null; adapter: number | null };
  /** The DPO stage on readers' pairs and the gate's held-out preference figures. */
  dpo: { pairs: number; adapterId: string; promoted: boolean; accuracy: number | null; against: string; againstAccuracy: number | null; reason: string } | null;
  article: { topic: string; chars: number; tokens: number; cut: boolean; seconds: number };
  /** The second columnist: its chain's products, its article, and how many requests ran at once. */
  secondVoice: { name: string; articles: number; adapterId: string | null; promoted: boolean; chars: number; tokens: number; together: number };
  stages: { name: string; seconds: number; outcome: string }[];
}

const STAGES = ['sample archive', 'base model', 'scrape', 'dataset', 'training', 'evaluate + promote', "DPO on readers' pairs", "evaluate DPO (readers' preferences)", 'second voice', 'article'] as const;

export async function runDemo(base: Config, opts: DemoOptions): Promise<DemoSummary> {
  const dir = path.resolve(opts.dir);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const stages: DemoSummary['stages'] = [];
  const header = (i: number) => opts.print(`\n[${i + 1}/${STAGES.length}] ${STAGES[i]}`);
  const done = (i: number, t0: number, outcome: string) => {
    const seconds = (performance.now() - t0) / 1000;
    stages.push({ name: STAGES[i]!, seconds, outcome });
    opts.print(`    ✓ ${outcome} (${seconds.toFixed(1)} s)`);
  };

  // 1. The bundled sample archive, served like a real site (robots.txt, listings, feed, sitemap).
  let t0 = performance.now();
  header(0);
  const site = await startSampleSite({ port: 0, host: '127.0.0.1' });
  let store: Store | undefined;
  let voiceSite: SampleSite | undefined;
  try {
    voiceSite = await startSampleSite({ port: 0, host: '127.0.0.1', dir: SAMPLE_VOICE.articles });
    const served = readArticleFolder(SAMPLE_ARCHIVE_DIR).length;
    done(0, t0, `${served} columns served at ${site.url}; ${readArticleFolder(SAMPLE_VOICE.articles).length} of a second voice's at ${voiceSite.url}`);

    // 2. A tiny random model in the Hub layout (the real one is `morris model pull`).
    t0 = performance.now();
    header(1);
    const modelDir = path.join(dir, 'models', 'morris-tiny');
    const tiny = initTinyModel(modelDir, { arch: 'llama', seed: 7 });
    done(1, t0, `tiny ${tiny.arch} model, ${tiny.parameters.toLocaleString('en-GB')} parameters, at ${rel(modelDir)}`);

    // The demo's own columnist folders: the default voice and the second one.
    const columnists = path.join(dir, 'columnists');
    fs.cpSync(path.join(COLUMNISTS_DIR, DEFAULT_COLUMNIST_NAME), path.join(columnists, DEFAULT_COLUMNIST_NAME), { recursive: true });
    fs.cpSync(SAMPLE_VOICE.dir, path.join(columnists, SAMPLE_VOICE.name), { recursive: true });
    const config = deriveConfig(base, {
      MORRIS_COLUMNISTS_DIR: columnists,
      MORRIS_DATA_DIR: dir,
      MORRIS_MODELS_DIR: path.join(dir, 'models'),
      MORRIS_BASE_MODEL: modelDir,
      // Our own local server: no need to wait a second between requests.
      MORRIS_RATE_LIMIT_RPS: '50',
      MORRIS_MAX_SEQ_TOKENS: String(DEMO_TRAINING.maxSeqLen),
      MORRIS_RETRAIN_MIN_NEW_EXAMPLES: '1',
      MORRIS_PROMOTE_MARGIN: '0.01',
      // A random tiny model has no style to measure: its style score is noise, so the gate
      // decides on validation loss (and the verbatim-copy check) alone here.
      MORRIS_STYLE_TOLERANCE: '1',
      MORRIS_TRAIN_THREADS: '2',
      MORRIS_MAX_NEW_TOKENS: String(opts.maxNewTokens ?? 120),
    });
    store = openStore(config.dbPath);
    const system = buildJobSystem({
      config,
      store,
      sources: [{ name: 'sample-archive', baseUrl: site.url }],
      trainOverrides: DEMO_TRAINING,
    });

    // 3–6. The same chain a cron tick starts: rescrape → rebuild → retrain → evaluate; then 7–8,
    // once readers have given feedback, the DPO chain the new-pairs watch starts: dpo → evaluate.
    const stageOf: Record<string, number> = { rescrape: 2, rebuild: 3, retrain: 4, evaluate: 5, dpo: 6 };
    // The second evaluation (of the DPO adapter) is its own stage.
    let dpoRunSeen = 0;
    const stageOfRun = (job: string, runId: number) => (job === 'evaluate' && dpoRunSeen && runId > dpoRunSeen ? 7 : (stageOf[job] ?? 0));
    const started = new Map<number, number>();
    let lastProgressLine = 0;
    const onEvent = (e: RunnerEvent) => {
      // A job may report progress before the runner announces its start: open the stage on
      // whichever comes first.
      const runId = e.type === 'progress' || e.type === 'log' ? e.runId : e.run.id;
      const job = e.type === 'progress' || e.type === 'log' ? e.job : e.run.job;
      if (job === 'dpo' && !dpoRunSeen) dpoRunSeen = runId;
      if (!started.has(runId) && e.type !== 'skipped') {
        started.set(runId, performance.now());
        header(stageOfRun(job, runId));
      }
      if (e.type === 'start') {
        return;
      } else if (e.type === 'progress' && e.message && performance.now() - lastProgressLine > 1000) {
        lastProgressLine = performance.now();
        opts.print(`    … ${Math.round(e.progress * 100)}% ${e.message}`);
      } else if (e.type === 'log' && e.level !== 'info') {
        opts.print(`    ! ${e.line}`);
      } else if (e.type === 'end') {
        const i = stageOfRun(e.run.job, e.run.id);
        const summary = (e.run.result as { summary?: string } | null)?.summary ?? e.run.message ?? e.run.status;
        if (e.run.status !== 'succeeded') {
          stages.push({ name: STAGES[i]!, seconds: 0, outcome: `${e.run.status}: ${e.run.error ?? ''}` });
          opts.print(`    ✗ ${e.run.job} ${e.run.status}: ${e.run.error ?? summary}`);
        } else done(i, started.get(e.run.id) ?? performance.now(), summary);
      }
    };
    system.runner.events.on('event', onEvent);
    let runs: JobRun[];
    let pairs = 0;
    try {
      runs = await runChain(system.runner, 'rescrape', { trigger: 'demo', chain: true, minNewExamples: 1 });
      if (runs.every((r) => r.status === 'succeeded')) {
        // Readers' feedback on the articles, as Slack and Discord would have recorded it (each
        // pair an article and a reader's edit of it), bundled with the demo.
        pairs = importPreferenceLines(store, fs.readFileSync(DEMO_FEEDBACK_FILE, 'utf8'), DEMO_FEEDBACK_FILE).imported;
        runs.push(...(await runChain(system.runner, 'dpo', { trigger: 'demo', chain: true, minNewExamples: 1, dpoMinNewPairs: 1 })));
      }
    } finally {
      system.runner.events.off('event', onEvent);
    }
    const failed = runs.find((r) => r.status !== 'succeeded');
    if (failed) {
      throw new MorrisError('JOB_FAILED', `The demo's ${failed.job} stage ${failed.status}: ${failed.error ?? 'see the log above'}`, {
        hint: `Details are in ${rel(config.dbPath)} (\`MORRIS_DATA_DIR=${rel(dir)} npx morris jobs history\`).`,
      });
    }
    if (runs.length < 6) {
      throw new MorrisError('JOB_FAILED', `The chain stopped after ${runs.at(-1)?.job}; the demo needs every stage.`);
    }
    const rebuild = runs.find((r) => r.job === 'rebuild')!.result as { datasetId: string };
    const evaluation = runs.find((r) => r.job === 'evaluate')!.result as { adapterId: string; promoted: boolean };
    const evalRow = getAdapter(store, evaluation.adapterId);
    const measured = (evalRow.eval ?? {}) as { base?: { valLoss: number }; candidate?: { valLoss: number } };
    const datasetJsonl = datasetJsonlPath(store, rebuild.datasetId);

    const dpoRun = runs.find((r) => r.job === 'dpo')!.result as { adapterId: string };
    const dpoRow = getAdapter(store, dpoRun.adapterId);
    const dpoEval = (dpoRow.eval ?? {}) as { candidate?: { preference?: { accuracy: number } | null }; active?: { adapterId: string; preference?: { accuracy: number } | null } | null; base?: { preference?: { accuracy: number } | null }; decision?: { promote: boolean; reason: string; against: string } };
    const againstMeasure = dpoEval.active ?? dpoEval.base;
    const dpo = {
      pairs,
      adapterId: dpoRow.id,
      promoted: dpoEval.decision?.promote ?? false,
      accuracy: dpoEval.candidate?.preference?.accuracy ?? null,
      against: dpoEval.decision?.against ?? 'base',
      againstAccuracy: againstMeasure?.preference?.accuracy ?? null,
      reason: dpoEval.decision?.reason ?? '',
    };


    // 9. The second columnist's chain, the same jobs for its own voice.
    t0 = performance.now();
    header(8);
    const second = await secondVoiceChain(system, voiceSite.url, opts.print);
    done(8, t0, second.summary);

    // 10. One article per voice, asked at once: one base model, each voice's adapter and style guide.
    t0 = performance.now();
    header(9);
    const active = getActiveAdapter(store);
    const service = createGenerationService(config, { adapter: active ? { id: active.id, dir: active.path, datasetId: active.dataset_id } : null, baseModel: modelDir });
    const topic = opts.topic ?? DEMO_TOPIC;
    const voice = resolveColumnist(SAMPLE_VOICE.name, config);
    const voiceActive = getActiveAdapter(store, voice.name);
    opts.print(`    topic: "${topic}" — ${active ? `adapter ${active.id}` : 'base model (no adapter was promoted)'}; ${voice.displayName}: ${voiceActive ? `adapter ${voiceActive.id}` : 'base model'}\n`);
    let final: { text: string; tokens: number; cut: boolean } = { text: '', tokens: 0, cut: false };
    let voiceFinal: { text: string; tokens: number } = { text: '', tokens: 0 };
    let together = 0;
    const poll = setInterval(() => (together = Math.max(together, service.status().runningCount)), 2);
    try {
      const theirs = (async () => {
        const request = { topic, sampling: { seed: 1 }, adapter: voiceActive ? { id: voiceActive.id, dir: voiceActive.path, datasetId: voiceActive.dataset_id } : null, systemPrompt: servingSystemPrompt(voice.systemPromptFile).text };
        for await (const ev of service.generate(request)) if (ev.type === 'done') voiceFinal = ev;
      })();
      for await (const ev of service.generate({ topic, sampling: { seed: 1 } })) {
        if (ev.type === 'text') opts.onArticleText(ev.text);
        else if (ev.type === 'done') final = ev;
      }
      await theirs;
    } finally {
      clearInterval(poll);
      await service.close();
    }
    opts.onArticleText(`\n\n— the same topic, as ${voice.displayName} —\n${voiceFinal.text}\n`);
    const articleSeconds = (performance.now() - t0) / 1000;
    done(9, t0, `${final.tokens} + ${voiceFinal.tokens} tokens, ${together} written at once${final.cut ? ' (cut by the time limit)' : ''}`);

    const articles = okArticleCount(store, DEFAULT_COLUMNIST_NAME);
    return {
      dir,
      dbPath: config.dbPath,
      siteUrl: site.url,
      articles,
      datasetId: rebuild.datasetId,
      datasetFile: datasetJsonl,
      adapterId: evaluation.adapterId,
      adapterDir: evalRow.path,
      promoted: evaluation.promoted,
      valLoss: { base: measured.base?.valLoss ?? null, adapter: measured.candidate?.valLoss ?? null },
      dpo,
      article: { topic, chars: final.text.length, tokens: final.tokens, cut: final.cut, seconds: articleSeconds },
      secondVoice: { name: voice.name, articles: okArticleCount(store, voice.name), adapterId: second.adapterId, promoted: second.promoted, chars: voiceFinal.text.length, tokens: voiceFinal.tokens, together },
      stages,
    };
  } finally {
    store?.close();
    await site.close();
    await voiceSite?.close();
  }
}

/** The second voice's rescrape → rebuild → retrain → evaluate, reported in one line; a failed step stops the demo. */
async function secondVoiceChain(system: JobSystem, siteUrl: string, print: (line: string) => void): Promise<{ adapterId: string | null; promoted: boolean; summary: string }> {
  const onEvent = (e: RunnerEvent) => {
    if (e.type === 'end') print(`    ${e.run.status === 'succeeded' ? '·' : '✗'} ${e.run.job}: ${(e.run.result as { summary?: string } | null)?.summary ?? e.run.error ?? e.run.status}`);
  };
  system.runner.events.on('event', onEvent);
  let runs: JobRun[];
  try {
    runs = await runChain(system.runner, 'rescrape', {
      trigger: 'demo',
      chain: true,
      minNewExamples: 1,
      columnist: SAMPLE_VOICE.name,
      input: { sources: [{ name: SAMPLE_VOICE.source, baseUrl: siteUrl }] },
      ...(system.spec.trainingQueue ? { trainingQueue: system.spec.trainingQueue } : {}),
    });
  } finally {
    system.runner.events.off('event', onEvent);
  }
  const failed = runs.find((r) => r.status !== 'succeeded');
  if (failed || runs.length < 4) {
    throw new MorrisError('JOB_FAILED', `The second voice's ${failed?.job ?? runs.at(-1)?.job} stage ${failed?.status ?? 'ended the chain early'}: ${failed?.error ?? 'see the log above'}`);
  }
  const evaluation = runs.at(-1)!.result as { adapterId: string; promoted: boolean; summary: string };
  return { adapterId: evaluation.adapterId, promoted: evaluation.promoted, summary: `${SAMPLE_VOICE.name}: adapter ${evaluation.adapterId} ${evaluation.summary}` };
}

export function formatDemoSummary(s: DemoSummary): string {
  const loss = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
  const pref = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
  return [
    '',
    'Summary',
    `  articles scraped     ${s.articles} (from ${s.siteUrl}, now closed)`,
    `  dataset              ${s.datasetId}${s.datasetFile ? ` → ${rel(s.datasetFile)}` : ''}`,
    `  adapter              ${s.adapterId} → ${s.adapterDir ? rel(s.adapterDir) : '?'} (PEFT format)`,
    `  validation loss      base ${loss(s.valLoss.base)} → adapter ${loss(s.valLoss.adapter)}; ${s.promoted ? 'promoted' : 'NOT promoted'}`,
    ...(s.dpo
      ? [
          `  readers' pairs       ${s.dpo.pairs} (bundled feedback) → DPO adapter ${s.dpo.adapterId}`,
          `  preference accuracy  ${pref(s.dpo.accuracy)} on held-out pairs vs ${s.dpo.against} ${pref(s.dpo.againstAccuracy)}; ${s.dpo.promoted ? 'promoted' : `NOT promoted: ${s.dpo.reason}`}`,
        ]
      : []),
    `  article              ${s.article.tokens} tokens in ${s.article.seconds.toFixed(1)} s on "${s.article.topic}"`,
    `  second voice         ${s.secondVoice.name}: ${s.secondVoice.articles} articles, adapter ${s.secondVoice.adapterId} ${s.secondVoice.promoted ? 'promoted' : 'NOT promoted'}; its article ${s.secondVoice.tokens} tokens, ${s.secondVoice.together} voices written at once`,
    `  database             ${rel(s.dbPath)}`,
    `  total time           ${s.stages.reduce((a, b) => a + b.seconds, 0).toFixed(1)} s`,
    '',
    `Explore: MORRIS_DATA_DIR=${rel(s.dir)} MORRIS_COLUMNISTS_DIR=${rel(path.join(s.dir, 'columnists'))} MORRIS_MODELS_DIR=${rel(path.join(s.dir, 'models'))} MORRIS_BASE_MODEL=${rel(path.join(s.dir, 'models', 'morris-tiny'))} npx morris columnists list`,
    'The tiny random model writes gibberish in the right shape; see README "Training on the real columnist".',
  ].join('\n');
}

function rel(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r.startsWith('..') ? p : r || '.';
}
