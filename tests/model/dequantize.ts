/**
 * Test oracle: W as the quantized kernel sees it, decoded from quantizeMatrix's packed layout
 * (for measuring quantization error and as the reference the native int8/int4 kernels match).
 * Only tests use it, so it lives here rather than in src/model/checkpoint/quant.ts.
 */
import { DEFAULT_BLOCK_SIZE, type QuantBits, type QuantizedMatrix } from '../../src/model/checkpoint/quant.ts';

export function dequantizeMatrix(q: QuantizedMatrix, N: number, K: number, bits: QuantBits, blockSize = DEFAULT_BLOCK_SIZE): Float32Array {
  const out = new Float32Array(N * K);
  const blob = (blockSize * bits) / 8;
  const zpRow = bits === 8 ? q.nBlocks : Math.ceil(q.nBlocks / 2);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize);
      const j = k % blockSize;
      const byte = q.packed[(n * q.nBlocks + b) * blob + (bits === 8 ? j : j >> 1)]!;
      const code = bits === 8 ? byte : j & 1 ? byte >> 4 : byte & 15;
      const zpByte = q.zeroPoints[n * zpRow + (bits === 8 ? b : b >> 1)]!;
      const zp = bits === 8 ? zpByte : b & 1 ? zpByte >> 4 : zpByte & 15;
      out[n * K + k] = (code - zp) * q.scales[n * q.nBlocks + b]!;
    }
  }
  return out;
}

/** Round half to even, as the CPU's default rounding (vcvtps2dq, nearbyintf) does. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * x as the native int8/int4 kernel multiplies it (native/kernels-quant.c, quantizeActivations):
 * per `block` elements (QX_BLOCK), codes round(x · (127 / max|x|)) in float32 arithmetic, times the
 * scale max|x| / 127. The kernel's dot products of those codes with the weight codes are exact
 * integers, so W_dequantized · this, in float64, is its math with only its float32 sums' rounding left.
 */
export function quantizeActivations(x: ArrayLike<number>, block = 32): Float64Array {
  const out = new Float64Array(x.length);
  for (let s = 0; s < x.length; s += block) {
    const e1 = Math.min(x.length, s + block);
    let amax = 0;
    for (let e = s; e < e1; e++) amax = Math.max(amax, Math.abs(Math.fround(x[e]!)));
    const inv = amax > 0 ? Math.fround(127 / amax) : 0;
    const scale = Math.fround(amax / 127);
    for (let e = s; e < e1; e++) out[e] = scale * roundHalfEven(Math.fround(Math.fround(x[e]!) * inv));
  }
  return out;
}
