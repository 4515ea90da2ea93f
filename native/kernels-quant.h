/*
 * The AVX-512 VNNI pieces of the quantized kernels (see kernels-quant.c for the arithmetic and the
 * layouts), shared by gemvQAvx512 (kernels-quant.c, one activation row) and gemmQAvx512 (gemm-q.c,
 * many rows). One copy of these inline functions is what keeps a batched row bitwise equal to the
 * same row run alone: both kernels do each row's integer dots, zero-point correction and float
 * multiply-add through the very same code, only the loop around them differs.
 */
#ifndef MORRIS_KERNELS_QUANT_H
#define MORRIS_KERNELS_QUANT_H

#include <string.h>
#include "kernels.h"

static inline int perChunk(int bits) { return bits == 8 ? 64 : 128; }

static inline int zeroPoint(const Mat *m, int n, int b) {
  if (m->bits == 8) return m->zeros[(size_t)n * m->nBlocks + b];
  uint8_t z = m->zeros[(size_t)n * ((m->nBlocks + 1) / 2) + (b >> 1)];
  return b & 1 ? z >> 4 : z & 15;
}

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) static inline

/* int32 lanes of one chunk: lane i = sum over its 4 (int8) or 8 (int4) elements of code * xq. */
VNNI __m512i chunkDot(int bits, __m512i codes, const int8_t *xq) {
  const __m512i zero = _mm512_setzero_si512();
  if (bits == 8) return _mm512_dpbusd_epi32(zero, codes, _mm512_loadu_si512(xq));
  const __m512i low = _mm512_set1_epi8(15);
  const __m512i d = _mm512_dpbusd_epi32(zero, _mm512_and_si512(codes, low), _mm512_loadu_si512(xq));
  return _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(codes, 4), low), _mm512_loadu_si512(xq + 64));
}

/* The weight scale of each lane of chunk c: bpc blocks per chunk (2 or 4), or 0 when a block spans
 * cpb whole chunks. `have`: how many of the chunk's blocks exist (fewer in a row's last chunk). */
VNNI __m512 laneScales(const float *sc, int c, int bpc, int cpb, int have) {
  if (!bpc) return _mm512_set1_ps(sc[c / cpb]);
  const __m512i idx = bpc == 2 ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                               : _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps((__mmask16)((1u << have) - 1), sc + (size_t)c * bpc));
}

/* The zero point of each lane of chunk c of row n, as int32 (high half zero, for vpdpwssd): the
 * chunk's 2 or 4 zero points broadcast as one little-endian field (a load, no scalar work: the
 * scalar zero point per block cost more than the dot products themselves) and shifted into place
 * per lane. A row's last chunk reads only the zero bytes that exist (masked); lanes of absent
 * blocks have no codes and zero activation sums, so their zero point does not matter. */
VNNI __m512i zeroLanes(const Mat *m, int n, int c, int bits, int bpc, int cpb, int have) {
  if (!bpc) return _mm512_set1_epi32(zeroPoint(m, n, c / cpb));
  const uint8_t *z = m->zeros + (size_t)n * (bits == 8 ? m->nBlocks : (m->nBlocks + 1) / 2) + (size_t)c * bpc * bits / 8;
  const int bytes = bpc * bits / 8; /* 1, 2 or 4 */
  __m512i w;
  if (have < bpc) w = _mm512_broadcastd_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(((__mmask64)1 << ((have * bits + 7) / 8)) - 1, z)));
  else if (bytes == 1) w = _mm512_set1_epi8((char)*z);
  else if (bytes == 2) { uint16_t v; memcpy(&v, z, 2); w = _mm512_set1_epi16((short)v); }
  else { uint32_t v; memcpy(&v, z, 4); w = _mm512_set1_epi32((int)v); }
  const __m512i shift = bpc == 2 ? _mm512_set_epi32(bits, bits, bits, bits, bits, bits, bits, bits, 0, 0, 0, 0, 0, 0, 0, 0)
                                 : _mm512_set_epi32(3 * bits, 3 * bits, 3 * bits, 3 * bits, 2 * bits, 2 * bits, 2 * bits, 2 * bits, bits, bits, bits, bits, 0, 0, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi32(w, shift), _mm512_set1_epi32((1 << bits) - 1));
}

/* One chunk of one row into its accumulator: int32 lane dots minus zero point x the lane's
 * activation code sum (vpdpwssd against the negated sums), then scaled by weight x activation scale. */
