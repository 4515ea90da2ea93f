/*
 * The batched step's fp32 matrix kernels: Y[r] = W X[r] for R activation rows at once.
 *
 * Why: decode on the CPU is bound by reading the weights, so B sequences stepped as B gemvs read
 * every matrix B times; here each pair of weight rows is read from memory once and, while it sits
 * in L1, multiplied with every activation row, four at a time (the accumulators of four rows fill
 * half the register file; the weight rows of the widest matrix, 2 x 6 KiB, stay in L1 across the
 * groups).
 *
 * Bitwise contract: for every (weight row, activation row) the accumulation is exactly gemv's for
 * that ISA (kernels.c): the same pairing of row n with row h + n, the same two accumulators
 * alternating per 16-float (AVX-512) or 8-float (AVX2) chunk, the same tail and the same final
 * reduction. A row's logits therefore do not depend on what else is in the batch.
 */
#include <stddef.h>
#include "kernels.h"

/* Without AVX2 (rare, and slow either way) each row is its own gemv: bitwise by construction, at
 * the price of reading the weights once per row. */
void gemmScalar(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R) {
  for (int r = 0; r < R; r++) gemvScalar(W, X + (size_t)r * ldx, Y + (size_t)r * ldy, N, K);
}

/* Four _mm512_reduce_add_ps at once, bitwise equal to each: GCC's reduction (avx512fintrin.h,
 * __MM512_REDUCE_OP) adds the 256-bit halves, then the 128-bit halves, then elements 2 apart, then
 * the first two; each level here makes the same pairwise sums for all four vectors with one add
 * (float addition is commutative, so only the pairing matters). A 4-row group's eight reductions
 * took about a fifth of a pair's arithmetic at 576 columns; this takes a third of their ops. */
__attribute__((target("avx512f"), always_inline))
static inline void reduce4(__m512 p, __m512 q, __m512 r, __m512 s, float *out0, float *out1, float *out2, float *out3) {
  const __m512 pq = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE)); /* halves of 512 */
  const __m512 rs = _mm512_add_ps(_mm512_shuffle_f32x4(r, s, 0x44), _mm512_shuffle_f32x4(r, s, 0xEE));
  const __m512 t6 = _mm512_add_ps(_mm512_shuffle_f32x4(pq, rs, 0x88), _mm512_shuffle_f32x4(pq, rs, 0xDD)); /* halves of 256 */
  const __m512 t8 = _mm512_add_ps(t6, _mm512_permute_ps(t6, 0x4E)); /* elements 2 apart */
  const __m512 t9 = _mm512_add_ps(t8, _mm512_permute_ps(t8, 0xB1)); /* the first two */
  float lanes[16] __attribute__((aligned(64)));
  _mm512_store_ps(lanes, t9);
  *out0 = lanes[0];
  *out1 = lanes[4];
  *out2 = lanes[8];
  *out3 = lanes[12];
}

/* Weight rows w (n) and v (h + n) against NR activation rows; NR is a constant at each call, so
 * the accumulator arrays live in registers. */
