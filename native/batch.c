/*
 * The batched step: R rows, each one token of one sequence, through every layer together, so each
 * weight matrix is streamed once per step for all rows (gemm.c, gemm-q.c) rather than once per
 * row. Rows of one sequence may be consecutive positions (a prompt prefilled in chunks): each
 * row's K/V is written to its slot before any row attends, and a row attends causally, to its
 * slot's positions up to its own, so later rows in the same step cannot leak into earlier ones.
 *
 * Everything that is not a matrix product runs per row through the very functions step() uses
 * (decoder.c), and the matrix kernels keep gemv's per-row accumulation order, so each row's
 * logits and K/V are bitwise those of decodeStep, whatever else the batch holds.
 */
#include <stdlib.h>
#include <string.h>
#include "batch.h"

int rowWidth(const Decoder *d) {
  int w = d->hidden > d->heads * d->headDim ? d->hidden : d->heads * d->headDim;
  return d->inter > w ? d->inter : w;
}

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; } /* floats: 64 bytes */
static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* One row's quantized activations, as load.c sizes the decoder's: q, then lane, nsum, gsum and
 * gscale, each on its own cache lines. */
static size_t quantPieces(int chunkCap, size_t at[5]) {
  const size_t len[5] = {(size_t)128 * chunkCap + 64, sizeof(float) * 16 * ((size_t)chunkCap + 1), sizeof(int32_t) * 16 * ((size_t)chunkCap + 1),
                         sizeof(int32_t) * 4 * ((size_t)chunkCap + 4), sizeof(float) * 4 * ((size_t)chunkCap + 4)};
  size_t total = 0;
  for (int i = 0; i < 5; i++) { at[i] = total; total += align64(len[i]); }
  return total;
}

static void freeScratch(BatchScratch *s) {
  free(s->block);
  free(s->quant);
  free(s->qx);
  free(s->loraOf);
  free(s->pick);
  free(s->done);
  free(s);
}

int batchReserve(Decoder *d, int rows, int maxR) {
  BatchScratch *old = d->batch;
  if (old && old->rows >= rows && old->maxR >= maxR) return 1;
  if (old && old->rows > rows) rows = old->rows;
  if (old && old->maxR > maxR) maxR = old->maxR;
  if (d->loraMaxR > maxR) maxR = d->loraMaxR;
  BatchScratch *s = calloc(1, sizeof *s);
  if (!s) return 0;
  s->loraOf = malloc(sizeof(Lora *) * rows);
  s->pick = malloc(sizeof(int) * rows);
  s->done = malloc(rows);
  size_t at[5];
  s->quantStride = d->chunkCap ? quantPieces(d->chunkCap, at) : 0;
  s->qx = malloc(sizeof(QuantX) * rows);
  if (s->quantStride && posix_memalign((void **)&s->quant, 64, s->quantStride * rows) != 0) s->quant = NULL;
  s->rows = rows;
  s->maxR = maxR;
  s->stride = (int)align16(rowWidth(d));
  const size_t half = align16(d->headDim / 2);
  const size_t floats = 10 * (size_t)rows * s->stride + 2 * rows * half + (size_t)rows * align16(maxR);
  if (!s->loraOf || !s->pick || !s->done || !s->qx || (s->quantStride && !s->quant) || posix_memalign(&s->block, 64, floats * sizeof(float)) != 0) {
    s->block = NULL;
    freeScratch(s);
    return 0;
  }
  float *p = s->block;
  float **rowBufs[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->ctx, &s->t1, &s->t2};
  for (int i = 0; i < 8; i++) { *rowBufs[i] = p; p += (size_t)rows * s->stride; }
  s->cosT = p; p += rows * half;
  s->sinT = p; p += rows * half;
  s->loraX = p; p += (size_t)rows * s->stride;
  s->loraUp = p; p += (size_t)rows * s->stride;
  s->loraDown = p;
  batchFree(d);
  d->batch = s;
  return 1;
}

