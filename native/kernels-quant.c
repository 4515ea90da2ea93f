/*
 * The int8/int4 matrix-vector product over MatMulNBits codes (see Mat and QuantX in kernels.h):
 * y[n] = sum_b wscale_nb * sum_{j in b} (code_nj - zero_nb) * xq_j, where xq is the activation
 * vector quantized to int8 per QX_BLOCK elements (scale = max|x| / 127, round to nearest even).
 *
 * Why integer activations: the previous kernel widened every code to fp32 in registers (vpmovzx,
 * vcvtdq2ps, one FMA per 16 codes) and ran at about half the int8/int4 roofline, compute-bound,
 * slowest for int4 (its nibble unpack costs more per byte read). vpdpbusd (AVX-512 VNNI) does 64
 * u8 x s8 products into 16 int32 lanes in one instruction, so one 64-byte load of codes costs about
 * six instructions (int8) or ten (int4) instead of 16-30. This is what llama.cpp does with Q8_0/Q8_K
 * activations; the quality cost is measured by bench:generate (stories260K lines) and the choice of
 * QX_BLOCK is explained in kernels.h.
 *
 * Layout: codes, scales and zero points stay as MatMulNBits stores them (one packed arena piece
 * each, pack.c), so the bytes read per token are those of quant.bin; the activations are
 * rearranged instead (quantizeActivations), once per matvec, so each 64-byte chunk of a row's codes
 * meets its activations in one contiguous 64 or 128 bytes. The zero point enters as zero x (sum of
 * the activation codes it multiplies), one vpdpwssd per chunk or per 16-block group.
 *
 * The AVX-512 pieces (chunkDot, chunkAcc, groupAcc, ...) live in kernels-quant.h so the batched
 * kernel (gemm-q.c) runs each of its rows through the same code as gemvQAvx512 here.
 *
 * The scalar kernel does the same integer math (same codes, same activation codes, exact int32 dot
 * products); only the order of the float sums differs, so ISAs agree to float rounding.
 */
#include <math.h>
#include <string.h>
#include "kernels-quant.h"

/* How far ahead of the chunk being multiplied the code stream is prefetched, in bytes per stream.
 * The integer arithmetic per 64-byte chunk is long enough that 1 KiB ahead (the fp32 gemv's
 * distance) was too close to hide the memory latency: the step took about the read time plus the
 * arithmetic time. 4 KiB, in one run interleaved with 1 KiB (SmolLM2-135M shape, one core): int8
 * 0.85-0.87 of the time, int4 0.92; 2 KiB 0.95, 8 KiB 0.92. */
#define QAHEAD 4096


int quantChunks(int bits, int block, int nBlocks) {
  return (int)(((size_t)nBlocks * block * bits / 8 + 63) / 64);
}

/* Where activation e sits in q (the int4 chunk puts even elements first, then odd ones). */
static inline int qPos(int bits, int e) {
  if (bits == 8) return e;
  return (e & ~127) + (e & 1 ? 64 : 0) + ((e & 127) >> 1);
}

/* One activation block (QX_BLOCK elements from x + e0, zero past K) quantized: its codes written
 * where the kernel reads them, its scale returned. */
static float quantBlockScalar(const float *x, int e0, int K, int bits, int8_t *q) {
  float amax = 0;
  for (int e = e0; e < e0 + QX_BLOCK && e < K; e++) amax = fmaxf(amax, fabsf(x[e]));
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  for (int e = e0; e < e0 + QX_BLOCK; e++) q[qPos(bits, e)] = e < K ? (int8_t)nearbyintf(x[e] * inv) : 0; /* half to even, as vcvtps2dq */
  return amax / 127.0f;
}

/* The same arithmetic 16 lanes at a time (the scalar loop cost 1 ms a token at SmolLM2's size,
 * a fifth of the int4 step): max, one division, multiply, round to nearest even. */