__attribute__((target("avx512f"), always_inline))
static inline void pairRows512(const float *w, const float *v, const float *X, int ldx, float *Y, int ldy, int n, int h, int K, int prefetch, int far, const int NR) {
  __m512 a0[4], a1[4], b0[4], b1[4];
  const float *x[4];
  for (int r = 0; r < NR; r++) {
    a0[r] = a1[r] = b0[r] = b1[r] = _mm512_setzero_ps();
    x[r] = X + (size_t)r * ldx;
  }
  int k = 0;
  for (; k + 32 <= K; k += 32) {
    if (prefetch) {
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD + 16), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD + 16), _MM_HINT_T0);
    }
    if (far) { /* weights far floats ahead (the pair after next, or the next tile), while this pair is computed (see gemmAvx512) */
      _mm_prefetch((const char *)(w + k + far), _MM_HINT_NTA);
      _mm_prefetch((const char *)(v + k + far), _MM_HINT_NTA);
      _mm_prefetch((const char *)(w + k + far + 16), _MM_HINT_NTA);
      _mm_prefetch((const char *)(v + k + far + 16), _MM_HINT_NTA);
    }
    const __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + k + 16);
    const __m512 v0 = _mm512_loadu_ps(v + k), v1 = _mm512_loadu_ps(v + k + 16);
    for (int r = 0; r < NR; r++) {
      __m512 x0 = _mm512_loadu_ps(x[r] + k), x1 = _mm512_loadu_ps(x[r] + k + 16);
      __asm__("" : "+v"(x0), "+v"(x1)); /* keep x in registers: folded into both FMAs it was loaded twice */
      a0[r] = _mm512_fmadd_ps(w0, x0, a0[r]);
      b0[r] = _mm512_fmadd_ps(v0, x0, b0[r]);
      a1[r] = _mm512_fmadd_ps(w1, x1, a1[r]);
      b1[r] = _mm512_fmadd_ps(v1, x1, b1[r]);
    }
  }
  for (; k + 16 <= K; k += 16) {
    const __m512 w0 = _mm512_loadu_ps(w + k), v0 = _mm512_loadu_ps(v + k);
    for (int r = 0; r < NR; r++) {
      __m512 x0 = _mm512_loadu_ps(x[r] + k);
      __asm__("" : "+v"(x0));
      a0[r] = _mm512_fmadd_ps(w0, x0, a0[r]);
      b0[r] = _mm512_fmadd_ps(v0, x0, b0[r]);
    }
  }
  if (k < K) {
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
    const __m512 w0 = _mm512_maskz_loadu_ps(m, w + k), v0 = _mm512_maskz_loadu_ps(m, v + k);
    for (int r = 0; r < NR; r++) {
      const __m512 x0 = _mm512_maskz_loadu_ps(m, x[r] + k);
      a1[r] = _mm512_fmadd_ps(w0, x0, a1[r]);
      b1[r] = _mm512_fmadd_ps(v0, x0, b1[r]);
    }
  }
  if (NR == 4) {
    for (int r = 0; r < 4; r += 2) {
      float *y0 = Y + (size_t)r * ldy, *y1 = Y + (size_t)(r + 1) * ldy;
      reduce4(_mm512_add_ps(a0[r], a1[r]), _mm512_add_ps(b0[r], b1[r]), _mm512_add_ps(a0[r + 1], a1[r + 1]), _mm512_add_ps(b0[r + 1], b1[r + 1]), y0 + n, y0 + h + n, y1 + n, y1 + h + n);
    }
    return;
  }
  for (int r = 0; r < NR; r++) {
    Y[(size_t)r * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
    Y[(size_t)r * ldy + h + n] = _mm512_reduce_add_ps(_mm512_add_ps(b0[r], b1[r]));
  }
}

/* Weight rows w (n) and v (h + n) against G (1-4) activation rows: one call per G so the inner
 * loops keep constant trip counts. */
__attribute__((target("avx512f"), always_inline))
static inline void pairGroup(const float *w, const float *v, const float *X, int ldx, float *Y, int ldy, int n, int h, int K, int prefetch, int far, int G) {
  switch (G) {
    case 4: pairRows512(w, v, X, ldx, Y, ldy, n, h, K, prefetch, far, 4); break;
    case 3: pairRows512(w, v, X, ldx, Y, ldy, n, h, K, prefetch, far, 3); break;
    case 2: pairRows512(w, v, X, ldx, Y, ldy, n, h, K, prefetch, far, 2); break;
    default: pairRows512(w, v, X, ldx, Y, ldy, n, h, K, prefetch, far, 1); break;
  }
}

/* Bytes of weight pairs one tile of the many-row loop holds (see gemmAvx512). */
#define TILE_BYTES (128 * 1024)

__attribute__((target("avx512f")))
void gemmAvx512(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R) {
  const int h = N / 2;
  const float *V = W + (size_t)h * K;
  if (R <= 8) {
    /* Each pair of weight rows, once, for every group of four activation rows: the first group
     * streams the pair from memory (prefetched 1 KiB ahead, as gemv does) and the later group finds
     * it in L1. With several rows the arithmetic per pair is long enough that the stream stalls
     * between pairs: measured, an 8-row step took the sum of a 1-row step's read and the rows'
     * arithmetic from cache, nothing overlapped. So the pair after next is prefetched while this
     * pair is computed, by the second group (the first when there is one): that group's arithmetic
     * is when memory is otherwise idle. NTA, not T1: this CPU (AMD EPYC, Zen 4) gained nothing from
     * T1 (same time as no far prefetch at all), and T0 less than NTA. Measured with the step's
     * SmolLM2-135M matrices, 30 layers and the LM head, one core, interleaved in one run against
     * the previous kernel (T1, first group): 8 rows 0.79-0.81 of the time (27.0 -> 21.2 ms), 4 rows
     * 0.97-0.98, 1-2 rows equal. Two pairs ahead beat one (0.89) and three (0.83). One or two rows
     * keep gemv's prefetch alone (two rows: 4.4 ms without, 4.8-5.1 with, on a 1536 x 576 matrix). */
    const int farGroup = R > 4 ? 4 : 0;
    for (int n = 0; n < h; n++) {
      const float *w = W + (size_t)n * K, *v = V + (size_t)n * K;
      for (int r = 0; r < R; r += 4) pairGroup(w, v, X + (size_t)r * ldx, ldx, Y + (size_t)r * ldy, ldy, n, h, K, r == 0, r == farGroup && R > 2 ? 2 * K : 0, R - r < 4 ? R - r : 4);
    }
  } else {
    /* More rows (16-row batches, 64-row prompt chunks): the activations of every row no longer fit
     * L1 beside the pair (64 rows of 576 floats are 147 KB), so pair by pair every group re-read
     * its rows from L2. Instead a tile of pairs (TILE_BYTES, in L2) goes through one group of four
     * rows at a time, whose activations stay in L1: the first group streams the tile from memory,
     * the second prefetches the next tile. Measured as above, against the pair-by-pair loop:
     * 64 rows 0.51-0.55 of the time (about 155 of the kernel's ~175 GFLOP/s from cache), 32 rows
     * 0.57-0.59, 16 rows 0.78-0.82, 12 rows 0.91-0.93; 8 rows were 1.04-1.11, hence the loop above.
     * 32 and 64 KiB tiles did less well; T0 and NTA alike for the next tile. */
    int tile = TILE_BYTES / (8 * K);
    if (tile < 1) tile = 1;
    for (int n0 = 0; n0 < h; n0 += tile) {
      const int n1 = n0 + tile < h ? n0 + tile : h;
      for (int r = 0; r < R; r += 4) {
        const int G = R - r < 4 ? R - r : 4, far = r == 4 ? tile * K : 0;
        for (int n = n0; n < n1; n++) pairGroup(W + (size_t)n * K, V + (size_t)n * K, X + (size_t)r * ldx, ldx, Y + (size_t)r * ldy, ldy, n, h, K, r == 0, far, G);
      }
    }
  }
  if (N & 1) for (int r = 0; r < R; r++) Y[(size_t)r * ldy + N - 1] = dotAvx512(W + (size_t)(N - 1) * K, X + (size_t)r * ldx, K);
}

