/*
 * The batched int8/int4 kernel: Y[r] = M X[r] for R activation rows already quantized (one QuantX
 * each, from quantizeActivations), the batched step's quantized matrices (batch.c, matmulRows).
 *
 * Why: decode on the CPU is bound by streaming the weights, and gemvQ run once per row streams
 * every code, scale and zero point R times a step, so batching gained nothing for int8/int4 (the
 * fp32 matrices already go through gemm). Here each weight row's codes are loaded into a register
 * once per 64-byte chunk and vpdpbusd'ed against every row's activation codes in turn.
 *
 * Bitwise: each activation row keeps its own accumulator and goes through exactly what
 * gemvQAvx512's rowPair does for one row (kernels-quant.h's chunkAcc / groupAcc / halfAcc4 in the
 * same order: 16-block groups first for int4 of 32-blocks, then whole chunks, then the tail, then
 * one _mm512_reduce_add_ps), so a row's result does not depend on the rest of the batch and the
 * batched step's logits stay bitwise those of decodeStep. Only the weight-side work (the code load,
 * nibble split, lane scales and zero points) is shared between rows: it is the same for all of
 * them, and after inlining the compiler computes it once per chunk (identical pure expressions).
 *
 * Loop order: rows go in groups of up to GROUP (their accumulators, with the chunk's codes,
 * scales and zero points, fit the 32 zmm registers). Weight rows go in tiles of about TILE_BYTES
 * of codes: the first group streams a tile from memory, the other groups find it in L1, and each
 * group's activations (64 code bytes + 64 lane scales + 64 lane sums a chunk per row, three times
 * the weight bytes) stay in L1 across the tile's rows instead of being re-read from L2 for every
 * weight row.
 */
#include "kernels-quant.h"

#define GROUP 4

/* Block b's 4-bit zero point in a row's packed zero points (two a byte, low nibble first). */
static inline int zeroNibble(const uint8_t *z, int b) { return b & 1 ? z[b >> 1] >> 4 : z[b >> 1] & 15; }
#define TILE_BYTES 8192

/* Weight row n against G activation rows (G a constant per instantiation, so the row loops unroll
 * and the accumulators live in registers). Prefetched 4 KiB ahead (rowPair: 1 KiB): the first
 * group's pass is the stream from memory, and the jump back to the tile's start for every other
 * group likely breaks the hardware prefetcher's stream, so the software one has to carry it. On a
 * busy 2-core VM, 8 rows took 45-47 ms against 53-58 ms with 1 KiB in two interleaved runs (a third
 * was even; 8 KiB no better). In the other groups the prefetch lands on the next tile. */