__attribute__((target("avx512f,avx512bw")))
static float quantBlockAvx512(const float *x, int e0, int K, int bits, int8_t *q) {
  const int left = K - e0;
  const __mmask16 k0 = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
  const __mmask16 k1 = left >= 32 ? 0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
  const __m512 x0 = _mm512_maskz_loadu_ps(k0, x + e0), x1 = _mm512_maskz_loadu_ps(k1, x + e0 + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
  __m512i a, b;
  if (bits == 8) {
    a = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv));
    b = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
    _mm_storeu_si128((__m128i *)(q + e0), _mm512_cvtepi32_epi8(a));
    _mm_storeu_si128((__m128i *)(q + e0 + 16), _mm512_cvtepi32_epi8(b));
  } else { /* even elements to the chunk's first half, odd ones to its second */
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(x0, even, x1), inv));
    b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(x0, odd, x1), inv));
    int8_t *at = q + qPos(4, e0);
    _mm_storeu_si128((__m128i *)at, _mm512_cvtepi32_epi8(a));
    _mm_storeu_si128((__m128i *)(at + 64), _mm512_cvtepi32_epi8(b));
  }
  return amax / 127.0f;
}

typedef float (*QuantBlockFn)(const float *x, int e0, int K, int bits, int8_t *q);
static QuantBlockFn quantBlock = quantBlockScalar;

/* Called by pickKernel with the kernel it chose: both quantizers give the same codes. */
void pickQuantizer(int avx512) { quantBlock = avx512 ? quantBlockAvx512 : quantBlockScalar; }

/* Fills q [quantChunks * perChunk], lane and nsum [quantChunks * 16], and for int4 blocks of
 * QX_BLOCK gsum and gscale [quantChunks / 4 * 16], from x [K]. Every ISA sees the same codes and sums. */
void quantizeActivations(const Mat *m, const float *x, int K, int8_t *q, float *lane, int32_t *nsum, int32_t *gsum, float *gscale) {
  const int per = perChunk(m->bits), chunks = quantChunks(m->bits, m->block, m->nBlocks), laneEls = per / 16;
  float scales[128 / QX_BLOCK]; /* one chunk's activation scales (QX_BLOCK divides 64) */
  for (int c = 0; c < chunks; c++) {
    for (int s = 0; s < per / QX_BLOCK; s++) scales[s] = quantBlock(x, c * per + s * QX_BLOCK, K, m->bits, q);
    const int8_t *qc = q + (size_t)c * per;
    for (int i = 0; i < 16; i++) {
      lane[c * 16 + i] = scales[i * laneEls / QX_BLOCK];
      int32_t t = 0; /* lane i's codes: 4 bytes at 4i, and for int4 4 more at 64 + 4i */
      for (int j = 0; j < 4; j++) t += qc[4 * i + j] + (m->bits == 4 ? qc[64 + 4 * i + j] : 0);
      nsum[c * 16 + i] = -t;
    }
  }
  if (m->bits != 4 || m->block != QX_BLOCK || !gsum) return;
  for (int g = 0; g < chunks / 4; g++) /* groups of 4 chunks, lanes in groupAcc's order */
    for (int t = 0; t < 4; t++)
      for (int k = 0; k < 4; k++) {
        const int32_t *ns = nsum + (size_t)(4 * g + k) * 16 + 4 * t;
        gsum[g * 16 + 4 * t + k] = ns[0] + ns[1] + ns[2] + ns[3];
        gscale[g * 16 + 4 * t + k] = lane[(size_t)(4 * g + k) * 16 + 4 * t];
      }
}

/* The vector kernel's layouts: whole 64-byte chunks per block, or 2 or 4 blocks per chunk. */
int quantVectorOk(const Mat *m) {
  const int blob = m->block * m->bits / 8;
  return m->block % (perChunk(m->bits) / 16) == 0 && (blob == 16 || blob == 32 || blob % 64 == 0);
}

