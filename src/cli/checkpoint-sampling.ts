/** Sampling for `morris generate --raw`, where a base model should behave as its authors configured it. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError } from '../errors.ts';
import type { SamplingOptions } from '../model/inference/engine.ts';

/**
 * Sampling as the checkpoint's generation_config.json asks for it, with transformers' defaults
 * for missing fields (do_sample false → greedy, repetition penalty 1). No file → {}.
 */
export function checkpointSamplingDefaults(modelDir: string): Partial<SamplingOptions> {
  const file = join(modelDir, 'generation_config.json');
  if (!existsSync(file)) return {};
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `${file} is not valid JSON.`, { cause: e });
  }
  const n = (key: string, fallback: number) => (typeof cfg[key] === 'number' ? (cfg[key] as number) : fallback);
  return {
    temperature: cfg['do_sample'] === true ? n('temperature', 1) : 0,
    topP: n('top_p', 1),
    topK: n('top_k', 50),
    repetitionPenalty: n('repetition_penalty', 1),
    ...(typeof cfg['max_new_tokens'] === 'number' ? { maxNewTokens: cfg['max_new_tokens'] as number } : {}),
  };
}
