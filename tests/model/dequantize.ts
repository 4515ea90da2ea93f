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