void gemvQScalar(const Mat *m, const QuantX *x, float *y, int N) {
  const int blob = m->block * m->bits / 8, per = perChunk(m->bits), laneEls = per / 16;
  for (int n = 0; n < N; n++) {
    const uint8_t *row = m->codes + (size_t)n * m->nBlocks * blob;
    float acc = 0;
    for (int b = 0; b < m->nBlocks; b++) {
      const int z = zeroPoint(m, n, b);
      float blockAcc = 0;
      for (int e0 = b * m->block; e0 < (b + 1) * m->block; e0 += laneEls) { /* one int32 lane */
        const int l = (e0 / per) * 16 + (e0 % per) / laneEls;
        int32_t d = z * x->nsum[l];
        for (int e = e0; e < e0 + laneEls; e++) {
          const int code = m->bits == 8 ? row[e] : (e & 1 ? row[e >> 1] >> 4 : row[e >> 1] & 15);
          d += code * x->q[qPos(m->bits, e)];
        }
        blockAcc += (float)d * x->lane[l];
      }
      acc += m->scales[(size_t)n * m->nBlocks + b] * blockAcc;
    }
    y[n] = acc;
  }
}

/* Rows r0 and r1 (one from each half of the matrix, as the fp32 kernel does: two streams far apart
 * keep more reads in flight on one core), prefetched QAHEAD ahead. The QuantX
 * pointers are copied to locals: through the struct, every store to y made the compiler reload
 * them (it cannot tell y from the struct), which cost a tenth of the int4 time. */
