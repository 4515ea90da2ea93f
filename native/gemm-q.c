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

/* gemvQ's zero point (kernels.c zeroPoint), inlined here: it is read once per block and row. */
static inline int zeroAt(const Mat *m, int n, int b) {
  if (m->bits == 8) return m->zeros[(size_t)n * m->nBlocks + b];
  uint8_t z = m->zeros[(size_t)n * ((m->nBlocks + 1) / 2) + (b >> 1)];
  return b & 1 ? z >> 4 : z & 15;
}

/* Weight rows n0 and, when TWO, n1 against NR activation rows; BITS, TWO and NR are constants at
 * each call, so the branches fold away and the accumulators stay in registers. Each block's codes
 * are widened once (for int4, 16 bytes give two groups, as in blockDotQ512) and used for all rows. */
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline void qRows512(const Mat *m, int n0, int n1, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int prefetch, const int BITS, const int TWO, const int NR) {
  const int blob = m->block * BITS / 8, groups = m->block / 16;
  const uint8_t *row0 = m->codes + (size_t)n0 * m->nBlocks * blob, *row1 = TWO ? m->codes + (size_t)n1 * m->nBlocks * blob : row0;
  const float *sc0 = m->scales + (size_t)n0 * m->nBlocks, *sc1 = TWO ? m->scales + (size_t)n1 * m->nBlocks : sc0;
  const __m128i low = _mm_set1_epi8(15);
  __m512 acc0[4], acc1[4];
  float corr0[4], corr1[4];
  for (int r = 0; r < NR; r++) {
    acc0[r] = acc1[r] = _mm512_setzero_ps();
    corr0[r] = corr1[r] = 0;
  }
  for (int b = 0; b < m->nBlocks; b++) {
    if (prefetch) {
      _mm_prefetch((const char *)(row0 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
      if (TWO) _mm_prefetch((const char *)(row1 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
    }
    const uint8_t *c0 = row0 + (size_t)b * blob, *c1 = row1 + (size_t)b * blob;
    const size_t xOff = (size_t)b * m->block;
    __m512 dot0[4], dot1[4];
    for (int r = 0; r < NR; r++) dot0[r] = dot1[r] = _mm512_setzero_ps();
    /* each activation vector is loaded once for both weight rows (folded into each FMA, the
     * compiler loaded it twice), and each dot still sums its groups in order */
    if (BITS == 8) {
      for (int g = 0; g < groups; g++) {
        const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c0 + 16 * g))));
        const __m512 w1 = TWO ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c1 + 16 * g)))) : w0;
        for (int r = 0; r < NR; r++) {
          __m512 xg = _mm512_loadu_ps(X + (size_t)r * ldx + xOff + 16 * g);
          __asm__("" : "+v"(xg));
          dot0[r] = _mm512_fmadd_ps(w0, xg, dot0[r]);
          if (TWO) dot1[r] = _mm512_fmadd_ps(w1, xg, dot1[r]);
        }
      }
    } else {
      for (int g = 0; g < groups; g += 2) { /* 16 bytes hold 32 codes */
        const int both = g + 1 < groups;
        const __m128i by0 = _mm_loadu_si128((const __m128i *)(c0 + 8 * g));
        const __m128i lo0 = _mm_and_si128(by0, low), hi0 = _mm_and_si128(_mm_srli_epi16(by0, 4), low);
        const __m512 w0a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo0, hi0)));
        const __m512 w0b = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo0, hi0)));
        __m512 w1a = w0a, w1b = w0b;
        if (TWO) {
          const __m128i by1 = _mm_loadu_si128((const __m128i *)(c1 + 8 * g));
          const __m128i lo1 = _mm_and_si128(by1, low), hi1 = _mm_and_si128(_mm_srli_epi16(by1, 4), low);
          w1a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo1, hi1)));
          w1b = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo1, hi1)));
        }
        for (int r = 0; r < NR; r++) {
          const float *xr = X + (size_t)r * ldx + xOff + 16 * g;
          __m512 xa = _mm512_loadu_ps(xr);
          __asm__("" : "+v"(xa));
          dot0[r] = _mm512_fmadd_ps(w0a, xa, dot0[r]);
          if (TWO) dot1[r] = _mm512_fmadd_ps(w1a, xa, dot1[r]);
          if (both) {
            __m512 xb = _mm512_loadu_ps(xr + 16);
            __asm__("" : "+v"(xb));
            dot0[r] = _mm512_fmadd_ps(w0b, xb, dot0[r]);
            if (TWO) dot1[r] = _mm512_fmadd_ps(w1b, xb, dot1[r]);
          }
        }
      }
    }
    const float s0 = sc0[b] * (float)zeroAt(m, n0, b), s1 = TWO ? sc1[b] * (float)zeroAt(m, n1, b) : 0;
    for (int r = 0; r < NR; r++) {
      const float xs = XS[(size_t)r * ldxs + b];
      acc0[r] = _mm512_fmadd_ps(_mm512_set1_ps(sc0[b]), dot0[r], acc0[r]);
      corr0[r] = fmaf(s0, xs, corr0[r]);
      if (TWO) {
        acc1[r] = _mm512_fmadd_ps(_mm512_set1_ps(sc1[b]), dot1[r], acc1[r]);
        corr1[r] = fmaf(s1, xs, corr1[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++) {
    Y[(size_t)r * ldy + n0] = _mm512_reduce_add_ps(acc0[r]) - corr0[r];
    if (TWO) Y[(size_t)r * ldy + n1] = _mm512_reduce_add_ps(acc1[r]) - corr1[r];
  }
}

/* All R rows against weight rows n0 (and n1 when TWO), four at a time; only the first group
 * prefetches, the rest find the codes in L1. */
#define Q_ROWS_ALL(BITS, TWO) \
  __attribute__((target("avx512f,avx512bw"))) \
  static void qRowsAll##BITS##_##TWO(const Mat *m, int n0, int n1, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int R) { \
    int r = 0; \
    for (; r + 4 <= R; r += 4) qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, BITS, TWO, 4); \
    switch (R - r) { \
      case 3: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, BITS, TWO, 3); break; \
      case 2: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, BITS, TWO, 2); break; \
      case 1: qRows512(m, n0, n1, X + (size_t)r * ldx, ldx, XS + (size_t)r * ldxs, ldxs, Y + (size_t)r * ldy, ldy, r == 0, BITS, TWO, 1); break; \
      default: break; \
    } \
  }
Q_ROWS_ALL(8, 1)
Q_ROWS_ALL(8, 0)
Q_ROWS_ALL(4, 1)
Q_ROWS_ALL(4, 0)

/* Needs whole groups of 16 codes per block, as gemvQAvx512 does (matmulRows falls back otherwise). */
__attribute__((target("avx512f,avx512bw")))
void gemmQAvx512(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R) {
  const int h = N / 2;
  if (m->bits == 8) {
    for (int n = 0; n < h; n++) qRowsAll8_1(m, n, h + n, X, ldx, XS, ldxs, Y, ldy, R);
    if (N & 1) qRowsAll8_0(m, N - 1, -1, X, ldx, XS, ldxs, Y, ldy, R);
  } else {
    for (int n = 0; n < h; n++) qRowsAll4_1(m, n, h + n, X, ldx, XS, ldxs, Y, ldy, R);
    if (N & 1) qRowsAll4_0(m, N - 1, -1, X, ldx, XS, ldxs, Y, ldy, R);
  }
}

GemmQFn gemmQ = gemmQScalar;
