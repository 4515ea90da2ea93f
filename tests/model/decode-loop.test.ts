/**
 * The one decode loop: the same greedy tokens over native and ONNX Runtime steps (tiny model and
 * stories260K), generation_config.json's logits rules obeyed by the engine, and transformers.js's
 * generate (the GPU path, run here on the CPU) choosing the same tokens as our loop.
 */
import { BaseStreamer } from '@huggingface/transformers';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32, writeRandomCheckpoint } from '../../src/model/checkpoint/random-checkpoint.ts';
import { compileModel } from '../../src/model/graph/compile.ts';
import { decodeLoop, type Generation } from '../../src/model/inference/decode-loop.ts';
import { loadModel, type LoadedModel, type SamplingOptions } from '../../src/model/inference/engine.ts';
import { generateLoop, loadGenerateModel } from '../../src/model/inference/generate-loop.ts';
import { applyLogitsRules, parseLogitsRules, readGenerationConfig, stopTokenIds } from '../../src/model/inference/logits-rules.ts';
import { onnxSteps } from '../../src/model/inference/onnx-steps.ts';
import { createSession } from '../../src/model/inference/runtime.ts';
import { chooseToken } from '../../src/model/inference/sampling.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-loop-'));
const cacheDir = join(root, 'cache');
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The seeded tiny model of engine.test.ts: byte tokenizer, PROMPT's greedy continuation pinned there.
const config = {
  model_type: 'llama', hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  vocab_size: 300, max_position_embeddings: 256, rms_norm_eps: 1e-5, tie_word_embeddings: true, eos_token_id: 258,
};
const PROMPT = 'The quick brown fox';
const PINNED_IDS = [127, 29, 269, 68, 184, 280, 274, 246, 140, 269, 44, 262];
const greedy: SamplingOptions = { maxNewTokens: 12, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1 };

/** A tiny model folder whose generation_config.json is `generation` (none when null). */
function tinyModel(name: string, generation: Record<string, unknown> | null): string {
  const dir = join(root, name);
  writeRandomCheckpoint(dir, { config, seed: 1234, std: 0.3 }, { tokenizer: true });
  if (generation) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(generation));
  return dir;
}

async function idsOf(m: LoadedModel, opts: SamplingOptions, text = PROMPT): Promise<number[]> {
  for await (const _ of m.stream({ text }, opts));
  return m.lastStats!.tokenIds;
}

/** Loads the model twice, native and ONNX Runtime steps, and returns both greedy id lists (checked equal). */
async function bothKernels(modelDir: string, opts: SamplingOptions = greedy): Promise<number[]> {
  const got: number[][] = [];
  for (const decodeKernel of ['native', 'onnx'] as const) {
    const m = await loadModel({ modelDir, cacheDir, device: 'cpu', decodeKernel });
    try {
      expect(m.info.decodeLoop).toBe('morris');
      expect(m.info.decodeKernel).toMatch(decodeKernel === 'native' ? /^native-/ : /^onnx$/);
      got.push(await idsOf(m, opts));
    } finally {
      await m.dispose();
    }
  }
  expect(got[1]).toEqual(got[0]);
  return got[0]!;
}

describe('our loop over native and ONNX Runtime steps', () => {
  it('gives the same greedy tokens on the tiny model: the pinned ones', async () => {
    expect(await bothKernels(tinyModel('plain', null))).toEqual(PINNED_IDS);
  });

  const STORIES = resolve(import.meta.dirname, '../../../shared/models/stories260K');
  it.skipIf(!existsSync(join(STORIES, 'GOLDEN.json')))('gives the same greedy tokens on stories260K: the golden ones', async () => {
    const golden = JSON.parse(readFileSync(join(STORIES, 'GOLDEN.json'), 'utf8')) as { prompts: { prompt: string; continuation_ids: number[] }[] };
    const models = await Promise.all((['native', 'onnx'] as const).map((decodeKernel) => loadModel({ modelDir: STORIES, cacheDir, device: 'cpu', decodeKernel })));
    try {
      for (const p of golden.prompts) {
        const opts = { ...greedy, maxNewTokens: p.continuation_ids.length };
        const [native, onnx] = [await idsOf(models[0]!, opts, p.prompt), await idsOf(models[1]!, opts, p.prompt)];
        expect(native).toEqual(p.continuation_ids);
        expect(onnx).toEqual(native);
      }
    } finally {
      for (const m of models) await m.dispose();
    }
  });
});

