/**
 * `morris generate` and `morris model init-tiny|pull|list|merge`. Wiring only: the work is done
 * by the generation service, the Hub client, the inventory and the engine's merge.
 */
import { getAdapter } from '../store/adapters.ts';
import { articleTrailer, composeArticle } from '../bot/render.ts';
import { resolveColumnist, type Columnist } from '../columnists/folder.ts';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import type { CliContext } from './context.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP, numberOption } from './options.ts';
import type { Config } from '../config.ts';
import { MorrisError, describeError, isMorrisError } from '../errors.ts';
import { log } from '../log.ts';
import { baseModelLocation } from '../model/checkpoint/base-model-location.ts';
import type { AdapterRef, GenerationService, ServiceDoneEvent, ServiceRequest } from '../model/serving/generation-service.ts';
import { checkpointSamplingDefaults } from './checkpoint-sampling.ts';
import type { PullProgress } from '../model/checkpoint/hub.ts';
import type { SamplingOptions } from '../model/inference/engine.ts';

// The model modules are imported inside the actions that use them, so `morris <anything else>`
// and `--help` do not pay for loading the Hub client, the tokenizer trainer or the engine.
const generation = () => import('../model/serving/create.ts');
const hub = () => import('../model/checkpoint/hub.ts');
const inventory = () => import('../model/checkpoint/inventory.ts');

// ---------------------------------------------------------------- flags

interface GenerateFlags {
  columnist?: string;
  model?: string;
  adapter?: string;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  seed?: number;
  raw?: boolean;
  batch?: string;
  timeout?: number;
}

function samplingFlags(f: GenerateFlags): Partial<SamplingOptions> {
  return {
    ...(f.temperature !== undefined ? { temperature: f.temperature } : {}),
    ...(f.topP !== undefined ? { topP: f.topP } : {}),
    ...(f.topK !== undefined ? { topK: f.topK } : {}),
    ...(f.repetitionPenalty !== undefined ? { repetitionPenalty: f.repetitionPenalty } : {}),
    ...(f.maxNewTokens !== undefined ? { maxNewTokens: f.maxNewTokens } : {}),
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
  };
}

// ---------------------------------------------------------------- progress

/** A byte progress bar on a terminal, one log line per file otherwise. */
async function pullProgress(): Promise<{ onProgress: (p: PullProgress) => void; stop: () => void }> {
  const { formatBytes } = await inventory();
  if (!process.stderr.isTTY) {
    let lastFile = -1;
    return {
      onProgress: (p) => {
        if (p.fileIndex !== lastFile) {
          lastFile = p.fileIndex;
          log.info({ file: p.file, bytes: p.fileTotal }, `downloading ${p.fileIndex + 1}/${p.fileCount}`);
        }
      },
      stop: () => undefined,
    };
  }
  const bar = new SingleBar({
    format: ' {bar} {percentage}% | {done}/{size} | {file}',
    stream: process.stderr,
    hideCursor: true,
  });
  let started = false;
  return {
    onProgress: (p) => {
      const payload = { file: p.file, done: formatBytes(p.bytes), size: formatBytes(p.total) };
      if (!started) {
        bar.start(p.total, p.bytes, payload);
        started = true;
      } else bar.update(p.bytes, payload);
    },
    stop: () => started && bar.stop(),
  };
}

// ---------------------------------------------------------------- generate

/** Base model folder: --model, else MORRIS_BASE_MODEL (pulled from the Hub on first use). */
async function chooseBaseModel(config: Config, model: string | undefined): Promise<string> {
  if (model) {
    const dir = resolve(model);
    if (!existsSync(dir)) throw new MorrisError('MODEL_MISSING', `No model folder at ${dir}.`, { hint: 'Pass a Hugging Face checkpoint folder, e.g. one made by `morris model init-tiny`.' });
    return dir;
  }
  const progress = await pullProgress();
  const { resolveBaseModel } = await hub();
  try {
    return await resolveBaseModel(config, { onProgress: progress.onProgress });
  } finally {
    progress.stop();
  }
}

/**
 * --adapter DIR|none wins. Otherwise the store's active adapter, but only for article requests on
 * the base it was trained for (raw continuation is for checking the base model itself).
 */
