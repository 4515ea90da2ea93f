/**
 * The jobs themselves: rescrape, rebuild, retrain, evaluate. Each is a thin handler over the
 * library function that does the work (the same ones the CLI calls); training and evaluation run
 * in a worker process (fork-worker.ts) so the serve process keeps answering.
 */
import path from 'node:path';
import type { Config } from '../config.ts';
import { getKv, type Store } from '../store/db.ts';
import { currentDatasetKey } from '../pipeline/dataset/build.ts';
import { isMorrisError, MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { scrapeSource, scrapeSettingsFromConfig } from '../pipeline/crawl/scrape.ts';
import { listProfiles, loadProfile } from '../pipeline/crawl/profile.ts';
import { decidePromotion, type ModelMeasure } from './gate/evaluate.ts';
import { runWorker, type WorkerBudget } from './fork-worker.ts';
import { getAdapter, recordEvaluation, type AdapterRegistry } from './registry.ts';
import type { JobContext, JobHandler } from './runner.ts';
import type { RetrainInput, RetrainProgressRecord } from './resume.ts';
import type { DpoInput, DpoResult, RescrapeResult, RebuildResult, RetrainResult } from './chain.ts';
import { rebuildDataset } from './rebuild.ts';
import { loadStyle, type Style } from '../pipeline/dataset/enhance.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import { resolveColumnist, type Columnist } from '../columnists/folder.ts';
import type { DpoTaskResult, TrainTaskResult } from './worker-tasks.ts';
import { readTrainConfigFile } from '../model/train/config.ts';
import { latestDatasetId } from '../store/datasets.ts';

const log = childLog('jobs');

export interface SourceSpec {
  name: string;
  /** For profiles written with {{baseUrl}} (the sample archive). */
  baseUrl?: string;
}

/**
 * MORRIS_SOURCES entries are `name` or `name=baseUrl`; empty means every profile in the default columnist's sources/
 * that needs no base URL.
 */
export function sourcesFromConfig(c: Pick<Config, 'MORRIS_SOURCES'>): SourceSpec[] {
  if (c.MORRIS_SOURCES.length) {
    return c.MORRIS_SOURCES.map((s) => {
      const i = s.indexOf('=');
      return i < 0 ? { name: s } : { name: s.slice(0, i), baseUrl: s.slice(i + 1) };
    });
  }
  return loadableSources();
}

/** Every profile in a sources folder (default: the default columnist's) that loads without a base URL. */
export function loadableSources(dir?: string): SourceSpec[] {
  return listProfiles(dir)
    .filter((name) => {
      try {
        loadProfile(name, { dir });
        return true;
      } catch (e) {
        // A profile written for a base URL is only crawled when named in MORRIS_SOURCES; any other
        // failure is a broken profile, which should not vanish from the scrape without a word.
        if (!(isMorrisError(e) && e.message.includes('needs a base URL'))) log.warn({ err: e, profile: name }, 'source profile skipped: it does not load');
        return false;
      }
    })
    .map((name) => ({ name }));
}

export interface JobEnv {
  config: Config;
  store: Store;
  registry: AdapterRegistry;
  sources: SourceSpec[];
  baseModelDir: () => Promise<string>;
  /** Training settings on top of MORRIS_TRAIN_CONFIG. */
  trainOverrides?: Record<string, unknown>;
  /** Style guide and extra examples for dataset builds; default: the default columnist's folder. */
  style?: Style;
}

/** The dataset a columnist's last build produced (or, failing that, its newest one). */
export function currentDatasetId(store: Store, columnist: string = DEFAULT_COLUMNIST_NAME): string {
  const current = getKv(store, currentDatasetKey(columnist));
  if (current) return current;
  const latest = latestDatasetId(store, columnist);
  if (!latest) {
    throw new MorrisError('DATASET_EMPTY', `There is no dataset of ${columnist} to train on yet.`, {
      hint: `Run the rebuild job (or \`morris dataset build${columnist === DEFAULT_COLUMNIST_NAME ? '' : ` --columnist ${columnist}`}\`) first.`,
    });
  }
  return latest;
}

/** Generations for the gate's style and copying checks: long enough to show a voice. */
export const EVAL_MAX_NEW_TOKENS = 160;

function budgetOf(c: Config): WorkerBudget {
  return { threads: c.MORRIS_TRAIN_THREADS, memoryMb: c.MORRIS_TRAIN_MEMORY_MB };
}

function workerHooks(ctx: JobContext) {
  return {
    signal: ctx.signal,
    onProgress: (f: number, m?: string) => ctx.progress(f, m),
    onLog: (line: string, level: 'info' | 'warn' | 'error') => ctx.log(line, level),
    onSpawn: (pid: number) => {
      ctx.setChildPid(pid);
      ctx.log(`worker process ${pid} started`);
    },
  };
}

export function createJobHandlers(env: JobEnv): Record<string, JobHandler> {
  const { config, store } = env;
  /** The voice a run is for: input.columnist, else the default one (an unknown name fails the run, listing the known ones). */
  const voiceOf = (input: { columnist?: string }): Columnist => resolveColumnist(input.columnist, config);
  /** The default voice keeps what serve was handed (MORRIS_SOURCES, a test's style); the others read their folders. */
  const isDefault = (c: Columnist) => c.name === DEFAULT_COLUMNIST_NAME;
  const trainSettings = () => ({
    ...(config.MORRIS_TRAIN_CONFIG ? readTrainConfigFile(config.MORRIS_TRAIN_CONFIG) : {}),
    ...env.trainOverrides,
    threads: config.MORRIS_TRAIN_THREADS,
    memoryMb: config.MORRIS_TRAIN_MEMORY_MB,
  });

  const rescrape: JobHandler = async (ctx, input: { sources?: SourceSpec[]; columnist?: string }): Promise<RescrapeResult> => {
    const voice = voiceOf(input);
    const sources = input.sources ?? (isDefault(voice) ? env.sources : loadableSources(voice.sourcesDir));
    if (!sources.length) throw new MorrisError('BAD_INPUT', 'No sources to scrape.', { hint: 'Set MORRIS_SOURCES (e.g. "lightreading-iain-morris").' });
    let fresh = 0;
    let updated = 0;
    const parts: string[] = [];
    for (const [i, s] of sources.entries()) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const profile = loadProfile(s.name, { baseUrl: s.baseUrl, dir: voice.sourcesDir });
      ctx.log(`scraping ${s.name}${s.baseUrl ? ` at ${s.baseUrl}` : ''}${isDefault(voice) ? '' : ` for ${voice.name}`}`);
      const sum = await scrapeSource(store, profile, {
        ...scrapeSettingsFromConfig(config),
        columnist: voice.name,
        onProgress: (p) => ctx.progress((i + Math.min(0.99, p.done / Math.max(1, p.total))) / sources.length, `${s.name}: ${p.done}/${p.total}`),
      });
      fresh += sum.new;
      updated += sum.updated;
      const line = `${s.name}: ${sum.new} new, ${sum.updated} updated, ${sum.unchanged} unchanged, ${sum.skipped.length} skipped, ${sum.failed.length} failed, ${sum.skippedRobots} blocked by robots.txt, ${sum.offHost} off-host refused, ${sum.badEncoding} bad-encoding`;
      ctx.log(line, sum.failed.length ? 'warn' : 'info');
      for (const f of sum.failed.slice(0, 10)) ctx.log(`  failed ${f.url}: ${f.reason}`, 'warn');
      for (const c of sum.caps) ctx.log(`  ${s.name}: ${c.message}; ${sum.pending} URLs pending for the next run`, 'warn');
      parts.push(line);
    }
    return { changed: fresh + updated > 0, new: fresh, updated, summary: parts.join('; ') };
  };

  const rebuild: JobHandler = async (ctx, input: { columnist?: string }): Promise<RebuildResult> => {
    const voice = voiceOf(input);
    const style = isDefault(voice) ? env.style : loadStyle(voice.dir);
    const r = await rebuildDataset(store, { config, baseModelDir: env.baseModelDir, style, columnist: voice.name, log: ctx.log, signal: ctx.signal });
    ctx.progress(1);
    return r;
  };

  const retrain: JobHandler = async (ctx, input: RetrainInput): Promise<RetrainResult> => {
    const datasetId = input.datasetId ?? currentDatasetId(store, voiceOf(input).name);
    const settings = input.settings ?? trainSettings();
    // Saved before the worker starts: if this process dies, the next start resumes from here.
    const record: RetrainProgressRecord = { datasetId, settings };
    ctx.setResult(record);
    ctx.log(`${input.resume ? 'resuming the training' : 'training a new adapter'} on dataset ${datasetId} (threads ${config.MORRIS_TRAIN_THREADS}, memory budget ${config.MORRIS_TRAIN_MEMORY_MB} MB)`);
    const baseModelDir = path.resolve(await env.baseModelDir());
    const out = await runWorker<TrainTaskResult>(
      {
        kind: 'train',
        options: {
          dbPath: config.dbPath,
          baseModelDir,
          datasetId,
          runsDir: path.resolve(config.MORRIS_DATA_DIR, 'runs'),
          adaptersDir: path.resolve(config.MORRIS_MODELS_DIR, 'adapters'),
          resume: Boolean(input.resume),
          settings,
        },
      },
      budgetOf(config),
      workerHooks(ctx),
    );
    ctx.setChildPid(null);
    if (input.resume && out.resumedFrom === null) {
      // The trainer finds a checkpoint by the run's identity (model, dataset, settings): a change
      // to any of them since the interruption means a fresh start, which the log should say.
      ctx.log(`no checkpoint of the interrupted training matched (base model, dataset or settings changed); trained from step 0 in ${out.runDir}`, 'warn');
    }
    // Only a candidate goes on to the gate: the run fails with the judge's reason otherwise, so
    // the chain stops here and the dashboard shows why.
    if (out.verdict.status !== 'candidate') {
      const what = out.verdict.status === 'failed' ? `marked failed` : `saved in ${out.adapterDir} but not registered`;
      throw new MorrisError('JOB_FAILED', `adapter ${out.adapterId} ${what}: ${out.verdict.reason}.`, { hint: out.verdict.hint });
    }
    const loss = out.valLoss === null ? 'no validation split' : `validation loss ${out.valLoss.toFixed(4)}`;
    return {
      ...record,
      ...out,
      summary: `adapter ${out.adapterId}: ${out.steps} steps on ${out.device}${out.resumedFrom !== null ? ` (resumed at step ${out.resumedFrom})` : ''}, ${loss}`,
    };
  };

  const evaluate: JobHandler = async (ctx, input: { adapterId?: string }) => {
    if (!input.adapterId) throw new MorrisError('BAD_INPUT', 'evaluate needs {"adapterId": "..."}.');
    const cand = getAdapter(store, input.adapterId);
    // The gate compares within a voice: the candidate against its own columnist's active adapter.
    const voice = resolveColumnist(cand.columnist, config);
    const active = env.registry.active(cand.columnist);
    const activeOther = active && active.id !== cand.id ? active : undefined;
    const datasetId = cand.dataset_id ?? currentDatasetId(store, cand.columnist);
    ctx.log(`evaluating ${cand.id} (${cand.columnist}) against ${activeOther ? `${cand.columnist}'s active adapter ${activeOther.id}` : `no active adapter of ${cand.columnist}`} and the base model on dataset ${datasetId}`);
    const baseModelDir = path.resolve(await env.baseModelDir());
    const measures = await runWorker<ModelMeasure[]>(
      {
        kind: 'evaluate',
        options: {
          dbPath: config.dbPath,
          baseModelDir,
          datasetId,
          models: [
            { adapterId: null, adapterDir: null },
            ...(activeOther ? [{ adapterId: activeOther.id, adapterDir: path.resolve(activeOther.path) }] : []),
            { adapterId: cand.id, adapterDir: path.resolve(cand.path) },
          ],
          styleGuideFile: voice.systemPromptFile,
          columnist: voice.name,
          threads: config.MORRIS_TRAIN_THREADS,
          device: config.MORRIS_DEVICE,
          maxSeqLen: config.MORRIS_MAX_SEQ_TOKENS,
          maxNewTokens: Math.min(config.MORRIS_MAX_NEW_TOKENS, EVAL_MAX_NEW_TOKENS),
        },
      },
      budgetOf(config),
      workerHooks(ctx),
    );
    const byId = (id: string | null) => measures.find((m) => m.adapterId === id)!;
    const base = byId(null);
    const candidate = byId(cand.id);
    const current = activeOther ? byId(activeOther.id) : null;
    for (const m of measures) {
      const pref = m.preference ? `, preference accuracy ${m.preference.accuracy.toFixed(3)} over ${m.preference.pairs} held-out reader pairs` : ', no held-out reader pairs';
      ctx.log(`${m.adapterId ?? 'base'}: val loss ${m.valLoss.toFixed(4)} (ppl ${m.perplexity.toFixed(2)}), style ${m.style.toFixed(3)}, longest verbatim run ${m.longestVerbatimRun}${pref}`);
    }
    const method = cand.metrics['method'] === 'dpo' ? 'dpo' : 'sft';
    const decision = decidePromotion(candidate, current, base, { margin: voice.settings.promoteMargin, styleTolerance: voice.settings.styleTolerance, method });
    recordEvaluation(store, cand.id, { datasetId, candidate, active: current, base, decision, at: new Date().toISOString() }, decision.reason, decision.reject);
    if (decision.promote) {
      await env.registry.promote(cand.id, 'evaluate', decision.reason);
      ctx.log(`promoted ${cand.id}: ${decision.reason}`);
    } else {
      ctx.log(`${decision.reject ? 'rejected' : 'kept as candidate'}: ${decision.reason}`, 'warn');
    }
    return {
      adapterId: cand.id,
      promoted: decision.promote,
      reason: decision.reason,
      summary: `${decision.promote ? 'promoted' : decision.reject ? 'rejected' : 'not promoted'}: ${decision.reason}`,
    };
  };

  /**
   * DPO on readers' pairs on the voice's articles, on top of `referenceAdapterId` (the chain passes
   * the adapter it just retrained), else the voice's active adapter — the one the rated articles
   * were written with — else the base model. The result joins the voice's adapters, and only a
   * candidate goes on to the gate (which measures it on the voice's held-out pairs).
   */
  const dpo: JobHandler = async (ctx, input: DpoInput & { columnist?: string }): Promise<DpoResult> => {
    const voice = voiceOf(input);
    const refId = input.referenceAdapterId === undefined ? (env.registry.active(voice.name)?.id ?? null) : input.referenceAdapterId;
    const ref = refId ? getAdapter(store, refId) : null;
    if (ref && ref.columnist !== voice.name) {
      throw new MorrisError('BAD_INPUT', `Adapter ${ref.id} is ${ref.columnist}'s, not ${voice.name}'s: DPO for ${voice.name} starts from one of its own adapters.`, {
        hint: `Give one of ${voice.name}'s adapters (\`morris adapters list --columnist ${voice.name}\`), none for the base model, or run DPO for ${ref.columnist}.`,
      });
    }
    ctx.log(`DPO on readers' preference pairs on ${voice.name}'s articles, reference ${ref ? `adapter ${ref.id}` : 'the base model'}`);
    const out = await runWorker<DpoTaskResult>(
      {
        kind: 'dpo',
        options: {
          dbPath: config.dbPath,
          baseModelDir: path.resolve(await env.baseModelDir()),
          referenceDir: ref ? path.resolve(ref.path) : null,
          runsDir: path.resolve(config.MORRIS_DATA_DIR, 'runs'),
          adaptersDir: path.resolve(config.MORRIS_MODELS_DIR, 'adapters'),
          // The voice's pairs, prompted with its style guide as its articles were asked for.
          styleGuideFile: voice.systemPromptFile,
          columnist: voice.name,
          resume: Boolean(input.resume),
          settings: input.settings ?? trainSettings(),
        },
      },
      budgetOf(config),
      workerHooks(ctx),
    );
    ctx.setChildPid(null);
    if (out.verdict.status !== 'candidate') {
      const what = out.verdict.status === 'failed' ? 'marked failed' : `saved in ${out.adapterDir} but not registered`;
      throw new MorrisError('JOB_FAILED', `DPO adapter ${out.adapterId} ${what}: ${out.verdict.reason}.`, { hint: out.verdict.hint });
    }
    const p = out.preference;
    return {
      adapterId: out.adapterId,
      referenceAdapterId: ref?.id ?? null,
      pairs: out.pairs,
      preference: p,
      summary: `DPO adapter ${out.adapterId} on ${out.pairs} pairs (reference ${ref?.id ?? 'base'}): held-out preference accuracy ${p.initial.toFixed(3)} → ${p.final.toFixed(3)} over ${p.heldOut} pairs`,
    };
  };

  return { rescrape, rebuild, retrain, evaluate, dpo };
}
