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
 * The scalar kernel does the same integer math (same codes, same activation codes, exact int32 dot
 * products); only the order of the float sums differs, so ISAs agree to float rounding.
 */
#include <math.h>
#include <string.h>
#include "kernels.h"

static inline int perChunk(int bits) { return bits == 8 ? 64 : 128; }

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

static inline int zeroPoint(const Mat *m, int n, int b) {
  if (m->bits == 8) return m->zeros[(size_t)n * m->nBlocks + b];
  uint8_t z = m->zeros[(size_t)n * ((m->nBlocks + 1) / 2) + (b >> 1)];
  return b & 1 ? z >> 4 : z & 15;
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

/* Rows r0 and r1 (one from each half of the matrix, as the fp32 kernel does: two streams far apart
 * keep more reads in flight on one core), prefetched 1 KiB ahead like the fp32 gemv. The QuantX
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
        _mm_prefetch((const char *)(c0 + 64 * (c + i) + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(c1 + 64 * (c + i) + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
      }
      a0 = groupAcc(a0, c0 + 64 * c, xq + c * step, x->gsum + 4 * c, x->gscale + 4 * c, s0 + 4 * c, z0 + 2 * c);
      a1 = groupAcc(a1, c1 + 64 * c, xq + c * step, x->gsum + 4 * c, x->gscale + 4 * c, s1 + 4 * c, z1 + 2 * c);
    }
  }
  for (; c < full; c++) {
    _mm_prefetch((const char *)(c0 + 64 * c + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
    _mm_prefetch((const char *)(c1 + 64 * c + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
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