VNNI __m512 chunkAcc(__m512 acc, int bits, __m512i codes, const int8_t *xq, const int32_t *nsum, const float *lane, __m512 ws, __m512i zl) {
  __m512i d = chunkDot(bits, codes, xq);
  d = _mm512_dpwssd_epi32(d, zl, _mm512_loadu_si512(nsum));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws, _mm512_loadu_ps(lane)), acc);
}

/* Four chunks of one int4 row with blocks of QX_BLOCK (16 blocks, 256 code bytes), block sums
 * first: the 4 lanes of each block are added in integers (a 4x4 transpose of unpacks, lane 4t+k
 * = block 4k+t), so the zero point, the scales and the float multiply-add run once per 16 blocks
 * instead of once per 4. Measured from L2/L3 at SmolLM2's shapes, the per-chunk loop ran int4 at
 * 25-32 GB/s of weights, barely above DRAM speed, so the step was compute-bound; see rowPair. */
VNNI __m512 groupAcc(__m512 acc, const uint8_t *codes, const int8_t *xq, const int32_t *gsum, const float *gscale, const float *ws, const uint8_t *zeros) {
  const __m512i d0 = chunkDot(4, _mm512_loadu_si512(codes), xq), d1 = chunkDot(4, _mm512_loadu_si512(codes + 64), xq + 128);
  const __m512i d2 = chunkDot(4, _mm512_loadu_si512(codes + 128), xq + 256), d3 = chunkDot(4, _mm512_loadu_si512(codes + 192), xq + 384);
  const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(d0, d1), _mm512_unpackhi_epi32(d0, d1));
  const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(d2, d3), _mm512_unpackhi_epi32(d2, d3));
  __m512i d = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
  /* zero points: the 8 bytes (16 nibbles) in every 128-bit lane, lane 4t+k takes nibble 4k+t */
  uint64_t zb;
  memcpy(&zb, zeros, 8);
  const __m512i pick = _mm512_set_epi32((int)0x80808007, (int)0x80808005, (int)0x80808003, (int)0x80808001, (int)0x80808007, (int)0x80808005, (int)0x80808003, (int)0x80808001,
                                        (int)0x80808006, (int)0x80808004, (int)0x80808002, (int)0x80808000, (int)0x80808006, (int)0x80808004, (int)0x80808002, (int)0x80808000);
  const __m512i shift = _mm512_set_epi32(4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0);
  const __m512i z = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi8(_mm512_set1_epi64((long long)zb), pick), shift), _mm512_set1_epi32(15));
  d = _mm512_dpwssd_epi32(d, z, _mm512_loadu_si512(gsum));
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  const __m512 w = _mm512_permutexvar_ps(order, _mm512_loadu_ps(ws));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(w, _mm512_loadu_ps(gscale)), acc);
}

/* The last 16 or 32 code bytes of an int4 row of 32-blocks (SmolLM2's 576 columns end so: 18
 * blocks, 4.5 chunks), in 256-bit registers: Zen 4 runs a 512-bit operation as two 256-bit halves,
 * so the half-empty chunk costs half. Same math as chunkAcc on lanes 0-7. */
VNNI __m512 halfAcc4(__m512 acc, const uint8_t *codes, int tail, const int8_t *xq, const int32_t *nsum, const float *lane, const float *sc, const uint8_t *zb, int have) {
  const __m256i c = _mm256_maskz_loadu_epi8((__mmask32)(((uint64_t)1 << tail) - 1), codes), low = _mm256_set1_epi8(15);
  __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(c, low), _mm256_loadu_si256((const __m256i *)xq));
  d = _mm256_dpbusd_epi32(d, _mm256_and_si256(_mm256_srli_epi16(c, 4), low), _mm256_loadu_si256((const __m256i *)(xq + 64)));
  /* one zero byte holds this tail's one or two zero points (a lone last one has a zero high nibble) */
  const __m256i z = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(*zb), _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0)), _mm256_set1_epi32(15));
  d = _mm256_dpwssd_epi32(d, z, _mm256_loadu_si256((const __m256i *)nsum));
  const __m256 w = _mm256_permutexvar_ps(_mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), _mm256_maskz_loadu_ps((__mmask8)((1u << have) - 1), sc));
  const __m256 part = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(w, _mm256_loadu_ps(lane)));
  return _mm512_add_ps(acc, _mm512_zextps256_ps512(part));
}

#endif