async function chooseAdapter(ctx: CliContext, flags: GenerateFlags, baseDir: string, voice: string): Promise<AdapterRef | null> {
  if (flags.adapter === 'none') return null;
  if (flags.adapter) {
    const dir = resolve(flags.adapter);
    if (!existsSync(resolve(dir, 'adapter_config.json'))) {
      throw new MorrisError('NOT_FOUND', `No adapter at ${dir} (adapter_config.json is missing).`, {
        hint: 'Pass a PEFT adapter folder (adapter_config.json + adapter_model.safetensors), or --adapter none for the base model.',
      });
    }
    return { dir, id: dir };
  }
  if (flags.raw) return null;
  // No database yet means no adapter was ever trained; don't create one just to look.
  if (!existsSync(ctx.config().dbPath)) return null;
  const active = (await generation()).activeAdapterFromStore(ctx.store(), voice);
  if (!active) return null;
  const row = getAdapter(ctx.store(), active.id);
  const config = ctx.config();
  const adapterBase = baseModelLocation(row.base_model, config.MORRIS_MODELS_DIR);
  if (resolve(adapterBase) !== baseDir) {
    log.info({ adapter: active.id, adapterBase, baseDir }, 'active adapter is for another base model; generating without it');
    return null;
  }
  return { ...active, dir: resolve(active.dir) };
}

async function streamOne(service: GenerationService, req: ServiceRequest, out: (s: string) => void): Promise<ServiceDoneEvent> {
  let done: ServiceDoneEvent | undefined;
  for await (const ev of service.generate(req)) {
    if (ev.type === 'text') out(ev.text);
    else if (ev.type === 'done') done = ev;
    else if (ev.type === 'queued' && ev.position > 1) log.info({ position: ev.position }, 'waiting in queue');
  }
  return done!;
}

/** The attribution an article leaves with: the voice's (MORRIS_COLUMNIST still names the default one). */
function articleNotes(voice: Columnist): { columnist: string; platform: 'plain' } {
  return { columnist: voice.attribution, platform: 'plain' };
}

async function runGenerate(ctx: CliContext, topicWords: string[], flags: GenerateFlags): Promise<void> {
  const config = ctx.config();
  const baseDir = await chooseBaseModel(config, flags.model);
  const voice = resolveColumnist(flags.columnist, config);
  const adapter = await chooseAdapter(ctx, flags, baseDir, voice.name);
  const { createGenerationService } = await generation();
  // The voice's own style guide: its adapter was trained with it as the system prompt.
  const service = createGenerationService(config, { baseModel: baseDir, adapter, systemPromptFile: voice.systemPromptFile });
  // Raw continuation follows the checkpoint's own generation_config.json (as transformers does);
  // articles use Morris's configured defaults. Flags override either.
  const sampling = { ...(flags.raw ? checkpointSamplingDefaults(baseDir) : {}), ...samplingFlags(flags) };
  const ctl = new AbortController();
  const onSigint = () => ctl.abort();
  process.once('SIGINT', onSigint);
  try {
    if (flags.batch) {
      await runBatch(service, flags, sampling, ctl.signal, articleNotes(voice));
      return;
    }
    const text = topicWords.join(' ');
    const base = { sampling, signal: ctl.signal, ...(flags.timeout !== undefined ? { timeoutS: flags.timeout } : {}) };
    const req: ServiceRequest = flags.raw ? { ...base, rawText: text } : { ...base, topic: text };
    // Raw mode prints the prompt first, as llama.cpp and llama2.c do, so stdout reads as one text.
    if (flags.raw) process.stdout.write(text);
    const done = await streamOne(service, req, (s) => process.stdout.write(s));
    // An article leaves with its attribution line, like every article Morris writes; raw
    // continuation is a base-model check, not an article.
    process.stdout.write(flags.raw ? '\n' : `\n\n${articleTrailer({ ...articleNotes(voice), cut: done.cut, cutReason: done.reason })}\n`);
    if (done.cut) process.stderr.write(`morris: stopped early (${done.reason}); the text above is partial.\n`);
    log.debug({ tokens: done.tokens, ms: done.generationMs, adapterId: done.adapterId }, 'generated');
  } finally {
    process.removeListener('SIGINT', onSigint);
    await service.close();
  }
}

/**
 * One topic per line → one JSON line per topic on stdout, in the file's order; a bad topic is
 * reported, not fatal. Topics go to the service together (up to BATCH_WINDOW in flight), so a
 * model that batches writes several at once; the results are printed as soon as every earlier
 * line's has been.
 */
