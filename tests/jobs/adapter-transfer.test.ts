/**
 * `morris adapters import DIR` and `export` (issue 18): a PEFT adapter trained elsewhere is checked
 * against the base model, registered as a candidate and put through the same evaluation gate as one
 * trained here (a real evaluate job, in its worker, on a real tiny model and dataset); adapters for
 * another base, damaged files and unsupported modules are refused with clear errors and nothing is
 * registered; an export is the PEFT folder vLLM loads, with the command to serve it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { register as registerAdapters } from '../../src/cli/adapters.ts';
import { createCliContext } from '../../src/cli/context.ts';
import { setConfigForTests } from '../../src/config.ts';
import { isMorrisError } from '../../src/errors.ts';
import { readDecoderConfig, type DecoderConfig } from '../../src/model/checkpoint/config.ts';
import { moduleShape, peftKey } from '../../src/model/checkpoint/lora.ts';
import { writeSafetensors, type TensorToWrite } from '../../src/model/checkpoint/safetensors.ts';
import type { LoraModule } from '../../src/model/graph/llama.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { adapterConfigJson } from '../../src/model/train/peft.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { findAdapter, listAdapters } from '../../src/store/adapters.ts';
import { openStore } from '../../src/store/db.ts';
import { listRuns } from '../../src/store/job-runs.ts';

let root: string;
let baseDir: string;
let cfg: DecoderConfig;

/** A PEFT folder as another trainer would write it; `over` bends one thing to make it wrong. */
function peftAdapter(
  name: string,
  over: { baseModel?: string; targets?: string[]; hidden?: number; value?: (i: number) => number; truncate?: boolean } = {},
): string {
  const dir = path.join(root, 'elsewhere', name);
  fs.mkdirSync(dir, { recursive: true });
  const targets = (over.targets ?? ['q_proj', 'v_proj']) as LoraModule[];
  const config = adapterConfigJson(over.baseModel ?? 'someone/tiny', { rank: 4, alpha: 8, dropout: 0, targets });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config));
  const tensors: Record<string, TensorToWrite> = {};
  const shapeCfg = { ...cfg, hiddenSize: over.hidden ?? cfg.hiddenSize };
  for (let layer = 0; layer < cfg.numLayers; layer++) {
    for (const m of targets.filter((t) => t !== ('lm_head' as LoraModule))) {
      const { inF, outF } = moduleShape(shapeCfg, m);
      const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => (over.value ?? ((j) => Math.sin(j + layer) * 0.5))(i));
      tensors[peftKey(layer, m, 'A')] = { dtype: 'F32', shape: [4, inF], data: fill(4 * inF) };
      tensors[peftKey(layer, m, 'B')] = { dtype: 'F32', shape: [outF, 4], data: fill(outF * 4) };
    }
  }
  const file = path.join(dir, 'adapter_model.safetensors');
  writeSafetensors(file, tensors);
  if (over.truncate) fs.truncateSync(file, fs.statSync(file).size - 100);
  return dir;
}

/** The command in this process (the CLI's wiring): what it printed, or the error it threw. */
async function morris(...args: string[]): Promise<{ out: string; error?: unknown }> {
  const program = new Command('morris').exitOverride();
  const ctx = createCliContext();
  registerAdapters(program, ctx);
  const out: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await program.parseAsync(['node', 'morris', ...args]);
    return { out: out.join('\n') };
  } catch (error) {
    return { out: out.join('\n'), error };
  } finally {
    spy.mockRestore();
    err.mockRestore();
    ctx.close();
  }
}

