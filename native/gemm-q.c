/*
 * The batched step's int8/int4 kernel: Y[r] = M X[r] for R activation rows over MatMulNBits codes.
 *
 * Each block of codes is widened to fp32 once, in registers, and multiplied with every activation
 * row of the group (four at a time), so the codes stream from memory once per step. Bitwise
 * contract: per (weight row, activation row) the arithmetic is gemvQAvx512's (kernels.c): a block
 * dot from zero over groups of 16 codes in order, acc = fma(scale, dot, acc) per block, the zero
 * point as a scalar correction summed per block, and acc reduced minus the correction. The
 * correction is written as the fma GCC makes of gemvQAvx512's `corr += sc * zp * xs` (it contracts
 * by default, -ffp-contract=fast): left to the compiler here, the 2- and 3-row copies of the loop
 * were contracted differently and row 0 lost a bit. Whoever
 * changes gemvQAvx512's arithmetic changes this file the same way (native-batch.test.ts checks
 * int8 and int4 rows bitwise against single steps).
 */
#include <math.h>
#include <stddef.h>
#include "kernels.h"

/* The scalar fallback reads the codes once per activation row (only CPUs without AVX-512 BW). */
void gemmQScalar(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R) {
  for (int r = 0; r < R; r++) gemvQScalar(m, X + (size_t)r * ldx, XS + (size_t)r * ldxs, Y + (size_t)r * ldy, N);
}

/* Codes 16g .. 16g+15 of a block, widened (for int4, element 2j is the low nibble of byte j). */
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline __m512 codes16(int bits, const uint8_t *c, int g) {
  if (bits == 8) return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + 16 * g))));
  const __m128i low = _mm_set1_epi8(15);
  const __m128i bytes = _mm_loadu_si128((const __m128i *)(c + 8 * (g & ~1)));
  const __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(g & 1 ? _mm_unpackhi_epi8(lo, hi) : _mm_unpacklo_epi8(lo, hi)));
}

/* Weight rows n0 and n1 (n1 < 0: n0 alone) against NR activation rows. */
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline void qRows512(const Mat *m, int n0, int n1, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int prefetch, const int NR) {
  const int blob = m->block * m->bits / 8, groups = m->block / 16, two = n1 >= 0;
  const uint8_t *row0 = m->codes + (size_t)n0 * m->nBlocks * blob, *row1 = two ? m->codes + (size_t)n1 * m->nBlocks * blob : row0;
  const float *sc0 = m->scales + (size_t)n0 * m->nBlocks, *sc1 = two ? m->scales + (size_t)n1 * m->nBlocks : sc0;
  __m512 acc0[4], acc1[4];
  float corr0[4], corr1[4];
  for (int r = 0; r < NR; r++) {
    acc0[r] = acc1[r] = _mm512_setzero_ps();
    corr0[r] = corr1[r] = 0;
  }
  for (int b = 0; b < m->nBlocks; b++) {
    if (prefetch) {
      _mm_prefetch((const char *)(row0 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
      if (two) _mm_prefetch((const char *)(row1 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
    }
    const uint8_t *c0 = row0 + (size_t)b * blob, *c1 = row1 + (size_t)b * blob;
    __m512 dot0[4], dot1[4];
    for (int r = 0; r < NR; r++) dot0[r] = dot1[r] = _mm512_setzero_ps();
    for (int g = 0; g < groups; g++) {
      const __m512 w0 = codes16(m->bits, c0, g);
      const __m512 w1 = two ? codes16(m->bits, c1, g) : w0;
      for (int r = 0; r < NR; r++) {
        const __m512 xg = _mm512_loadu_ps(X + (size_t)r * ldx + (size_t)b * m->block + 16 * g);
        dot0[r] = _mm512_fmadd_ps(w0, xg, dot0[r]);
        if (two) dot1[r] = _mm512_fmadd_ps(w1, xg, dot1[r]);
      }
    }
    const int z0 = zeroPointOf(m, n0, b), z1 = two ? zeroPointOf(m, n1, b) : 0;
    for (int r = 0; r < NR; r++) {
      const float xs = XS[(size_t)r * ldxs + b];
      acc0[r] = _mm512_fmadd_ps(_mm512_set1_ps(sc0[b]), dot0[r], acc0[r]);
      corr0[r] = fmaf(sc0[b] * (float)z0, xs, corr0[r]);
      if (two) {
        acc1[r] = _mm512_fmadd_ps(_mm512_set1_ps(sc1[b]), dot1[r], acc1[r]);
        corr1[r] = fmaf(sc1[b] * (float)z1, xs, corr1[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++) {
    Y[(size_t)r * ldy + n0] = _mm512_reduce_add_ps(acc0[r]) - corr0[r];
    if (two) Y[(size_t)r * ldy + n1] = _mm512_reduce_add_ps(acc1[r]) - corr1[r];
  }
}

__attribute__((target("avx512f,avx512bw")))
static void qRowsAll(const Mat *m, int n0, int n1, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int R) {
  int r = 0;
  for (; r + 4 <= R; r += 4) qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, 4);
  switch (R - r) {
    case 3: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, 3); break;
    case 2: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, 2); break;
    case 1: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, 1); break;
    default: break;
  }
}

/* Needs whole groups of 16 codes per block, as gemvQAvx512 does (matmulRows falls back otherwise). */
__attribute__((target("avx512f,avx512bw")))
void gemmQAvx512(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R) {
  const int h = N / 2;
  for (int n = 0; n < h; n++) qRowsAll(m, n, h + n, X, ldx, XS, ldxs, Y, ldy, R);
  if (N & 1) qRowsAll(m, N - 1, -1, X, ldx, XS, ldxs, Y, ldy, R);
}

GemmQFn gemmQ = gemmQScalar;