async function runBatch(
  service: GenerationService,
  flags: GenerateFlags,
  sampling: Partial<SamplingOptions>,
  signal: AbortSignal,
  notes: { columnist: string; platform: 'plain' },
): Promise<void> {
  if (!existsSync(flags.batch!)) throw new MorrisError('NOT_FOUND', `No batch file at ${flags.batch}.`);
  const lines = readFileSync(flags.batch!, 'utf8').split(/\r?\n/).filter((l) => l.trim() && !l.trimStart().startsWith('#'));
  const one = async (line: string): Promise<string | null> => {
    if (signal.aborted) return null;
    const base = { sampling, signal, ...(flags.timeout !== undefined ? { timeoutS: flags.timeout } : {}) };
    try {
      const done = await streamOne(service, flags.raw ? { ...base, rawText: line } : { ...base, topic: line }, () => undefined);
      const { type: _type, ...result } = done;
      // `text` is what the model wrote; `article` is it as it leaves Morris, attribution included.
      const article = flags.raw ? undefined : composeArticle(done.text, { ...notes, cut: done.cut, cutReason: done.reason });
      return JSON.stringify({ topic: line, ...result, ...(article ? { article } : {}) });
    } catch (e) {
      if (!isMorrisError(e) || (e.code !== 'BAD_INPUT' && e.code !== 'GENERATION_FAILED')) throw e;
      return JSON.stringify({ topic: line, error: { code: e.code, message: describeError(e) } });
    }
  };
  // One settled-later result per line, filled by workers that pull lines in order; fewer workers
  // than the service's queue limit, so nothing is BUSY.
  const settle: ((r: Promise<string | null>) => void)[] = [];
  const results = lines.map(() => new Promise<string | null>((res) => settle.push(res)));
  let next = 0;
  const worker = async () => {
    while (next < lines.length) {
      const i = next++;
      const r = one(lines[i]!);
      settle[i]!(r);
      await r.catch(() => undefined);
    }
  };
  const workers = Promise.all(Array.from({ length: Math.min(BATCH_WINDOW, lines.length) }, worker));
  for (const r of results) {
    const out = await r;
    if (out !== null) process.stdout.write(out + '\n');
  }
  await workers;
}

/** Topics of a --batch file in flight at once: enough to fill a batch of 16, under the default queue limit. */
const BATCH_WINDOW = 16;

// ---------------------------------------------------------------- register