void batchFree(Decoder *d) {
  if (!d->batch) return;
  freeScratch(d->batch);
  d->batch = NULL;
}

static void matmulRowsRun(Decoder *d, const Mat *m, const float *X, int ldx, float *Y, int ldy, int N, int K, int R) {
  if (m->f) {
    gemm(m->f, X, ldx, Y, ldy, N, K, R);
    return;
  }
  /* One row, layouts the vector kernel does not take, or no VNNI: row by row through matvec, which
   * is what decodeStep runs (one row keeps gemvQ's two streams from the matrix's two halves). */
  BatchScratch *s = d->batch;
  if (R == 1 || !gemmQ || !quantVectorOk(m) || !s->quant) {
    for (int r = 0; r < R; r++) matvecRun(d, m, X + (size_t)r * ldx, Y + (size_t)r * ldy, N, K);
    return;
  }
  /* Each row quantized exactly as matvec would alone, then the codes read once for all rows
   * (gemm-q.c), each row's result bitwise gemvQ's. */
  const int grouped = m->bits == 4 && m->block == QX_BLOCK;
  size_t at[5];
  quantPieces(d->chunkCap, at);
  for (int r = 0; r < R; r++) {
    uint8_t *p = s->quant + (size_t)r * s->quantStride;
    int8_t *q = (int8_t *)(p + at[0]);
    float *lane = (float *)(p + at[1]), *gscale = (float *)(p + at[4]);
    int32_t *nsum = (int32_t *)(p + at[2]), *gsum = grouped ? (int32_t *)(p + at[3]) : NULL;
    quantizeActivations(m, X + (size_t)r * ldx, K, q, lane, nsum, gsum, gscale);
    const QuantX qx = {q, lane, nsum, gsum, gscale};
    memcpy(&s->qx[r], &qx, sizeof qx); /* its members are const: filled by copy */
  }
  gemmQ(m, s->qx, R, Y, ldy, N);
}

/* The matrix products of a batched step, timed when the decoder profiles (see Decoder.matrixNs). */
void matmulRows(Decoder *d, const Mat *m, const float *X, int ldx, float *Y, int ldy, int N, int K, int R) {
  if (!d->profile) {
    matmulRowsRun(d, m, X, ldx, Y, ldy, N, K, R);
    return;
  }
  const unsigned long long t0 = nowNs();
  matmulRowsRun(d, m, X, ldx, Y, ldy, N, K, R);
  d->matrixNs += nowNs() - t0;
  d->matrixCalls++;
}

/* Y = W X + b, then each row's own LoRA (its adapter's, or the decoder's own for NULL), added
 * after the bias as linear() does. The rows of one LoRA pair are gathered (as S-LoRA and Punica
 * do) and run through the batched kernel, which gives each row gemv's bits. */
static void linearRows(Decoder *d, const BatchRow *rows, int R, int l, int m, const float *X, float *Y, int out, int in) {
  BatchScratch *s = d->batch;
  const int W = s->stride;
  const Layer *L = &d->layer[l];
  matmulRows(d, &L->w[m], X, W, Y, W, out, in, R);
  if (L->bias[m]) for (int r = 0; r < R; r++) for (int i = 0; i < out; i++) Y[(size_t)r * W + i] += L->bias[m][i];
  const Lora **lora = s->loraOf;
  int *pick = s->pick;
  char *done = s->done;
  for (int r = 0; r < R; r++) {
    lora[r] = rows[r].adapter ? &rows[r].adapter->lora[l * MODULES + m] : &L->lora[m];
    done[r] = 0;
  }
  const int ldDown = (int)align16(s->maxR);
  for (int r = 0; r < R; r++) {
    const Lora *lo = lora[r];
    if (done[r] || !lo->a) continue;
    int n = 0;
    for (int q = r; q < R; q++) if (!done[q] && lora[q]->a == lo->a) { done[q] = 1; pick[n] = q; memcpy(s->loraX + (size_t)n++ * W, X + (size_t)q * W, sizeof(float) * in); }
    gemm(lo->a, s->loraX, W, s->loraDown, ldDown, lo->r, in, n);
    gemm(lo->b, s->loraDown, ldDown, s->loraUp, W, out, lo->r, n);
    for (int j = 0; j < n; j++) {
      float *y = Y + (size_t)pick[j] * W;
      const float *up = s->loraUp + (size_t)j * W;
      for (int i = 0; i < out; i++) y[i] += lo->scale * up[i];
    }
  }
}

