/**
 * DPO training on a tiny random model: a PEFT adapter with the preference figures, a reference
 * adapter as starting point, bad input counted (identical pairs, pairs longer than the context),
 * a NaN loss stopping with the last good checkpoint, and kill -9 + --resume through the real CLI
 * giving the same adapter as an uninterrupted run.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { trainDpo, type DpoOptions } from '../../src/model/train/dpo.ts';
import { loadCheckpoint } from '../../src/model/train/checkpoint.ts';
import type { PairCounts, PreferenceRecord } from '../../src/model/train/pairs.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { MORRIS_BIN, REPO_ROOT, runMorris } from '../morris-cli.ts';

let root: string;
let modelDir: string;
let store: Store;

function records(n: number, words = 6): PreferenceRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: [
      { role: 'system' as const, content: 'You write short columns.' },
      { role: 'user' as const, content: `Write a column about the ${i}th train.` },
    ],
    chosen: [{ role: 'assistant' as const, content: `The ${i}th train was ${Array.from({ length: words }, (_, k) => `bright${k % 5}`).join(' ')}.` }],
    rejected: [{ role: 'assistant' as const, content: `The ${i}th train was ${Array.from({ length: words }, (_, k) => `grey${k % 5}`).join(' ')}.` }],
  }));
}
const jsonl = (rs: readonly PreferenceRecord[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'morris-dpo-'));
  modelDir = join(root, 'tiny');
  initTinyModel(modelDir, { seed: 5, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
  store = openStore(join(root, 'data', 'morris.db'));
});
afterAll(() => {
  store.close();
  rmSync(root, { recursive: true, force: true });
});

const base = (name: string, rs: readonly PreferenceRecord[], settings: Record<string, unknown> = {}, referenceDir: string | null = null): DpoOptions => ({
  store,
  modelDir,
  referenceDir,
  records: rs,
  pairsSource: 'test',
  runsDir: join(root, name, 'runs'),
  adaptersDir: join(root, name, 'adapters'),
  settings: { threads: 1, rank: 4, alpha: 8, gradAccum: 2, lr: 1e-2, dpoBeta: 0.5, dropout: 0, evalEvery: 5, saveEvery: 5, maxSteps: 15, ...settings },
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

describe('trainDpo', () => {
  it('learns the preference from the base model, then continues from a reference adapter', async () => {
    const r = await trainDpo(base('plain', records(12)));
    expect(r.verdict.status).toBe('candidate');
    const m = r.metrics as { eval_loss_initial: number; eval_loss: number; method: string; dpo: { preference_accuracy: number; reference: string } };
    // Step 0 is the reference itself: every held-out pair a coin toss.
    expect(m.eval_loss_initial).toBeCloseTo(Math.LN2, 5);
    expect(r.preference.initial).toBe(0.5);
    expect(m.eval_loss).toBeLessThan(0.5 * Math.LN2);
    expect(r.preference.final).toBe(1);
    expect(m).toMatchObject({ method: 'dpo', dpo: { reference: 'base', preference_accuracy: 1 } });
    expect(existsSync(join(r.adapterDir, 'adapter_model.safetensors'))).toBe(true);

    // The trained adapter as the reference: its shape wins over the settings, training starts from
    // its weights (held-out loss ln 2 again), and the new adapter records it.
    const again = await trainDpo(base('continued', records(12), { rank: 8, alpha: 3 }, r.adapterDir));
    const cfg = JSON.parse(readFileSync(join(again.adapterDir, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number };
    expect(cfg).toMatchObject({ r: 4, lora_alpha: 8 });
    expect((again.metrics as { eval_loss_initial: number }).eval_loss_initial).toBeCloseTo(Math.LN2, 5);
    expect((again.metrics as { dpo: { reference: string } }).dpo.reference).toBe(r.adapterDir);
  });

  it('skips and counts identical pairs and pairs longer than the context, by the SFT rule', async () => {
    const same: PreferenceRecord = { prompt: records(1)[0]!.prompt, chosen: [{ role: 'assistant', content: 'Same words.' }], rejected: [{ role: 'assistant', content: '  Same words. ' }] };
    const rs = [...records(8), same, same, ...records(3, 200).map((r, i) => ({ ...r, prompt: [{ role: 'user' as const, content: `Long ${i}` }] }))];
    const t = await trainDpo(base('long-t', rs, { maxSeqLen: 120, maxSteps: 1 }));
    const counts = (c: { train: PairCounts; heldOut: PairCounts }, k: keyof PairCounts) => c.train[k] + c.heldOut[k];
    expect(counts(t.counts, 'skippedIdentical')).toBe(2);
    expect(counts(t.counts, 'truncated')).toBe(3);
    expect(counts(t.counts, 'kept')).toBe(11);
    const s = await trainDpo(base('long-s', rs, { maxSeqLen: 120, maxSteps: 1, overLong: 'skip' }));
    expect(counts(s.counts, 'skippedTooLong')).toBe(3);
    expect(counts(s.counts, 'kept')).toBe(8);
    expect(await codeOf(trainDpo(base('none', [same, same])))).toMatch(/^DATASET_EMPTY: No usable preference pair .*2 with the same chosen and rejected text/);
  });

  it('stops on a NaN loss and keeps the last good checkpoint', async () => {
    // A LoRA scale of alpha/rank = 2.5e19 overflows float32 once B moves off zero.
    const msg = await codeOf(trainDpo(base('nan', records(12), { lr: 1, alpha: 1e20, maxGradNorm: 0, saveEvery: 1, evalEvery: 0, maxSteps: 10, schedule: 'constant' })));
    expect(msg).toMatch(/^TRAINING_DIVERGED: Training diverged at step \d+: the loss is (NaN|Infinity|-Infinity)/);
    const runs = readdirSync(join(root, 'nan', 'runs'));
    const state = JSON.parse(readFileSync(join(root, 'nan', 'runs', runs[0]!, 'checkpoint', 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(Number.isFinite(state.lastTrainLoss)).toBe(true);
  });
});

describe('morris train --method dpo', () => {
  const cli = async (args: string[], dir: string, extraEnv: Record<string, string> = {}) => {
    const r = await runMorris(['train', '--method', 'dpo', '--model', modelDir, '--threads', '1', '--no-progress', '--steps', '4', '--rank', '4', '--alpha', '8', ...args], {
      env: { ...process.env, MORRIS_DATA_DIR: join(dir, 'data'), MORRIS_MODELS_DIR: join(dir, 'models'), LOG_LEVEL: 'warn', ...extraEnv },
    });
    return { code: r.code, out: r.stdout, err: r.stderr };
  };

  it('--pairs latest trains on the pairs readers made; a missing reference or pairs file says what to give', async () => {
    const dir = join(root, 'cli-latest');
    const { importPreferenceLines } = await import('../../src/pipeline/dataset/preferences.ts');
    const s = openStore(join(dir, 'data', 'morris.db'));
    importPreferenceLines(s, jsonl(records(12)));
    s.close();
    // `latest` renders each pair's prompt as generation asked it: the long serving system prompt.
    const short = await cli(['--adapter', 'none', '--pairs', 'latest', '--max-seq-len', '256'], dir);
    expect(short.code).toBe(1);
    expect(short.err).toMatch(/No usable preference pair to train on \(12 pairs: 0 kept, .* 12 cut to the context, 12 without an assistant reply\)[\s\S]*raise maxSeqLen/);
    const ok = await cli(['--adapter', 'none', '--pairs', 'latest', '--max-seq-len', '2048', '--out', join(dir, 'out')], dir);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^adapter lora-\S+ \(DPO for morris, candidate\) → /);
    expect(ok.out).toMatch(/reference base model; \d+ steps on cpu/);
    expect(ok.out).toMatch(/train pairs: \d+ pairs: \d+ kept, 0 with the same chosen and rejected text/);
    expect(ok.out).toMatch(/held-out preference accuracy 0\.500 → \d\.\d{3} \(\d+ pairs\)/);
    expect(existsSync(join(dir, 'out', 'adapter_model.safetensors'))).toBe(true);
    // DPO trains without dropout unless asked (TRL's disable_dropout): step 0 is the reference exactly.
    expect(JSON.parse(readFileSync(join(dir, 'out', 'adapter_config.json'), 'utf8'))).toMatchObject({ lora_dropout: 0 });
    const noRef = await cli(['--pairs', 'latest'], dir);
    expect(noRef.code).toBe(1);
    expect(noRef.err).toMatch(/DPO needs a reference: --adapter DIR .* or --adapter none/);
    const noFile = await cli(['--adapter', 'none', '--pairs', join(dir, 'missing.jsonl')], dir);
    expect(noFile.code).toBe(1);
    expect(noFile.err).toMatch(/No pairs file .*missing\.jsonl/);
    writeFileSync(join(dir, 'bad.jsonl'), '{"prompt": [], "chosen": "x"}\n');
    const bad = await cli(['--adapter', 'none', '--pairs', join(dir, 'bad.jsonl')], dir);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/bad\.jsonl line 1: prompt must be a non-empty list of messages/);
  });

  it("--columnist trains a voice on readers' pairs on its own articles, with its style guide, into its own line", async () => {
    const dir = join(root, 'cli-voice');
    const columnists = join(dir, 'columnists');
    cpSync(join(COLUMNISTS_DIR, 'morris'), join(columnists, 'morris'), { recursive: true });
    mkdirSync(join(columnists, 'house', 'sources'), { recursive: true });
    writeFileSync(join(columnists, 'house', 'columnist.json'), JSON.stringify({ displayName: 'House', attribution: 'the house style' }));
    writeFileSync(join(columnists, 'house', 'system-prompt.md'), 'Plain and short.\n');
    const { importPreferenceLines } = await import('../../src/pipeline/dataset/preferences.ts');
    const s = openStore(join(dir, 'data', 'morris.db'));
    importPreferenceLines(s, jsonl(records(10)), 'house', 'house');
    importPreferenceLines(s, jsonl(records(30).slice(10)), 'morris');
    s.prepare(`INSERT INTO adapters (id, base_model, path, status, metrics, columnist) VALUES ('lora-morris', 'tiny', ?, 'candidate', '{}', 'morris')`).run(join(dir, 'nowhere'));
    s.close();
    const env = { MORRIS_COLUMNISTS_DIR: columnists };
    // 256 tokens: room for the house's one-line style guide, not for the default voice's long one
    // (the test above: every pair cut to nothing), so this also shows whose prompt the pairs get.
    const house = await cli(['--columnist', 'house', '--adapter', 'none', '--pairs', 'latest', '--max-seq-len', '256'], dir, env);
    expect(house.code, house.err).toBe(0);
    expect(house.out).toMatch(/^adapter (lora-\S+) \(DPO for house, candidate\) → /);
    // The house's 10 pairs only (the default voice's 20 are not its own): kept + held out = 10.
    const kept = [...house.out.matchAll(/(?:train|held-out) pairs: (\d+) pairs/g)].map((m) => Number(m[1]));
    expect(kept.reduce((a, b) => a + b, 0)).toBe(10);
    const id = /^adapter (lora-\S+)/.exec(house.out)![1]!;
    const after = openStore(join(dir, 'data', 'morris.db'));
    try {
      expect(after.prepare('SELECT columnist FROM adapters WHERE id = ?').get(id)).toEqual({ columnist: 'house' });
    } finally {
      after.close();
    }
    // Another voice's adapter is no reference for this one; an unknown voice lists the known ones.
    const other = await cli(['--columnist', 'house', '--adapter', 'lora-morris', '--pairs', 'latest'], dir, env);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/Adapter lora-morris is morris's, not house's[\s\S]*--columnist morris/);
    const unknown = await cli(['--columnist', 'nobody', '--adapter', 'none', '--pairs', 'latest'], dir, env);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/No columnist named "nobody"\. Known columnists: house, morris\./);
  });
});

describe('DPO: kill -9 and --resume', () => {
  const steps = 60;
  const args = (pairs: string, extra: string[]) => [
    MORRIS_BIN, 'train', '--method', 'dpo', '--model', modelDir, '--adapter', 'none', '--pairs', pairs, '--steps', String(steps),
    '--save-every', '5', '--epochs', '1000', '--eval-every', '10', '--rank', '4', '--alpha', '8', '--grad-accum', '2', '--lr', '1e-3', '--beta', '0.5',
    '--threads', '1', '--no-progress', ...extra,
  ];
  const env = (dir: string) => ({ ...process.env, MORRIS_DATA_DIR: join(dir, 'data'), MORRIS_MODELS_DIR: join(dir, 'models'), LOG_LEVEL: 'warn' });

  function run(pairs: string, extra: string[], dir: string, killWhen?: () => boolean): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, args(pairs, extra), { cwd: REPO_ROOT, env: env(dir), stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let stdout = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.stdout.on('data', (d) => (stdout += d));
      const timer = killWhen ? setInterval(() => killWhen() && child.kill('SIGKILL'), 20) : undefined;
      child.on('exit', (code, signal) => {
        clearInterval(timer);
        done({ code, signal, stderr, stdout });
      });
    });
  }

  it('reaches the same final adapter as an uninterrupted run', async () => {
    const pairs = join(root, 'pairs.jsonl');
    writeFileSync(pairs, jsonl(records(12)));
    const killed = join(root, 'killed');
    const clean = join(root, 'clean');
    const checkpointStep = () => {
      const runs = join(killed, 'data', 'runs');
      if (!existsSync(runs)) return 0;
      for (const r of readdirSync(runs)) {
        try {
          const step = loadCheckpoint(join(runs, r))?.state.step;
          if (step !== undefined) return step;
        } catch (e) {
          if (e instanceof MorrisError) return 0; // renamed under us while reading: poll again
          throw e;
        }
      }
      return 0;
    };
    const first = await run(pairs, ['--out', join(killed, 'out')], killed, () => checkpointStep() >= 10);
    expect(first.stderr).not.toMatch(/morris: /);
    expect(first.signal).toBe('SIGKILL');
    const at = checkpointStep();
    expect(at).toBeGreaterThanOrEqual(10);
    expect(at).toBeLessThan(steps);
    expect(existsSync(join(killed, 'out'))).toBe(false);

    const resumed = await run(pairs, ['--out', join(killed, 'out'), '--resume'], killed);
    expect(resumed.stderr).not.toMatch(/morris: /);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/resumed from step \d+/);
    expect(resumed.stdout).toMatch(/held-out preference accuracy 0\.500 → /);
    const uninterrupted = await run(pairs, ['--out', join(clean, 'out')], clean);
    expect(uninterrupted.code).toBe(0);
    const a = readFileSync(join(killed, 'out', 'adapter_model.safetensors'));
    const b = readFileSync(join(clean, 'out', 'adapter_model.safetensors'));
    expect(a.equals(b)).toBe(true);
  });
});
