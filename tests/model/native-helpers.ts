/**
 * Teacher-forced decode through the native kernel, shared by native-decode.test.ts and the child
 * processes it starts with MORRIS_NATIVE_ISA set (so it holds no vitest imports).
 */
import type { DecoderConfig } from '../../src/model/checkpoint/config.ts';
import type { NativeDecoder } from '../../src/model/inference/native-decoder.ts';

/**
 * Logits at every position of `ids`, one native step per token. Halfway through, the cache is
 * exported in the ONNX layout and imported into a fresh sequence, so that round trip (the path
 * an ONNX prefill takes into the kernel) is checked by every comparison too.
 */
export async function teacherForced(decoder: NativeDecoder, cfg: DecoderConfig, ids: readonly number[]): Promise<Float32Array[]> {
  let seq = decoder.sequence();
  const rows: Float32Array[] = [];
  for (let t = 0; t < ids.length; t++) {
    if (t === Math.floor(ids.length / 2)) {
      const kv = seq.export();
      if (kv.keys.length !== cfg.numLayers || kv.keys[0]!.length !== t * cfg.numKvHeads * cfg.headDim) throw new Error(`export gave the wrong shape at ${t}`);
      seq.free();
      seq = decoder.sequence(kv);
    }
    rows.push(await seq.step(ids[t]!, t));
  }
  seq.free();
  return rows;
}