VNNI void rowPair(const Mat *m, const QuantX *x, float *y, int r0, int r1, int bits, int bpc) {
  const int blob = m->block * bits / 8, rowBytes = m->nBlocks * blob, full = rowBytes / 64, tail = rowBytes % 64;
  const int cpb = bpc ? 1 : blob / 64, step = perChunk(bits);
  const int8_t *xq = x->q;
  const int32_t *nsum = x->nsum;
  const float *lane = x->lane;
  const uint8_t *c0 = m->codes + (size_t)r0 * rowBytes, *c1 = m->codes + (size_t)r1 * rowBytes;
  const float *s0 = m->scales + (size_t)r0 * m->nBlocks, *s1 = m->scales + (size_t)r1 * m->nBlocks;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int c = 0;
  if (bits == 4 && bpc == 4 && x->gsum) { /* blocks of 32 (== QX_BLOCK): whole groups of 4 chunks */
    const uint8_t *z0 = m->zeros + (size_t)r0 * ((m->nBlocks + 1) / 2), *z1 = m->zeros + (size_t)r1 * ((m->nBlocks + 1) / 2);
    for (; c + 4 <= full; c += 4) {
      for (int i = 0; i < 4; i++) {
        _mm_prefetch((const char *)(c0 + 64 * (c + i) + QAHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(c1 + 64 * (c + i) + QAHEAD), _MM_HINT_T0);
      }
      a0 = groupAcc(a0, c0 + 64 * c, xq + c * step, x->gsum + 4 * c, x->gscale + 4 * c, s0 + 4 * c, z0 + 2 * c);
      a1 = groupAcc(a1, c1 + 64 * c, xq + c * step, x->gsum + 4 * c, x->gscale + 4 * c, s1 + 4 * c, z1 + 2 * c);
    }
  }
  if (!bpc) { /* a block spans cpb whole chunks: its scales and zero points once per block, as
                 * gemm-q.c's rowGroup does (laneScales' and zeroLanes' c / cpb is an integer
                 * division a chunk, cpb not being a constant here; same values, same order) */
    for (int b = 0; b < m->nBlocks; b++) {
      const __m512 ws0 = _mm512_set1_ps(s0[b]), ws1 = _mm512_set1_ps(s1[b]);
      const __m512i z0 = _mm512_set1_epi32(zeroPoint(m, r0, b)), z1 = _mm512_set1_epi32(zeroPoint(m, r1, b));
      for (int k = 0; k < cpb; k++, c++) {
        _mm_prefetch((const char *)(c0 + 64 * c + QAHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(c1 + 64 * c + QAHEAD), _MM_HINT_T0);
        a0 = chunkAcc(a0, bits, _mm512_loadu_si512(c0 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, ws0, z0);
        a1 = chunkAcc(a1, bits, _mm512_loadu_si512(c1 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, ws1, z1);
      }
    }
  }
  for (; c < full; c++) {
    _mm_prefetch((const char *)(c0 + 64 * c + QAHEAD), _MM_HINT_T0);
    _mm_prefetch((const char *)(c1 + 64 * c + QAHEAD), _MM_HINT_T0);
    a0 = chunkAcc(a0, bits, _mm512_loadu_si512(c0 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, laneScales(s0, c, bpc, cpb, bpc), zeroLanes(m, r0, c, bits, bpc, cpb, bpc));
    a1 = chunkAcc(a1, bits, _mm512_loadu_si512(c1 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, laneScales(s1, c, bpc, cpb, bpc), zeroLanes(m, r1, c, bits, bpc, cpb, bpc));
  }
  if (bits == 4 && bpc == 4 && tail && tail <= 32) {
    const uint8_t *z0 = m->zeros + (size_t)r0 * ((m->nBlocks + 1) / 2), *z1 = m->zeros + (size_t)r1 * ((m->nBlocks + 1) / 2);
    const int have = m->nBlocks - c * bpc;
    a0 = halfAcc4(a0, c0 + 64 * c, tail, xq + c * step, nsum + 16 * c, lane + 16 * c, s0 + 4 * c, z0 + 2 * c, have);
    a1 = halfAcc4(a1, c1 + 64 * c, tail, xq + c * step, nsum + 16 * c, lane + 16 * c, s1 + 4 * c, z1 + 2 * c, have);
  } else if (tail) { /* the row's last chunk holds fewer blocks: read only its bytes */
    const __mmask64 k = ((__mmask64)1 << tail) - 1;
    const int have = m->nBlocks - c * bpc;
    a0 = chunkAcc(a0, bits, _mm512_maskz_loadu_epi8(k, c0 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, laneScales(s0, c, bpc, cpb, have), zeroLanes(m, r0, c, bits, bpc, cpb, have));
    a1 = chunkAcc(a1, bits, _mm512_maskz_loadu_epi8(k, c1 + 64 * c), xq + c * step, nsum + 16 * c, lane + 16 * c, laneScales(s1, c, bpc, cpb, have), zeroLanes(m, r1, c, bits, bpc, cpb, have));
  }
  y[r0] = _mm512_reduce_add_ps(a0);
  if (r1 != r0) y[r1] = _mm512_reduce_add_ps(a1);
}

/* One copy of the loop per (bits, blocks per chunk), so both are constants inside it. */
VNNI void rowsQ(const Mat *m, const QuantX *x, float *y, int N, int bits, int bpc) {
  const int h = N / 2;
  for (int n = 0; n < h; n++) rowPair(m, x, y, n, h + n, bits, bpc);
  if (N & 1) rowPair(m, x, y, N - 1, N - 1, bits, bpc);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
void gemvQAvx512(const Mat *m, const QuantX *x, float *y, int N) {
  const int blob = m->block * m->bits / 8, bpc = blob >= 64 ? 0 : 64 / blob;
  if (m->bits == 8) {
    if (bpc == 0) rowsQ(m, x, y, N, 8, 0);
    else if (bpc == 2) rowsQ(m, x, y, N, 8, 2);
    else rowsQ(m, x, y, N, 8, 4);
  } else {
    if (bpc == 0) rowsQ(m, x, y, N, 4, 0);
    else if (bpc == 2) rowsQ(m, x, y, N, 4, 2);
    else rowsQ(m, x, y, N, 4, 4);
  }
}
