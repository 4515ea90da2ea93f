/**
 * Weight-only quantization for ONNX Runtime's MatMulNBits (com.microsoft): each row of W [N, K]
 * is cut into blocks of `blockSize` along K; each block stores a float scale, a zero point and
 * `bits`-bit unsigned codes (asymmetric min/max, so int4 uses all 16 levels).
 * Packed layout B [N, ceil(K/blockSize), blockSize·bits/8]; 4-bit codes put element 2j in the low
 * nibble. The compiler appends the packed data to a cache file next to the graph (the only
 * weight bytes Morris writes itself) and points MatMulNBits' initializers at it.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { MorrisError } from '../../errors.ts';
import type { LinearImpl } from '../graph/llama.ts';
import type { ExternalData } from '../graph/builder.ts';
import { readTensorF32, type TensorEntry } from './safetensors.ts';

export type QuantBits = 4 | 8;
/**
 * Block sizes: int8 codes are precise enough for long blocks (less scale overhead); int4 needs
 * short ones (on stories260K, block 32 vs 64 takes top-1 agreement with fp32 from ~0.8 to ~0.9).
 */
export const BLOCK_SIZE: Readonly<Record<QuantBits, number>> = { 8: 64, 4: 32 };
export const DEFAULT_BLOCK_SIZE = 32;

export interface QuantizedMatrix {
  packed: Uint8Array;
  scales: Float32Array;
  /** Per block zero points; 4-bit ones packed two a byte (low nibble first), each row padded to a byte. */
  zeroPoints: Uint8Array;
  nBlocks: number;
}

/** Asymmetric (min/max) per-block quantization: uses all 2^bits codes, so int4 keeps 16 levels. */
export function quantizeMatrix(w: Float32Array, N: number, K: number, bits: QuantBits, blockSize = DEFAULT_BLOCK_SIZE): QuantizedMatrix {
  if (w.length !== N * K) throw new MorrisError('INTERNAL', `quantizeMatrix: ${w.length} values for [${N}, ${K}].`);
  const nBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const levels = (1 << bits) - 1; // 15 or 255
  const zpRow = bits === 8 ? nBlocks : Math.ceil(nBlocks / 2);
  const packed = new Uint8Array(N * nBlocks * blob);
  const scales = new Float32Array(N * nBlocks);
  const zeroPoints = new Uint8Array(N * zpRow);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0; // the range always includes 0 so zero padding is exact
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        lo = Math.min(lo, w[n * K + k]!);
        hi = Math.max(hi, w[n * K + k]!);
      }
      const scale = Math.fround((hi - lo) / levels);
      const inv = scale === 0 ? 0 : 1 / scale;
      const zp = scale === 0 ? 0 : Math.min(levels, Math.max(0, Math.round(-lo * inv)));
      scales[n * nBlocks + b] = scale;
      if (bits === 8) zeroPoints[n * zpRow + b] = zp;
      else zeroPoints[n * zpRow + (b >> 1)] |= b & 1 ? zp << 4 : zp;
      const base = (n * nBlocks + b) * blob;
      for (let k = k0; k < k0 + blockSize; k++) {
        const v = k < k1 ? w[n * K + k]! : 0; // zero padding past K
        const q = Math.min(levels, Math.max(0, Math.round(v * inv) + zp));
        const j = k - k0;
        if (bits === 8) packed[base + j] = q;
        else packed[base + (j >> 1)] |= j & 1 ? q << 4 : q;
      }
    }
  }
  return { packed, scales, zeroPoints, nBlocks };
}

/** Append-only binary file whose byte offsets become ONNX external-data offsets. */
export class ExternalDataFile {
  private fd: number;
  private size = 0;
  constructor(readonly path: string, readonly location: string) {
    this.fd = openSync(path, 'w');
  }
  append(data: Uint8Array | Float32Array): ExternalData {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const offset = this.size;
    writeSync(this.fd, bytes);
    this.size += bytes.length;
    return { location: this.location, offset, length: bytes.length };
  }
  close(): void {
    closeSync(this.fd);
  }
}

export interface QuantizedWeight {
  readonly N: number;
  readonly K: number;
  readonly nBlocks: number;
  readonly packed: ExternalData;
  readonly scales: ExternalData;
  readonly zeroPoints: ExternalData;
  readonly zeroPointCount: number;
}

/**
 * Quantizes the given [N, K] weights into `out`, one tensor at a time, yielding to the event loop
 * between tensors so a bot process stays responsive while a model is prepared on first use.
 */
export async function quantizeWeights(
  weights: readonly { name: string; entry: TensorEntry }[],
  bits: QuantBits,
  out: ExternalDataFile,
  blockSize = BLOCK_SIZE[bits],
): Promise<Map<string, QuantizedWeight>> {
  const done = new Map<string, QuantizedWeight>();
  for (const { name, entry } of weights) {
    if (done.has(name)) continue; // the tied embedding may be listed twice
    const [N, K] = entry.shape as [number, number];
    const q = quantizeMatrix(readTensorF32(entry), N, K, bits, blockSize);
    done.set(name, {
      N, K, nBlocks: q.nBlocks, zeroPointCount: q.zeroPoints.length,
      packed: out.append(q.packed), scales: out.append(q.scales), zeroPoints: out.append(q.zeroPoints),
    });
    await new Promise<void>((r) => setImmediate(r));
  }
  return done;
}

/** A LinearImpl emitting MatMulNBits over weights quantized beforehand by quantizeWeights. */
export function quantLinear(bits: QuantBits, quantized: ReadonlyMap<string, QuantizedWeight>, blockSize = BLOCK_SIZE[bits]): LinearImpl {
  return (g, x, spec, w) => {
    const q = quantized.get(spec.weight);
    if (!q) throw new MorrisError('INTERNAL', `Weight ${spec.weight} was not quantized.`);
    const prefix = `${spec.weight}.q${bits}`;
    const blob = (blockSize * bits) / 8;
    const init = (name: string, dtype: 'uint8' | 'float32', shape: number[], ext: ExternalData) => (g.has(name) ? name : g.externalInitializer(name, dtype, shape, ext));
    const B = init(`${prefix}.weight`, 'uint8', [q.N, q.nBlocks, blob], q.packed);
    const scales = init(`${prefix}.scales`, 'float32', [q.N * q.nBlocks], q.scales);
    const zp = init(`${prefix}.zero_points`, 'uint8', [q.zeroPointCount], q.zeroPoints);
    // accuracy_level 4 (int8 activations): without it ORT's CPU kernel takes a slow path for
    // 8-bit weights (~10× slower than fp32 here); the extra error is small (see bench:generate)
    let y = g.op('MatMulNBits', [x, B, scales, zp], { K: q.K, N: q.N, bits, block_size: blockSize, accuracy_level: 4 });
    if (spec.bias) y = g.op('Add', [y, w.get(spec.bias)]);
    return y;
  };
}