export function register(program: Command, ctx: CliContext): void {
  program
    .command('generate')
    .description('Write an article on a topic, streamed to stdout')
    .argument('[topic...]', 'what to write about (or, with --raw, the text to continue)')
    .option('--model <dir>', 'base model folder (default: MORRIS_BASE_MODEL)')
    .option('--adapter <dir|none>', 'LoRA adapter folder, or "none" (default: the columnist\'s active adapter)')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--temperature <t>', '0 = greedy', numberOption('--temperature', 0, 5))
    .option('--top-p <p>', 'nucleus sampling mass', numberOption('--top-p', 0.000001, 1))
    .option('--top-k <k>', '0 = off', numberOption('--top-k', 0, 1_000_000, true))
    .option('--repetition-penalty <r>', '1 = off', numberOption('--repetition-penalty', 0.01, 10))
    .option('--max-new-tokens <n>', 'length limit in tokens', numberOption('--max-new-tokens', 1, 131072, true))
    .option('--seed <n>', 'sampling seed, for reproducible output', numberOption('--seed', 0, 2 ** 31 - 1, true))
    .option('--timeout <s>', 'time limit in seconds (default: MORRIS_GENERATION_TIMEOUT_S)', numberOption('--timeout', 0.001, 86400))
    .option('--raw', 'continue the text as is: no chat template, no system prompt, checkpoint sampling defaults')
    .option('--batch <file>', 'one topic per line; writes one JSON line of results per topic')
    .action(async (topic: string[], flags: GenerateFlags) => {
      if (!flags.batch && topic.join(' ').trim() === '') {
        throw new MorrisError('BAD_INPUT', 'No topic given.', { hint: 'Usage: morris generate "the joy of late trains"   (or --batch FILE; --help for options)' });
      }
      if (flags.batch && topic.length) throw new MorrisError('BAD_INPUT', 'Give either a topic or --batch FILE, not both.');
      await runGenerate(ctx, topic, flags);
    });

  const model = program.command('model').description('Base models on disk: init-tiny, pull, list, merge');

  model
    .command('init-tiny')
    .description('Write a tiny random model (Hub layout, self-trained BPE tokenizer, ChatML) for tests and demos')
    .argument('<dir>', 'output folder')
    .option('--arch <arch>', 'llama or qwen2', 'llama')
    .option('--seed <n>', 'weights seed', numberOption('--seed', 0, 2 ** 31 - 1, true), 0)
    .option('--dtype <dtype>', 'F32, BF16 or F16', 'F32')
    .action(async (dir: string, o: { arch: string; seed: number; dtype: string }) => {
      const dtype = o.dtype.toUpperCase();
      if (!['F32', 'BF16', 'F16'].includes(dtype)) throw new MorrisError('BAD_INPUT', `Unknown --dtype ${o.dtype}.`, { hint: 'Use F32, BF16 or F16.' });
      const [{ initTinyModel }, { formatCount }] = await Promise.all([import('../model/tiny/index.ts'), inventory()]);
      const info = initTinyModel(resolve(dir), { arch: o.arch as 'llama', seed: o.seed, dtype: dtype as 'F32' });
      process.stdout.write(`${info.dir}: ${info.arch}, ${formatCount(info.parameters)} parameters, vocab ${info.dims.vocab}, seed ${o.seed}\n`);
    });

  model
    .command('pull')
    .description('Download a model from the Hugging Face Hub (resumable; sizes and sha256 checked)')
    .argument('<repo-id>', 'e.g. HuggingFaceTB/SmolLM2-360M-Instruct')
    .option('--dest <dir>', 'target folder (default: under MORRIS_MODELS_DIR)')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .action(async (repoId: string, o: { dest?: string; revision: string }) => {
      const config = ctx.config();
      const destDir = resolve(o.dest ?? baseModelLocation(repoId, config.MORRIS_MODELS_DIR));
      const progress = await pullProgress();
      const [{ pullModel }, { formatBytes }] = await Promise.all([hub(), inventory()]);
      try {
        const res = await pullModel(repoId, {
          destDir,
          endpoint: config.HF_ENDPOINT,
          revision: o.revision,
          onProgress: progress.onProgress,
          ...(config.HF_TOKEN ? { token: config.HF_TOKEN } : {}),
        });
        progress.stop();
        const fetched = res.files.filter((f) => f.action !== 'skipped').length;
        process.stdout.write(`${res.dir}: ${res.files.length} files (${fetched} fetched, ${formatBytes(res.bytesDownloaded)})\n`);
      } finally {
        progress.stop();
      }
    });

  model
    .command('list')
    .description('Base models on disk with architecture, parameters, dtype, size and memory to serve/train')
    .option('--json', 'print JSON')
    .option('--context <tokens>', 'serving context for the memory estimate', numberOption('--context', 1, 1_000_000, true), 2048)
    .option('--quant <q>', 'fp32, int8 or int4 for the serving estimate (default: MORRIS_QUANT)')
    .action(async (o: { json?: boolean; context: number; quant?: string }) => {
      const { listModels, formatBytes, formatCount } = await inventory();
      const config = ctx.config();
      const quant = (o.quant ?? config.MORRIS_QUANT) as 'fp32';
      if (!['fp32', 'int8', 'int4'].includes(quant)) throw new MorrisError('BAD_INPUT', `Unknown --quant ${o.quant}.`, { hint: 'Use fp32, int8 or int4.' });
      const res = listModels(resolve(config.MORRIS_MODELS_DIR), { contextTokens: o.context, quant, trainSeqLen: config.MORRIS_MAX_SEQ_TOKENS, nativeDecode: config.MORRIS_DECODE_KERNEL !== 'onnx' });
      if (o.json) {
        process.stdout.write(JSON.stringify(res, null, 2) + '\n');
        return;
      }
      if (!res.models.length && !res.broken.length) {
        process.stdout.write(`No models in ${resolve(config.MORRIS_MODELS_DIR)}. Try \`morris model pull ${config.MORRIS_BASE_MODEL}\` or \`morris model init-tiny models/tiny\`.\n`);
        return;
      }
      const rows = [['NAME', 'ARCHITECTURE', 'PARAMS', 'DTYPE', 'ON DISK', `SERVE (${quant}, ${o.context} tok)`, `TRAIN (LoRA, ${config.MORRIS_MAX_SEQ_TOKENS} tok)`]];
      for (const m of res.models) {
        rows.push([m.name, m.architecture, formatCount(m.parameters), m.dtype, formatBytes(m.sizeOnDisk), formatBytes(m.serveBytes), formatBytes(m.trainBytes)]);
      }
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
      for (const b of res.broken) process.stdout.write(`! ${b.name}: ${b.error}\n`);
    });

  model
    .command('merge')
    .description('Fold a LoRA adapter into the base weights and write a standalone checkpoint (for export)')
    .requiredOption('--adapter <dir>', 'PEFT adapter folder')
    .requiredOption('--out <dir>', 'output folder (must differ from the base)')
    .option('--model <dir>', 'base model folder (default: MORRIS_BASE_MODEL)')
    .action(async (o: { adapter: string; out: string; model?: string }) => {
      const baseDir = await chooseBaseModel(ctx.config(), o.model);
      const { mergeAdapter } = await import('../model/checkpoint/merge.ts');
      const res = mergeAdapter(baseDir, resolve(o.adapter), resolve(o.out));
      process.stdout.write(`${res.outDir}: merged ${res.mergedTensors} tensors\n`);
    });
}