/* AVX2 has 16 vector registers: two activation rows at a time (8 accumulators). */
__attribute__((target("avx2,fma"), always_inline))
static inline void pairRows256(const float *w, const float *v, const float *X, int ldx, float *Y, int ldy, int n, int h, int K, int prefetch, const int NR) {
  __m256 a0[2], a1[2], b0[2], b1[2];
  const float *x[2];
  for (int r = 0; r < NR; r++) {
    a0[r] = a1[r] = b0[r] = b1[r] = _mm256_setzero_ps();
    x[r] = X + (size_t)r * ldx;
  }
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    if (prefetch) {
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD), _MM_HINT_T0);
    }
    const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
    const __m256 v0 = _mm256_loadu_ps(v + k), v1 = _mm256_loadu_ps(v + k + 8);
    for (int r = 0; r < NR; r++) {
      const __m256 x0 = _mm256_loadu_ps(x[r] + k), x1 = _mm256_loadu_ps(x[r] + k + 8);
      a0[r] = _mm256_fmadd_ps(w0, x0, a0[r]);
      b0[r] = _mm256_fmadd_ps(v0, x0, b0[r]);
      a1[r] = _mm256_fmadd_ps(w1, x1, a1[r]);
      b1[r] = _mm256_fmadd_ps(v1, x1, b1[r]);
    }
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = _mm256_loadu_ps(w + k), v0 = _mm256_loadu_ps(v + k);
    for (int r = 0; r < NR; r++) {
      const __m256 x0 = _mm256_loadu_ps(x[r] + k);
      a0[r] = _mm256_fmadd_ps(w0, x0, a0[r]);
      b0[r] = _mm256_fmadd_ps(v0, x0, b0[r]);
    }
  }
  for (int r = 0; r < NR; r++) {
    float sa = hsum256(_mm256_add_ps(a0[r], a1[r])), sb = hsum256(_mm256_add_ps(b0[r], b1[r]));
    for (int j = k; j < K; j++) {
      sa += w[j] * x[r][j];
      sb += v[j] * x[r][j];
    }
    Y[(size_t)r * ldy + n] = sa;
    Y[(size_t)r * ldy + h + n] = sb;
  }
}

__attribute__((target("avx2,fma")))
void gemmAvx2(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R) {
  const int h = N / 2;
  const float *V = W + (size_t)h * K;
  for (int n = 0; n < h; n++) {
    const float *w = W + (size_t)n * K, *v = V + (size_t)n * K;
    int r = 0;
    for (; r + 2 <= R; r += 2) pairRows256(w, v, X + (size_t)r * ldx, ldx, Y + (size_t)r * ldy, ldy, n, h, K, r == 0, 2);
    if (r < R) pairRows256(w, v, X + (size_t)r * ldx, ldx, Y + (size_t)r * ldy, ldy, n, h, K, r == 0, 1);
  }
  if (N & 1) for (int r = 0; r < R; r++) Y[(size_t)r * ldy + N - 1] = dotAvx2(W + (size_t)(N - 1) * K, X + (size_t)r * ldx, K);
}

GemmFn gemm = gemmScalar;
