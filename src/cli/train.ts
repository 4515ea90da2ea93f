/**
 * `morris train`: wiring only. Flags and a --config file become settings over the environment's;
 * trainAdapter does the work; a progress bar with ETA goes to stderr, the result to stdout.
 */
import { resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { SingleBar } from 'cli-progress';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';
import { baseModelLocation } from '../model/checkpoint/base-model-location.ts';
import { readTrainConfigFile, trainSettingsFromEnv } from '../model/train/config.ts';
import type { TrainProgress } from '../model/train/trainer.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP } from './options.ts';
import { resolveColumnist } from '../columnists/folder.ts';
import { describeHolder, withTrainingLease } from '../jobs/host-lease.ts';
import { datasetColumnist, latestDatasetId } from '../store/datasets.ts';
import type { Store } from '../store/db.ts';

/**
 * The dataset `--dataset` names for the voice: `latest` is the columnist's newest; an id must be
 * the columnist's when `--columnist` is given (the adapter joins its dataset's columnist).
 */
function datasetForVoice(store: Store, ref: string, voice: string, named: boolean): string {
  if (ref === 'latest') {
    const id = latestDatasetId(store, voice);
    if (!id) {
      throw new MorrisError('DATASET_EMPTY', `There is no dataset of ${voice} yet.`, {
        hint: `Build one with \`morris dataset build --columnist ${voice}\`, or import one with \`morris dataset import FILE.jsonl --columnist ${voice}\`.`,
      });
    }
    return id;
  }
  const owner = datasetColumnist(store, ref);
  if (named && owner !== undefined && owner !== voice) {
    throw new MorrisError('BAD_INPUT', `Dataset ${ref} belongs to ${owner}, not ${voice}.`, { hint: `Train it with --columnist ${owner}, or pick one of ${voice}'s datasets (\`morris dataset list --columnist ${voice}\`).` });
  }
  return ref;
}

interface TrainFlags {
  columnist?: string;
  model?: string;
  dataset: string;
  steps?: number;
  epochs?: number;
  out?: string;
  device?: string;
  resume?: boolean;
  config?: string;
  lr?: number;
  rank?: number;
  alpha?: number;
  dropout?: number;
  targets?: string[];
  seed?: number;
  evalEvery?: number;
  saveEvery?: number;
  batchSize?: number;
  gradAccum?: number;
  maxSeqLen?: number;
  threads?: number;
  progress: boolean;
  method: string;
  adapter?: string;
  pairs: string;
  beta?: number;
}

const num = (name: string, integer = false) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${name} must be ${integer ? 'an integer' : 'a number'}.`);
  return n;
};

/** Flags → settings keys (only the flags that were given). */
export function settingsFromFlags(f: TrainFlags): Record<string, unknown> {
  const s: Record<string, unknown> = {
    maxSteps: f.steps,
    epochs: f.epochs,
    device: f.device,
    lr: f.lr,
    rank: f.rank,
    alpha: f.alpha,
    dropout: f.dropout,
    targets: f.targets,
    seed: f.seed,
    evalEvery: f.evalEvery,
    saveEvery: f.saveEvery,
    batchSize: f.batchSize,
    gradAccum: f.gradAccum,
    maxSeqLen: f.maxSeqLen,
    threads: f.threads,
    dpoBeta: f.beta,
  };
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
}

function progressPrinter(enabled: boolean) {
  let bar: SingleBar | null = null;
  let lastEval = '';
  return {
    update(p: TrainProgress) {
      if (p.phase === 'eval') {
        lastEval = p.evalLoss === undefined ? '' : ` eval ${p.evalLoss.toFixed(4)}`;
        return;
      }
      if (!enabled) return;
      if (!bar) {
        bar = new SingleBar(
          { format: 'train [{bar}] {value}/{total} steps | loss {loss}{evalText} | lr {lr} | {tps} tok/s | ETA {etaText}', hideCursor: true, stream: process.stderr },
        );
        bar.start(p.totalSteps, 0, { loss: '-', evalText: lastEval, lr: '-', tps: 0, etaText: '-' });
      }
      bar.update(p.step, {
        loss: p.loss?.toFixed(4) ?? '-',
        evalText: lastEval,
        lr: p.lr?.toExponential(2) ?? '-',
        tps: Math.round(p.tokensPerS ?? 0),
        etaText: formatDuration(p.etaS ?? 0),
      });
    },
    stop() {
      bar?.stop();
    },
  };
}

function formatDuration(s: number): string {
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(t % 60).padStart(2, '0')}s`;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('train')
    .description('Fine-tune a LoRA adapter on a dataset version (SFT), or on readers\' preference pairs (DPO); PEFT format, registered as a candidate')
    .option('--method <sft|dpo>', 'sft: a dataset version; dpo: preference pairs against a reference', 'sft')
    .option('--adapter <dir|id|none>', 'DPO: the reference adapter (training starts from it), or none for the base model')
    .option('--pairs <latest|file>', 'DPO: the pairs readers made (latest) or a TRL preference JSONL file', 'latest')
    .option('--beta <b>', 'DPO: β (dpoBeta)', num('--beta'))
    .option('--model <dir>', 'base model folder (default: MORRIS_BASE_MODEL under MORRIS_MODELS_DIR)')
    .option('--dataset <id>', 'dataset version id, or "latest" (the columnist\'s newest)', 'latest')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--steps <n>', 'cap on optimizer steps', num('--steps', true))
    .option('--epochs <n>', 'passes over the training split', num('--epochs'))
    .option('--out <dir>', 'also write the adapter folder here')
    .option('--device <name>', 'auto | cpu | cuda | coreml | dml | webgpu')
    .option('--resume', 'continue the same run from its last checkpoint')
    .option('--config <file>', 'JSON file with training settings (keys as in TRAIN_DEFAULTS)')
    .option('--lr <x>', 'peak learning rate', num('--lr'))
    .option('--rank <r>', 'LoRA rank', num('--rank', true))
    .option('--alpha <a>', 'LoRA alpha', num('--alpha'))
    .option('--dropout <p>', 'LoRA dropout', num('--dropout'))
    .option('--targets <list>', 'target modules, e.g. q_proj,v_proj', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--seed <n>', 'random seed', num('--seed', true))
    .option('--eval-every <n>', 'optimizer steps between validation losses', num('--eval-every', true))
    .option('--save-every <n>', 'optimizer steps between checkpoints', num('--save-every', true))
    .option('--batch-size <n>', 'examples per micro-batch', num('--batch-size', true))
    .option('--grad-accum <n>', 'micro-batches per optimizer step', num('--grad-accum', true))
    .option('--max-seq-len <n>', 'tokens per example', num('--max-seq-len', true))
    .option('--threads <n>', 'intra-op threads (0: runtime default)', num('--threads', true))
    .option('--no-progress', 'no progress bar')
    .action(async (f: TrainFlags) => {
      const config = ctx.config();
      const modelDir = f.model ? resolve(f.model) : baseModelLocation(config.MORRIS_BASE_MODEL, config.MORRIS_MODELS_DIR);
      const settings = { ...(f.config ? readTrainConfigFile(f.config) : {}), ...settingsFromFlags(f) };
      const progress = progressPrinter(f.progress && process.stderr.isTTY === true);
      const controller = new AbortController();
      // Ctrl-C: checkpoint the last finished step and stop (a second Ctrl-C kills).
      const onSigint = () => {
        process.stderr.write('\nstopping after the current step (checkpointing)…\n');
        controller.abort();
        process.off('SIGINT', onSigint);
      };
      process.on('SIGINT', onSigint);
      try {
        if (f.method !== 'sft' && f.method !== 'dpo') throw new MorrisError('BAD_INPUT', `Unknown --method ${f.method}.`, { hint: 'Use --method sft (a dataset) or --method dpo (preference pairs).' });
        // One training at a time on the host: a serve's chain or another `morris train` may hold the turn.
        const voice = resolveColumnist(f.columnist, config).name;
        await withTrainingLease(ctx.store(), { what: `${f.method.toUpperCase()} training for ${voice}`, command: 'morris train' }, () => train(voice), {
          signal: controller.signal,
          onWait: (h) => process.stderr.write(`waiting: the host trains one thing at a time and ${describeHolder(h)} holds the turn; this training starts when it ends (Ctrl-C to give up)\n`),
        });
      } finally {
        progress.stop();
        process.off('SIGINT', onSigint);
      }

      async function train(voice: string): Promise<void> {
        if (f.method === 'dpo') {
          const { runDpoTraining } = await import('./train-dpo.ts');
          const r = await runDpoTraining(
            ctx,
            f,
            { modelDir, hostSettings: trainSettingsFromEnv(config), settings, runsDir: resolve(config.MORRIS_DATA_DIR, 'runs'), adaptersDir: resolve(config.MORRIS_MODELS_DIR, 'adapters') },
            { onProgress: (p) => progress.update(p), signal: controller.signal },
          );
          progress.stop();
          process.stdout.write(r.lines.join('\n') + '\n');
          if (r.status !== 'candidate') {
            process.stderr.write(`morris: ${r.status === 'failed' ? 'training failed' : 'adapter not registered'}: ${r.reason}.\n${r.hint ?? ''}\n`);
            process.exitCode = 1;
          }
          return;
        }
        // Loaded on use: the trainer pulls in ONNX Runtime, which `morris --help` does not need.
        const { trainAdapter } = await import('../model/train/trainer.ts');
        const r = await trainAdapter(
          {
            store: ctx.store(),
            modelDir,
            dataset: datasetForVoice(ctx.store(), f.dataset, voice, f.columnist !== undefined),
            hostSettings: trainSettingsFromEnv(config),
            settings,
            resume: f.resume,
            outDir: f.out,
            runsDir: resolve(config.MORRIS_DATA_DIR, 'runs'),
            adaptersDir: resolve(config.MORRIS_MODELS_DIR, 'adapters'),
          },
          { onProgress: (p) => progress.update(p), signal: controller.signal },
        );
        progress.stop();
        const m = r.metrics as { eval_loss_initial: number | null; eval_loss: number | null; train_loss: number | null; seconds: number };
        const v = r.verdict;
        const lines = [
          `adapter ${r.adapterId} (${v.status === 'unregistered' ? 'saved, not registered' : v.status}) → ${r.adapterDir}`,
          ...(f.out ? [`copy → ${resolve(f.out)}`] : []),
          `dataset ${r.datasetId}, ${r.steps} steps on ${r.device}${r.resumedFrom !== null ? ` (resumed from step ${r.resumedFrom})` : ''}${r.stoppedEarly ? ', stopped early' : ''}, ${m.seconds}s`,
          `train loss ${m.train_loss?.toFixed(4) ?? '-'}; ${m.eval_loss === null ? 'no validation split' : `validation loss ${m.eval_loss_initial?.toFixed(4) ?? '-'} → ${m.eval_loss.toFixed(4)}`}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        if (v.status !== 'candidate') {
          // Not an error thrown: the adapter was written and the person may want it, but a script
          // chaining `train && adapters promote` must see that there is nothing to promote.
          process.stderr.write(`morris: ${v.status === 'failed' ? 'training failed' : 'adapter not registered'}: ${v.reason}.\n${v.hint}\n`);
          process.exitCode = 1;
        }
      }
    });
}