const registered = () => {
  const store = openStore(path.join(root, 'data', 'morris.db'));
  try {
    return listAdapters(store).map((a) => a.id);
  } finally {
    store.close();
  }
};

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-adapter-transfer-'));
  baseDir = path.join(root, 'models', 'tiny');
  initTinyModel(baseDir, { seed: 11, dims: { hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2 } });
  cfg = readDecoderConfig(baseDir);
  setConfigForTests({
    MORRIS_DATA_DIR: path.join(root, 'data'),
    MORRIS_MODELS_DIR: path.join(root, 'models'),
    MORRIS_BASE_MODEL: baseDir,
    MORRIS_MAX_SEQ_TOKENS: '256',
    MORRIS_MAX_NEW_TOKENS: '24',
    MORRIS_TRAIN_THREADS: '1',
    MORRIS_COLUMNISTS_DIR: path.join(root, 'columnists'),
    LOG_LEVEL: 'warn',
  });
  // Two voices: the default one, and a rival that vLLM would serve under its own LoRA module name.
  fs.cpSync(path.resolve('data/columnists/morris'), path.join(root, 'columnists', 'morris'), { recursive: true });
  fs.mkdirSync(path.join(root, 'columnists', 'rival'), { recursive: true });
  fs.writeFileSync(path.join(root, 'columnists', 'rival', 'columnist.json'), JSON.stringify({ displayName: 'Rival', attribution: 'a rival columnist', openaiModel: 'rival-lora' }));
  fs.mkdirSync(path.join(root, 'data'), { recursive: true });
  const jsonl = path.join(root, 'ds.jsonl');
  const line = (topic: string, split: string) =>
    JSON.stringify({ messages: [{ role: 'user', content: `Write a column about ${topic}.` }, { role: 'assistant', content: `${topic}: the usual disaster, again.` }], split });
  fs.writeFileSync(jsonl, ['fibre', 'towers', 'spectrum', 'roaming'].map((t, i) => line(t, i < 3 ? 'train' : 'validation')).join('\n'));
  const store = openStore(path.join(root, 'data', 'morris.db'));
  importDataset(store, jsonl);
  const rivalJsonl = path.join(root, 'ds-rival.jsonl'); // its own lines: an identical file would be the same dataset
  fs.writeFileSync(rivalJsonl, ['budgets', 'mergers', 'outages', 'pricing'].map((t, i) => line(t, i < 3 ? 'train' : 'validation')).join('\n'));
  importDataset(store, rivalJsonl, undefined, { columnist: 'rival' });
  store.close();
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('morris adapters import / export', () => {
  it('refuses an adapter for another base (shapes or model id), a damaged file, NaN weights and an unsupported module; registers nothing', async () => {
    const cases: [string, string, RegExp][] = [
      [peftAdapter('wider', { hidden: 48 }), 'ADAPTER_MISMATCH', /lora_A \[4, 48\].*this base needs \[4, 32\]/],
      [peftAdapter('llama', { baseModel: 'meta-llama/Meta-Llama-3-8B' }), 'ADAPTER_MISMATCH', /trained for meta-llama\/Meta-Llama-3-8B; Morris serves/],
      [peftAdapter("truncated", { truncate: true }), "MODEL_INVALID", /^Corrupt safetensors file/],
      [peftAdapter('nan', { value: (i) => (i === 3 ? NaN : 0.1) }), 'MODEL_INVALID', /NaN or infinite/],
      [peftAdapter('head', { targets: ['q_proj', 'lm_head'] }), 'MODEL_UNSUPPORTED', /target module lm_head is not supported/],
      [path.join(root, 'no-such-folder'), 'NOT_FOUND', /has no adapter_config\.json/],
    ];
    for (const [dir, code, message] of cases) {
      const { error } = await morris('adapters', 'import', dir, '--no-evaluate');
      expect(isMorrisError(error) && error.code, dir).toBe(code);
      expect((error as Error).message, dir).toMatch(message);
    }
    expect(registered()).toEqual([]);
  });

  it('imports a fitting adapter as a candidate and runs the gate on it; a losing one stays a candidate with the reason', async () => {
    // All-zero weights: the adapter is the base model itself, so it cannot beat it by the margin.
    const { out, error } = await morris('adapters', 'import', peftAdapter('good', { baseModel: 'acme/tiny', value: () => 0 }));
    expect(error).toBeUndefined();
    const id = /Imported (import-\d{14}-[0-9a-f]{6}) \(LoRA r 4, alpha 8, q_proj, v_proj\) as a candidate\./.exec(out)?.[1];
    expect(id, out).toBeDefined();
    expect(out, out).toMatch(/Evaluation: not promoted: .*does not beat/);
    const store = openStore(path.join(root, 'data', 'morris.db'));
    try {
      const row = findAdapter(store, id!)!;
      expect(row).toMatchObject({ status: 'candidate', base_model: 'acme/tiny' });
      expect(row.reason).toMatch(/does not beat/);
      expect(row.eval).toBeTruthy();
      expect(fs.readFileSync(path.join(row.path, 'adapter_model.safetensors'))).toEqual(fs.readFileSync(path.join(root, 'elsewhere', 'good', 'adapter_model.safetensors')));
    } finally {
      store.close();
    }

    // Export: the PEFT files, byte for byte, and how to serve them with vLLM.
    const outDir = path.join(root, 'export');
    const exported = await morris('adapters', 'export', id!, '--out', outDir, '--name', 'iain');
    expect(exported.error).toBeUndefined();
    expect(exported.out).toContain(`--enable-lora --max-lora-rank 8 --lora-modules iain=${outDir}`);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
      expect(fs.readFileSync(path.join(outDir, f))).toEqual(fs.readFileSync(path.join(root, 'elsewhere', 'good', f)));
    }
    const none = await morris('adapters', 'export', 'active', '--out', outDir);
    expect((none.error as Error).message).toMatch(/No adapter is active/);
  }, 180_000);

  it('imports into another voice: the gate runs as that voice\'s job, and its export names its own LoRA module', async () => {
    const { out, error } = await morris('adapters', 'import', peftAdapter('rivals', { baseModel: 'acme/tiny', value: () => 0 }), '--columnist', 'rival');
    expect(error).toBeUndefined();
    const id = /Imported (import-\d{14}-[0-9a-f]{6}) .* as a candidate of rival\./.exec(out)?.[1];
    expect(id, out).toBeDefined();
    expect(out, out).toMatch(/Evaluation: not promoted/);
    const store = openStore(path.join(root, 'data', 'morris.db'));
    try {
      expect(findAdapter(store, id!)).toMatchObject({ columnist: 'rival', status: 'candidate' });
      // The run is the rival's (its status, its blocking), not the default voice's.
      const rivals = listRuns(store, { job: 'evaluate', columnist: 'rival' });
      expect(rivals.map((r) => [r.status, (r.input as { adapterId?: string }).adapterId])).toEqual([['succeeded', id]]);
      expect(listRuns(store, { job: 'evaluate', columnist: 'morris' }).map((r) => (r.input as { adapterId?: string }).adapterId)).not.toContain(id);
    } finally {
      store.close();
    }
    const outDir = path.join(root, 'export-rival');
    const exported = await morris('adapters', 'export', id!, '--out', outDir, '--columnist', 'rival');
    expect(exported.error).toBeUndefined();
    expect(exported.out).toContain(`--lora-modules rival-lora=${outDir}`);
    expect(exported.out).toContain(`"openaiModel": "rival-lora" in rival's columnist.json`);
  }, 180_000);
});
