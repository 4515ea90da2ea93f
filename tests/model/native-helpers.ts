/**
 * Teacher-forced decode through the native kernel, shared by native-decode.test.ts and the child
 * processes it starts with MORRIS_NATIVE_ISA set (so it holds no vitest imports).
 */
import type { DecoderConfig } from '../../src/model/checkpoint.ts';
import type { NativeDecoder } from '../../src/model/native-decode.ts';

/**
 * Logits at every position of `ids`, one native step per token: position 0 with an empty past,
 * then each step fed the present K/V of the one before (so the cache layout is tested too).
 */
export async function teacherForced(decoder: NativeDecoder, cfg: DecoderConfig, ids: readonly number[]): Promise<Float32Array[]> {
  let past: { keys: Float32Array[]; values: Float32Array[] } = { keys: Array.from({ length: cfg.numLayers }, () => new Float32Array(0)), values: Array.from({ length: cfg.numLayers }, () => new Float32Array(0)) };
  const rows: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) {
    const out = await decoder.step(ids[t]!, t, past);
    rows.push(out.logits);
    past = { keys: out.keys, values: out.values };
  }
  return rows;
}
