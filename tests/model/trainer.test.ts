/**
 * The trainer on a tiny random model: PEFT output registered as a candidate, exact resume after
 * kill -9 (through the real CLI), and bad input — empty data, over-long examples, divergence,
 * a full disk, an abort.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { readSafetensorsHeader } from '../../src/model/checkpoint/safetensors.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { trainAdapter, type TrainOptions } from '../../src/model/train/trainer.ts';
import { realFsWriter } from '../../src/model/train/peft.ts';
import { loadCheckpoint } from '../../src/model/train/checkpoint.ts';
import { judgeTraining } from '../../src/model/train/judge.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { MORRIS_BIN, REPO_ROOT, runMorris } from '../morris-cli.ts';

let root: string;
let modelDir: string;
let store: Store;
let datasetId: string;


function conversations(n: number, words = 12): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: 'system', content: 'You write short columns.' },
        { role: 'user', content: `Write about the ${i}th morning train.` },
        { role: 'assistant', content: Array.from({ length: words }, (_, k) => `word${(i * 7 + k) % 50}`).join(' ') + '.' },
      ],
    }),
  ).join('\n');
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'morris-trainer-'));
  modelDir = join(root, 'tiny');
  initTinyModel(modelDir, { seed: 5, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
  store = openStore(join(root, 'data', 'morris.db'));
  writeFileSync(join(root, 'ds.jsonl'), conversations(10));
  datasetId = importDataset(store, join(root, 'ds.jsonl')).id;
});
afterAll(() => {
  store.close();
  rmSync(root, { recursive: true, force: true });
});

const base = (name: string, settings: Record<string, unknown> = {}): TrainOptions => ({
  store,
  modelDir,
  dataset: datasetId,
  runsDir: join(root, name, 'runs'),
  adaptersDir: join(root, name, 'adapters'),
  settings: { threads: 1, rank: 4, alpha: 8, gradAccum: 2, lr: 1e-3, evalEvery: 2, saveEvery: 2, ...settings },
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MorrisError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

describe('trainAdapter', () => {
  it('writes a PEFT adapter, registers it as a candidate, and records metrics', async () => {
    // A rate high enough that four steps beat the untrained validation loss (the judge's bar).
    const r = await trainAdapter({ ...base('ok', { maxSteps: 4, targets: ['q_proj', 'v_proj'], lr: 1e-2 }), outDir: join(root, 'ok', 'out') });
    expect(r.verdict).toMatchObject({ status: 'candidate' });
    const cfg = JSON.parse(readFileSync(join(r.adapterDir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: resolve(modelDir) });
    const tensors = readSafetensorsHeader(join(r.adapterDir, 'adapter_model.safetensors')).tensors;
    expect(tensors.get('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')?.shape).toEqual([4, 32]);
    expect(tensors.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')?.shape).toEqual([16, 4]);
    expect(tensors.size).toBe(2 * 2 * 2);
    expect(existsSync(join(root, 'ok', 'out', 'adapter_model.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(join(r.adapterDir, 'dataset.json'), 'utf8')).dataset_id).toBe(datasetId);
    const row = store.prepare('SELECT * FROM adapters WHERE id = ?').get(r.adapterId) as { status: string; dataset_id: string; path: string; metrics: string };
    expect(row).toMatchObject({ status: 'candidate', dataset_id: datasetId, path: r.adapterDir });
    expect(JSON.parse(row.metrics).steps).toBe(4);
    const rows = store.prepare("SELECT step, kind FROM train_metrics WHERE run_id = ? ORDER BY id").all(r.runId) as { step: number; kind: string }[];
    expect(rows.filter((x) => x.kind === 'train').map((x) => x.step)).toEqual([1, 2, 3, 4]);
    expect(rows.filter((x) => x.kind === 'eval').map((x) => x.step)).toEqual([0, 2, 4]);
    const jsonl = readFileSync(join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(jsonl).toHaveLength(rows.length);
  });

  it('trains padded micro-batches and stops early when the validation loss stops improving', async () => {
    // minDelta 1: no evaluation can count as an improvement after the first.
    const r = await trainAdapter(base('early', { batchSize: 3, gradAccum: 1, maxSteps: 20, evalEvery: 1, patience: 2, minDelta: 1 }));
    expect(r.stoppedEarly).toBe(true);
    expect(r.steps).toBe(3); // evals at steps 1 (best), 2 and 3 (no improvement twice)
    expect((r.metrics as { best_step: number }).best_step).toBe(1);
  });

  it('refuses an empty dataset', async () => {
    store.prepare("INSERT INTO datasets (id, origin) VALUES ('ds-empty', 'import')").run();
    expect(await codeOf(trainAdapter({ ...base('empty'), dataset: 'ds-empty' }))).toMatch(/^DATASET_EMPTY/);
    writeFileSync(join(root, 'empty.jsonl'), '\n{"messages": []}\n');
    expect(() => importDataset(store, join(root, 'empty.jsonl'))).toThrow(/no usable conversation/);
  });

  it('counts over-long examples: truncated, or skipped', async () => {
    writeFileSync(join(root, 'long.jsonl'), conversations(6, 8) + '\n' + conversations(3, 400));
    const longId = importDataset(store, join(root, 'long.jsonl')).id;
    const t = await trainAdapter({ ...base('long-t', { maxSteps: 1, maxSeqLen: 200 }), dataset: longId });
    const all = (t.metrics as { data: { train: { truncated: number }; validation: { truncated: number } } }).data;
    expect(all.train.truncated + all.validation.truncated).toBe(3);
    const s = await trainAdapter({ ...base('long-s', { maxSteps: 1, maxSeqLen: 200, overLong: 'skip' }), dataset: longId });
    const sk = (s.metrics as { data: { train: { skippedTooLong: number }; validation: { skippedTooLong: number } } }).data;
    expect(sk.train.skippedTooLong + sk.validation.skippedTooLong).toBe(3);
  });

  it('stops on a diverging loss and keeps the last good checkpoint', async () => {
    // Rates above 1 are refused up front; a LoRA scale of alpha/rank = 2.5e19 still overflows float32.
    const opts = base('nan', { lr: 1, alpha: 1e20, maxGradNorm: 0, saveEvery: 1, evalEvery: 0, maxSteps: 10, schedule: 'constant' });
    const before = store.prepare('SELECT COUNT(*) AS n FROM adapters').get() as { n: number };
    const msg = await codeOf(trainAdapter(opts));
    expect(msg).toMatch(/^TRAINING_DIVERGED: Training diverged at step \d+: the loss is (NaN|Infinity|-Infinity)/);
    const runs = readdirSync(join(root, 'nan', 'runs'));
    const state = JSON.parse(readFileSync(join(root, 'nan', 'runs', runs[0]!, 'checkpoint', 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(Number.isFinite(state.lastTrainLoss)).toBe(true);
    expect(store.prepare('SELECT COUNT(*) AS n FROM adapters').get()).toEqual(before);
  });

  it('never registers a half-written adapter when the disk is full', async () => {
    const before = store.prepare('SELECT COUNT(*) AS n FROM adapters').get() as { n: number };
    const fullDisk = {
      ...realFsWriter,
      writeSafetensors: () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
    };
    expect(await codeOf(trainAdapter({ ...base('full', { maxSteps: 2 }), fsWriter: fullDisk }))).toMatch(/^DISK_FULL/);
    expect(store.prepare('SELECT COUNT(*) AS n FROM adapters').get()).toEqual(before);
    expect(readdirSync(join(root, 'full', 'adapters'))).toEqual([]); // not even a temp folder left
  });

  it('an abort checkpoints and stops; --resume finishes the run', async () => {
    const ctl = new AbortController();
    const opts = base('abort', { maxSteps: 6, saveEvery: 100 });
    const msg = await codeOf(trainAdapter(opts, { signal: ctl.signal, onProgress: (p) => p.step === 3 && ctl.abort() }));
    expect(msg).toMatch(/^CANCELLED: Training stopped at step 3\/6/);
    const r = await trainAdapter({ ...opts, resume: true });
    expect(r.resumedFrom).toBe(3);
    expect(r.steps).toBe(6);
  });
});

describe('training refuses to register what it cannot judge', () => {
  const adapterRow = (id: string) => store.prepare('SELECT status, reason FROM adapters WHERE id = ?').get(id) as { status: string; reason: string | null } | undefined;
  const cli = async (args: string[], dir: string) => {
    const r = await runMorris(['train', '--model', modelDir, '--threads', '1', '--no-progress', ...args], {
      env: { ...process.env, MORRIS_DATA_DIR: join(dir, 'data'), MORRIS_MODELS_DIR: join(dir, 'models'), LOG_LEVEL: 'warn' },
    });
    return { code: r.code, out: r.stdout, err: r.stderr };
  };

  it('refuses an absurd learning rate up front, saying the accepted range', async () => {
    const msg = await codeOf(trainAdapter(base('lr', { lr: 1e9 })));
    expect(msg).toMatch(/^CONFIG_INVALID: Invalid training settings:\n {2}lr: expected a learning rate greater than 0 and at most 1/);
    expect(existsSync(join(root, 'lr'))).toBe(false); // nothing ran, nothing written
    expect(await codeOf(trainAdapter(base('lr0', { lr: 0 })))).toMatch(/lr: expected a learning rate greater than 0/);
    const r = await cli(['--lr', '1e9', '--dataset', datasetId], join(root, 'lr-cli'));
    expect(r.code, r.err).toBe(78);
    expect(r.err).toMatch(/lr: expected a learning rate greater than 0 and at most 1 \(LoRA usually trains at 1e-5 to 1e-3\)/);
  });

  it('a run that collapses to the uniform distribution is marked failed, not a candidate', async () => {
    // An accepted rate, but a LoRA scale of 2.5e7 drives every logit level: loss = ln(1024) exactly,
    // below the random model's 6.9352, so it once counted as an improvement.
    const r = await trainAdapter(base('collapse', { lr: 1, alpha: 1e8, maxGradNorm: 0, maxSteps: 10, evalEvery: 0, schedule: 'constant' }));
    expect((r.metrics as { eval_loss: number }).eval_loss).toBeCloseTo(Math.log(1024), 4);
    expect(r.verdict).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^collapsed to the uniform distribution: validation loss 6\.9315 ≈ ln\(vocab 1024\)/) });
    expect(adapterRow(r.adapterId)).toEqual({ status: 'failed', reason: r.verdict.reason });
    expect(JSON.parse(readFileSync(join(r.adapterDir, 'metrics.json'), 'utf8')).verdict).toEqual({ status: 'failed', reason: r.verdict.reason });
  });

  it('judges collapse, no improvement and success from the losses', () => {
    const o = { datasetId: 'ds-x', vocabSize: 49152, lr: 1e-4 };
    const lnV = Math.log(49152);
    expect(judgeTraining({ ...o, initialValLoss: 2.5, finalValLoss: 2.1 })).toEqual({ status: 'candidate', reason: 'validation loss 2.5000 → 2.1000' });
    expect(judgeTraining({ ...o, initialValLoss: 2.5, finalValLoss: lnV + 1e-5 })).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^collapsed to the uniform distribution/), hint: expect.stringMatching(/Lower the learning rate \(now 0\.0001/) });
    // Below the untrained loss but at ln(vocab): a collapse, not an improvement.
    expect(judgeTraining({ ...o, initialValLoss: lnV + 0.01, finalValLoss: lnV }).status).toBe('failed');
    expect(judgeTraining({ ...o, initialValLoss: 2.5, finalValLoss: 2.5 })).toMatchObject({ status: 'failed', reason: "no improvement: validation loss 2.5000 is not below the untrained model's 2.5000" });
    expect(judgeTraining({ ...o, initialValLoss: 2.5, finalValLoss: 3 }).status).toBe('failed');
    expect(judgeTraining({ ...o, initialValLoss: null, finalValLoss: null })).toMatchObject({ status: 'unregistered', hint: expect.stringContaining('"split": "validation"') });
  });

  it('a dataset with no validation split: the adapter is saved, not registered, and the message says how to get one', async () => {
    writeFileSync(join(root, 'one.jsonl'), conversations(1));
    const dir = join(root, 'noval');
    const s = openStore(join(dir, 'data', 'morris.db'));
    const imported = importDataset(s, join(root, 'one.jsonl'));
    s.close();
    expect(imported).toMatchObject({ train: 1, validation: 0 });
    const id = importDataset(store, join(root, 'one.jsonl')).id;
    const r = await trainAdapter({ ...base('noval', { maxSteps: 2 }), dataset: id });
    expect(r.verdict).toMatchObject({ status: 'unregistered', reason: `dataset ${id} has no usable validation example, so nothing can judge the adapter` });
    expect(existsSync(join(r.adapterDir, 'adapter_model.safetensors'))).toBe(true);
    expect(adapterRow(r.adapterId)).toBeUndefined();
    // The CLI says so, and how to get a validation split; its exit code tells scripts there is nothing to promote.
    const c = await cli(['--dataset', id, '--steps', '2'], dir);
    expect(c.code, c.err).toBe(1);
    expect(c.out).toMatch(/^adapter lora-\S+ \(saved, not registered\) → /);
    expect(c.out).toMatch(/no validation split/);
    expect(c.out).not.toMatch(/validation loss - → -/);
    expect(c.err).toMatch(/morris: adapter not registered: dataset ds-\w+ has no usable validation example/);
    expect(c.err).toMatch(/"split": "validation".*morris dataset build/s);
  });
});

describe('kill -9 and --resume', () => {
  const settings = { steps: 120, saveEvery: 5 };
  const args = (extra: string[]) => [
    MORRIS_BIN, 'train', '--model', modelDir, '--dataset', datasetId, '--steps', String(settings.steps),
    '--save-every', String(settings.saveEvery), '--epochs', '1000', '--eval-every', '10', '--rank', '4', '--alpha', '8', '--grad-accum', '2', '--lr', '1e-3',
    '--threads', '1', '--no-progress', ...extra,
  ];
  const env = (dir: string) => ({ ...process.env, MORRIS_DATA_DIR: join(dir, 'data'), MORRIS_MODELS_DIR: join(dir, 'models'), LOG_LEVEL: 'warn' });

  function run(extra: string[], dir: string, killWhen?: () => boolean): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, args(extra), { cwd: REPO_ROOT, env: env(dir), stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = killWhen ? setInterval(() => killWhen() && child.kill('SIGKILL'), 20) : undefined;
      child.on('exit', (code, signal) => {
        clearInterval(timer);
        done({ code, signal, stderr });
      });
    });
  }

  it('reaches the same final adapter as an uninterrupted run', async () => {
    const killed = join(root, 'killed');
    const clean = join(root, 'clean');
    for (const d of [killed, clean]) {
      const s = openStore(join(d, 'data', 'morris.db'));
      importDataset(s, join(root, 'ds.jsonl'));
      s.close();
    }
    const checkpointStep = () => {
      const runs = join(killed, 'data', 'runs');
      if (!existsSync(runs)) return 0;
      // loadCheckpoint also finds checkpoint.old when the kill fell between its two renames.
      for (const r of readdirSync(runs)) {
        try {
          const step = loadCheckpoint(join(runs, r))?.state.step;
          if (step !== undefined) return step;
        } catch (e) {
          // The folder was renamed under us while reading: poll again.
          if (e instanceof MorrisError) return 0;
          throw e;
        }
      }
      return 0;
    };
    const first = await run(['--out', join(killed, 'out')], killed, () => checkpointStep() >= 10);
    expect(first.stderr).not.toMatch(/morris: /);
    expect(first.signal).toBe('SIGKILL');
    const at = checkpointStep();
    expect(at).toBeGreaterThanOrEqual(10);
    expect(at).toBeLessThan(settings.steps);
    expect(existsSync(join(killed, 'out'))).toBe(false);

    const resumed = await run(['--out', join(killed, 'out'), '--resume'], killed);
    expect(resumed.stderr).not.toMatch(/morris: /);
    expect(resumed.code).toBe(0);
    const uninterrupted = await run(['--out', join(clean, 'out')], clean);
    expect(uninterrupted.code).toBe(0);
    const a = readFileSync(join(killed, 'out', 'adapter_model.safetensors'));
    const b = readFileSync(join(clean, 'out', 'adapter_model.safetensors'));
    expect(a.length).toBe(b.length);
    expect(a.equals(b)).toBe(true);
  });
});