#define AHEAD (16 * PREFETCH_AHEAD)
VNNI void rowGroup(const Mat *m, const QuantX *x, float *Y, int ldy, int n, int G, int bits, int bpc) {
  const int blob = m->block * bits / 8, rowBytes = m->nBlocks * blob, full = rowBytes / 64, tail = rowBytes % 64;
  const int cpb = bpc ? 1 : blob / 64, step = perChunk(bits);
  const uint8_t *cr = m->codes + (size_t)n * rowBytes;
  const float *sr = m->scales + (size_t)n * m->nBlocks;
  /* the QuantX pointers in locals: through the structs every store would force a reload */
  const int8_t *xq[GROUP];
  const int32_t *ns[GROUP], *gs[GROUP];
  const float *ln[GROUP], *gc[GROUP];
  __m512 a[GROUP];
  for (int r = 0; r < G; r++) {
    xq[r] = x[r].q;
    ns[r] = x[r].nsum;
    ln[r] = x[r].lane;
    gs[r] = x[r].gsum;
    gc[r] = x[r].gscale;
    a[r] = _mm512_setzero_ps();
  }
  int c = 0;
  if (bits == 4 && bpc == 4 && gs[0]) { /* blocks of 32 (== QX_BLOCK): whole groups of 4 chunks */
    const uint8_t *zr = m->zeros + (size_t)n * ((m->nBlocks + 1) / 2);
    for (; c + 4 <= full; c += 4) {
      for (int i = 0; i < 4; i++) _mm_prefetch((const char *)(cr + 64 * (c + i) + AHEAD), _MM_HINT_T0);
      for (int r = 0; r < G; r++) a[r] = groupAcc(a[r], cr + 64 * c, xq[r] + c * step, gs[r] + 4 * c, gc[r] + 4 * c, sr + 4 * c, zr + 2 * c);
    }
  }
  if (!bpc) { /* a block spans cpb whole chunks: its scale and zero point once per block (the
                 * c / cpb of laneScales and zeroLanes cost an idiv a chunk; same values) */
    for (int b = 0; b < m->nBlocks; b++) {
      const __m512 ws = _mm512_set1_ps(sr[b]);
      const __m512i zl = _mm512_set1_epi32(bits == 8 ? m->zeros[(size_t)n * m->nBlocks + b] : zeroNibble(m->zeros + (size_t)n * ((m->nBlocks + 1) / 2), b));
      for (int k = 0; k < cpb; k++, c++) {
        _mm_prefetch((const char *)(cr + 64 * c + AHEAD), _MM_HINT_T0);
        const __m512i codes = _mm512_loadu_si512(cr + 64 * c);
        for (int r = 0; r < G; r++) a[r] = chunkAcc(a[r], bits, codes, xq[r] + c * step, ns[r] + 16 * c, ln[r] + 16 * c, ws, zl);
      }
    }
  }
  for (; c < full; c++) {
    _mm_prefetch((const char *)(cr + 64 * c + AHEAD), _MM_HINT_T0);
    const __m512i codes = _mm512_loadu_si512(cr + 64 * c);
    const __m512 ws = laneScales(sr, c, bpc, cpb, bpc);
    const __m512i zl = zeroLanes(m, n, c, bits, bpc, cpb, bpc);
    for (int r = 0; r < G; r++) a[r] = chunkAcc(a[r], bits, codes, xq[r] + c * step, ns[r] + 16 * c, ln[r] + 16 * c, ws, zl);
  }
  if (bits == 4 && bpc == 4 && tail && tail <= 32) {
    const uint8_t *zr = m->zeros + (size_t)n * ((m->nBlocks + 1) / 2);
    const int have = m->nBlocks - c * bpc;
    for (int r = 0; r < G; r++) a[r] = halfAcc4(a[r], cr + 64 * c, tail, xq[r] + c * step, ns[r] + 16 * c, ln[r] + 16 * c, sr + 4 * c, zr + 2 * c, have);
  } else if (tail) { /* the row's last chunk holds fewer blocks: read only its bytes */
    const int have = m->nBlocks - c * bpc;
    const __m512i codes = _mm512_maskz_loadu_epi8(((__mmask64)1 << tail) - 1, cr + 64 * c);
    const __m512 ws = laneScales(sr, c, bpc, cpb, have);
    const __m512i zl = zeroLanes(m, n, c, bits, bpc, cpb, have);
    for (int r = 0; r < G; r++) a[r] = chunkAcc(a[r], bits, codes, xq[r] + c * step, ns[r] + 16 * c, ln[r] + 16 * c, ws, zl);
  }
  for (int r = 0; r < G; r++) Y[(size_t)r * ldy + n] = _mm512_reduce_add_ps(a[r]);
}

/* Weight rows [n0, n1) against G rows; one copy per (G, bits, blocks per chunk). */
VNNI void tileQ(const Mat *m, const QuantX *x, float *Y, int ldy, int n0, int n1, int G, int bits, int bpc) {
  for (int n = n0; n < n1; n++) rowGroup(m, x, Y, ldy, n, G, bits, bpc);
}

#define TILE_FOR(G)                                                     \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void tile##G(const Mat *m, const QuantX *x, float *Y, int ldy, int n0, int n1, int bits, int bpc) { \
    if (bits == 8) {                                                    \
      if (bpc == 0) tileQ(m, x, Y, ldy, n0, n1, G, 8, 0);               \
      else if (bpc == 2) tileQ(m, x, Y, ldy, n0, n1, G, 8, 2);          \
      else tileQ(m, x, Y, ldy, n0, n1, G, 8, 4);                        \
    } else {                                                            \
      if (bpc == 0) tileQ(m, x, Y, ldy, n0, n1, G, 4, 0);               \
      else if (bpc == 2) tileQ(m, x, Y, ldy, n0, n1, G, 4, 2);          \
      else tileQ(m, x, Y, ldy, n0, n1, G, 4, 4);                        \
    }                                                                   \
  }
TILE_FOR(1)
TILE_FOR(2)
TILE_FOR(3)
TILE_FOR(4)

typedef void (*TileFn)(const Mat *m, const QuantX *x, float *Y, int ldy, int n0, int n1, int bits, int bpc);
static const TileFn tiles[GROUP + 1] = {0, tile1, tile2, tile3, tile4};

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
void gemmQAvx512(const Mat *m, const QuantX *x, int R, float *Y, int ldy, int N) {
  const int blob = m->block * m->bits / 8, bpc = blob >= 64 ? 0 : 64 / blob;
  const int rowBytes = m->nBlocks * blob, tile = rowBytes >= TILE_BYTES ? 1 : TILE_BYTES / rowBytes;
  for (int n0 = 0; n0 < N; n0 += tile) {
    const int n1 = n0 + tile < N ? n0 + tile : N;
    for (int r = 0; r < R; r += GROUP) {
      const int G = R - r < GROUP ? R - r : GROUP;
      tiles[G](m, x + r, Y + (size_t)r * ldy, ldy, n0, n1, m->bits, bpc);
    }
  }
}