void batchStep(Decoder *d, const BatchRow *rows, int R, float *logits) {
  BatchScratch *s = d->batch;
  const int H = d->hidden, hd = d->headDim, nh = d->heads, nkv = d->kvHeads, W = s->stride, half = (int)align16(hd / 2);
#define ROW(buf, r) (s->buf + (size_t)(r) * W)
  for (int r = 0; r < R; r++) {
    ropeTables(d, rows[r].position, s->cosT + r * half, s->sinT + r * half);
    memcpy(ROW(x, r), d->embed + (size_t)rows[r].token * H, sizeof(float) * H);
  }
  for (int l = 0; l < d->layers; l++) {
    const Layer *L = &d->layer[l];
    for (int r = 0; r < R; r++) rmsnorm(ROW(h, r), ROW(x, r), L->inNorm, H, d->eps);
    linearRows(d, rows, R, l, 0, s->h, s->q, nh * hd, H);
    linearRows(d, rows, R, l, 1, s->h, s->k, nkv * hd, H);
    linearRows(d, rows, R, l, 2, s->h, s->v, nkv * hd, H);
    for (int r = 0; r < R; r++) { /* every row's K/V first: a prompt chunk's later rows attend to its earlier ones */
      rope(ROW(q, r), nh, hd, s->cosT + r * half, s->sinT + r * half);
      rope(ROW(k, r), nkv, hd, s->cosT + r * half, s->sinT + r * half);
      storeKv(d, rows[r].slot, l, rows[r].cacheIndex, ROW(k, r), ROW(v, r));
    }
    for (int r = 0; r < R; r++) attend(d, rows[r].slot, l, rows[r].cacheIndex, ROW(q, r), ROW(ctx, r));
    linearRows(d, rows, R, l, 3, s->ctx, s->t1, H, nh * hd);
    for (int r = 0; r < R; r++) {
      float *x = ROW(x, r);
      const float *t = ROW(t1, r);
      for (int i = 0; i < H; i++) x[i] += t[i];
      rmsnorm(ROW(h, r), x, L->postNorm, H, d->eps);
    }
    linearRows(d, rows, R, l, 4, s->h, s->t1, d->inter, H);
    linearRows(d, rows, R, l, 5, s->h, s->t2, d->inter, H);
    for (int r = 0; r < R; r++) siluMul(ROW(t1, r), ROW(t2, r), d->inter);
    linearRows(d, rows, R, l, 6, s->t1, s->t2, H, d->inter);
    for (int r = 0; r < R; r++) {
      float *x = ROW(x, r);
      const float *t = ROW(t2, r);
      for (int i = 0; i < H; i++) x[i] += t[i];
    }
  }
  /* the LM head only for the rows that want logits, gathered so it still streams once */
  int wanted = 0;
  for (int r = 0; r < R; r++) if (rows[r].wantLogits) rmsnorm(ROW(h, wanted++), ROW(x, r), d->norm, H, d->eps);
  if (wanted) matmulRows(d, &d->head, s->h, W, logits, d->vocab, d->vocab, H, wanted);
  for (int r = 0; r < R; r++) if (rows[r].cacheIndex + 1 > rows[r].slot->len) rows[r].slot->len = rows[r].cacheIndex + 1;
#undef ROW
}