describe("generation_config.json's logits rules through the engine", () => {
  it('min_new_tokens keeps a stop token back until that many tokens are out', async () => {
    const stop = PINNED_IDS[3]!; // first generated 4th: without the rule generation ends there
    expect(await bothKernels(tinyModel('stop', { eos_token_id: stop }))).toEqual(PINNED_IDS.slice(0, 4));
    const ids = await bothKernels(tinyModel('min-new', { eos_token_id: stop, min_new_tokens: 6 }));
    expect(ids.slice(0, 3)).toEqual(PINNED_IDS.slice(0, 3)); // nothing changes before the stop token would come
    expect(ids.slice(0, 6)).not.toContain(stop);
    expect(ids.length).toBeGreaterThan(6);
  });

  it('bad_words_ids bans single tokens and token sequences', async () => {
    const single = PINNED_IDS[1]!;
    const pair = [PINNED_IDS[0]!, PINNED_IDS[1]!];
    const ids = await bothKernels(tinyModel('bad-words', { bad_words_ids: [[single]] }), { ...greedy, maxNewTokens: 40 });
    expect(ids[0]).toBe(PINNED_IDS[0]);
    expect(ids).not.toContain(single);
    const pairIds = await bothKernels(tinyModel('bad-pair', { bad_words_ids: [pair] }), { ...greedy, maxNewTokens: 40 });
    expect(pairIds[0]).toBe(pair[0]);
    expect(pairIds[1]).not.toBe(pair[1]);
    expect(pairIds.slice(1).some((t, i) => pairIds[i] === pair[0] && t === pair[1])).toBe(false);
  });

  it("a GPU provider that cannot start falls back to the CPU and our loop, the native kernel included", async () => {
    const m = await loadModel({ modelDir: tinyModel('gpu', null), cacheDir, device: 'cuda', decodeKernel: 'native' });
    try {
      expect(m.info).toMatchObject({ device: 'cpu', decodeLoop: 'morris', decodeKernel: expect.stringMatching(/^native-/) });
      expect(await idsOf(m, greedy)).toEqual(PINNED_IDS);
    } finally {
      await m.dispose();
    }
  });

  it('a setting we do not apply is refused at load, naming it', async () => {
    await expect(loadModel({ modelDir: tinyModel('cfg', { guidance_scale: 2 }), cacheDir, device: 'cpu' })).rejects.toMatchObject({ code: 'MODEL_UNSUPPORTED', message: expect.stringContaining('guidance_scale') });
  });
});

/** Collects the generated ids the way TextDeltaStreamer sees them (the first put is the prompt). */
class IdStreamer extends BaseStreamer {
  readonly ids: number[] = [];
  private prompt = true;
  override put(value: bigint[][]): void {
    if (this.prompt) this.prompt = false;
    else this.ids.push(Number(value[0]![0]!));
  }
  override end(): void {}
}

describe("transformers.js's generate (the GPU path) against our loop, both on the CPU", () => {
  const rulesDir = join(root, 'rules');
  beforeAll(() => {
    tinyModel('rules', { eos_token_id: PINNED_IDS[3], min_new_tokens: 5, bad_words_ids: [[PINNED_IDS[5]!]], no_repeat_ngram_size: 3 });
  });

  it('chooses the same tokens, greedy and sampled, with generation_config.json rules applied by both', async () => {
    const compiled = await compileModel({ modelDir: rulesDir, cacheDir });
    const generationConfig = readGenerationConfig(compiled.dir);
    const rules = parseLogitsRules(generationConfig, compiled.config.vocabSize);
    const eos = stopTokenIds(generationConfig, compiled.config.eosTokenIds);
    const model = await loadGenerateModel(compiled.dir, 'cpu', 1);
    const { session } = await createSession(compiled.onnxFile);
    const steps = onnxSteps(session, compiled.config, { nativeSteps: 0, nativeMs: 0, onnxRuns: 0 });
    const promptIds = [...Buffer.from(PROMPT)];
    try {
      for (const sampling of [{ ...greedy, maxNewTokens: 30 }, { maxNewTokens: 30, temperature: 0.9, topP: 0.9, topK: 20, repetitionPenalty: 1.2, seed: 3 }]) {
        const run = async (loop: (g: Generation) => Promise<void>) => {
          const rng = mulberry32(sampling.seed ?? 0);
          const streamer = new IdStreamer();
          await loop({
            promptIds,
            maxNewTokens: sampling.maxNewTokens,
            choose(logits, seen) {
              applyLogitsRules(logits, rules, { seen, promptLength: promptIds.length, eos, maxNewTokens: sampling.maxNewTokens });
              return chooseToken(logits, seen, sampling, rng);
            },
            eos,
            streamer,
            isStopped: () => false,
          });
          return streamer.ids;
        };
        const ours = await run((g) => decodeLoop(steps, g));
        expect(ours.slice(0, 4)).not.toContain(PINNED_IDS[3]);
        expect(ours).not.toContain(PINNED_IDS[5]);
        expect(await run((g) => generateLoop(model, g))).toEqual(ours);
      }
    } finally {
      await model.dispose();
      await session.release();
    }
  });
});
