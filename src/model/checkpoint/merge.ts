/**
 * `morris model merge`: folds a LoRA adapter into the base weights (W' = W + scale · B·A) and
 * writes a standalone Hugging Face checkpoint (config, tokenizer files, one model.safetensors in
 * the base's dtype) for export to other runtimes. Tensors are produced one at a time.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { openCheckpoint } from './config.ts';
import { SIDE_FILES } from '../graph/compile.ts';
import { readAdapter } from './lora.ts';
import { encodeFloats, readTensorF32, writeSafetensorsStreaming, type TensorData, type TensorEntry } from './safetensors.ts';

export interface MergeResult {
  outDir: string;
  mergedTensors: number;
}

export function mergeAdapter(modelDir: string, adapterDir: string, outDir: string): MergeResult {
  if (resolve(outDir) === resolve(modelDir)) throw new MorrisError('BAD_INPUT', 'The merged model must go to a new folder, not over the base model.');
  const ckpt = openCheckpoint(modelDir);
  const adapter = readAdapter(adapterDir, ckpt.config);
  // base weight name → its LoRA pair (PEFT key minus the `base_model.model.` prefix and `lora_A`)
  const byWeight = new Map<string, { a: TensorEntry; b: TensorEntry }>();
  for (const pair of adapter.pairs.values()) {
    byWeight.set(pair.a.name.replace(/^base_model\.model\./, '').replace(/\.lora_A\.weight$/, '.weight'), pair);
  }
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw wrapFsError(e, outDir);
  }
  const specs = [...ckpt.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
  let merged = 0;
  writeSafetensorsStreaming(
    join(outDir, 'model.safetensors'),
    specs,
    (name): TensorData => {
      const entry = ckpt.tensors.get(name)!;
      const lora = byWeight.get(name);
      if (!lora) return encodeFloats(readTensorF32(entry), entry.dtype as 'F32' | 'F16' | 'BF16');
      const w = readTensorF32(entry);
      const A = readTensorF32(lora.a); // [r, in]
      const B = readTensorF32(lora.b); // [out, r]
      const [outF, inF] = entry.shape as [number, number];
      const r = adapter.r;
      const row = new Float64Array(inF);
      for (let o = 0; o < outF; o++) {
        row.fill(0);
        for (let k = 0; k < r; k++) {
          const bk = B[o * r + k]!;
          if (bk === 0) continue;
          for (let i = 0; i < inF; i++) row[i]! += bk * A[k * inF + i]!;
        }
        for (let i = 0; i < inF; i++) w[o * inF + i]! += adapter.scale * row[i]!;
      }
      merged++;
      return encodeFloats(w, entry.dtype as 'F32' | 'F16' | 'BF16');
    },
    { format: 'pt', merged_from: `${resolve(modelDir)} + ${resolve(adapterDir)}` },
  );
  for (const f of SIDE_FILES) if (existsSync(join(modelDir, f))) copyFileSync(join(modelDir, f), join(outDir, f));
  return { outDir, mergedTensors: merged };
}
