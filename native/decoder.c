/*
 * One-token decode step of a Llama-family decoder (batch 1; fp32 weights, or the int8/int4 codes
 * ONNX Runtime's MatMulNBits reads), for CPUs.
 *
 * Why this exists: single-token decode is a chain of matrix-vector products whose speed is set
 * by how fast the weights stream from memory. ONNX Runtime's one-row fp32 matmul reads them at
 * about 60% of the bandwidth a plain read reaches on one core (measured; see README "Figures"),
 * and ONNX Runtime for Node cannot load custom-op libraries, so the decode step runs here. Prompt
 * processing, batches and GPUs stay in the ONNX graph.
 *
 * The math mirrors src/model/llama-graph.ts (HF semantics: rotate_half RoPE, GQA, optional
 * q/k/v/o/MLP biases, Mistral's sliding window) and is tested against the float64 reference.
 * Weights are memory-mapped from the checkpoint's safetensors files (fp16/bf16 widened once, as
 * the ONNX path does), then the matrices a step streams are packed into one huge-page region in
 * read order (packWeights); the gemvs read each matrix as two prefetched streams.
 *
 * This file: the step (norms, RoPE, attention over a KV cache slot, the MLP, the LoRA side path)
 * and the decoder's memory (slots, owned buffers, release). The N-API side is addon.c and load.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "decoder.h"
#include "batch.h"

unsigned long long nowNs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

/* y = M x for either kind of matrix; a quantized one first quantizes x (kernels-quant.c) into
 * d->xq / d->xLane / d->xNsum (d->xGsum / d->xGscale for int4 blocks of QX_BLOCK). matvec is
 * matvecRun timed for the profile; the batched step's own timing calls matvecRun. */
void matvecRun(Decoder *d, const Mat *m, const float *x, float *y, int N, int K) {
  if (m->f) {
    gemv(m->f, x, y, N, K);
    return;
  }
  const int grouped = m->bits == 4 && m->block == QX_BLOCK;
  quantizeActivations(m, x, K, d->xq, d->xLane, d->xNsum, grouped ? d->xGsum : NULL, d->xGscale);
  const QuantX qx = {d->xq, d->xLane, d->xNsum, grouped ? d->xGsum : NULL, d->xGscale};
  (quantVectorOk(m) ? gemvQ : gemvQScalar)(m, &qx, y, N);
}

void matvec(Decoder *d, const Mat *m, const float *x, float *y, int N, int K) {
  if (!d->profile) {
    matvecRun(d, m, x, y, N, K);
    return;
  }
  const unsigned long long t0 = nowNs();
  matvecRun(d, m, x, y, N, K);
  d->matrixNs += nowNs() - t0;
  d->matrixCalls++;
}

/* ---------- the per-row pieces of a step, shared with the batched step (batch.c) ----------
 * One copy of this arithmetic keeps a row's results bitwise the same whichever path runs it. */

void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* y = W x + b + scale * B (A x) (batch.c's linearRows does the same per row) */
static void linear(Decoder *d, const Layer *L, int m, const float *x, float *y, int out, int in) {
  matvec(d, &L->w[m], x, y, out, in);
  if (L->bias[m]) for (int i = 0; i < out; i++) y[i] += L->bias[m][i];
  const Lora *lo = &L->lora[m];
  if (lo->a) {
    float *down = d->loraTmp, *up = d->loraTmp + lo->r;
    gemv(lo->a, x, down, lo->r, in);
    gemv(lo->b, down, up, out, lo->r);
    for (int i = 0; i < out; i++) y[i] += lo->scale * up[i];
  }
}

void ropeTables(const Decoder *d, int position, float *cosT, float *sinT) {
  for (int i = 0; i < d->headDim / 2; i++) {
    double ang = (double)position * (double)d->invFreq[i];
    cosT[i] = (float)cos(ang);
    sinT[i] = (float)sin(ang);
  }
}

void rope(float *v, int nHeads, int hd, const float *cosT, const float *sinT) {
  int half = hd / 2;
  for (int hh = 0; hh < nHeads; hh++) {
    float *p = v + hh * hd;
    for (int i = 0; i < half; i++) {
      float x1 = p[i], x2 = p[i + half];
      p[i] = x1 * cosT[i] - x2 * sinT[i];
      p[i + half] = x2 * cosT[i] + x1 * sinT[i];
    }
  }
}

/* Writes one position's K/V (rotated) into the slot at cache index p. */
void storeKv(const Decoder *d, Slot *S, int l, int p, const float *k, const float *v) {
  const int hd = d->headDim, cap = S->cap;
  for (int g = 0; g < d->kvHeads; g++) {
    memcpy(S->k[l] + ((size_t)g * cap + p) * hd, k + g * hd, sizeof(float) * hd);
    memcpy(S->v[l] + ((size_t)g * cap + p) * hd, v + g * hd, sizeof(float) * hd);
  }
}

/* ctx = softmax(q K^T / sqrt(hd)) V for the row at cache index p: it sees [first .. p], where the
 * sliding window (if any) sets first. Uses d->scores (at least (p + 1) x heads per KV head floats). */
void attend(Decoder *d, const Slot *S, int l, int p, const float *q, float *ctx) {
  const int hd = d->headDim, nh = d->heads, group = nh / d->kvHeads, T = p + 1, cap = S->cap;
  const int first = d->window > 0 && p - d->window + 1 > 0 ? p - d->window + 1 : 0, n = T - first;
  const float scale = 1.0f / sqrtf((float)hd);
  /* The query heads that share a KV head are scored together: one batched product over that
   * head's cached keys reads them once for the group (GQA), where a dot per position and head
   * made heads x positions calls (measured: a fifth of an 8-row step at 100 positions). */
  for (int g = 0; g < d->kvHeads; g++) {
    const float *K = S->k[l] + (size_t)g * cap * hd + (size_t)first * hd;
    const float *V = S->v[l] + (size_t)g * cap * hd + (size_t)first * hd;
    float *sc = d->scores; /* [group, n] */
    gemm(K, q + (size_t)g * group * hd, hd, sc, n, n, hd, group);
    for (int r = 0; r < group; r++) {
      float *s = sc + (size_t)r * n, mx = -INFINITY, z = 0;
      for (int j = 0; j < n; j++) {
        s[j] *= scale;
        if (s[j] > mx) mx = s[j];
      }
      for (int j = 0; j < n; j++) z += (s[j] = expf(s[j] - mx));
      const float inv = 1.0f / z;
      for (int j = 0; j < n; j++) s[j] *= inv;
      memset(ctx + (size_t)(g * group + r) * hd, 0, sizeof(float) * hd);
    }
    /* ctx[h] += p[h][j] V[j] with V[j] read once for the group's heads */
    wsum(ctx + (size_t)g * group * hd, hd, sc, n, V, n, group, hd);
  }
}

/* T positions of every KV head from src to dst, whose heads are srcCap and dstCap positions apart
 * (a slot's layout, or an exported array's with cap = T). */
void kvCopy(const Decoder *d, float *dst, int dstCap, const float *src, int srcCap, int T) {
  const size_t hd = d->headDim;
  for (int g = 0; g < d->kvHeads; g++) memcpy(dst + (size_t)g * dstCap * hd, src + (size_t)g * srcCap * hd, sizeof(float) * T * hd);
}

/* gate = silu(gate) * up, in place */
void siluMul(float *gate, const float *up, int n) {
  for (int i = 0; i < n; i++) {
    float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

/* ---------- the step ---------- */

void step(Decoder *d, const StepArgs *a) {
  const int H = d->hidden, hd = d->headDim, nh = d->heads, nkv = d->kvHeads;
  Slot *S = a->slot;
  const int pastLen = S->len;
  ropeTables(d, a->position, d->cosT, d->sinT);
  memcpy(d->x, d->embed + (size_t)a->token * H, sizeof(float) * H);
  for (int l = 0; l < d->layers; l++) {
    const Layer *L = &d->layer[l];
    rmsnorm(d->h, d->x, L->inNorm, H, d->eps);
    linear(d, L, 0, d->h, d->q, nh * hd, H);
    linear(d, L, 1, d->h, d->k, nkv * hd, H);
    linear(d, L, 2, d->h, d->v, nkv * hd, H);
    rope(d->q, nh, hd, d->cosT, d->sinT);
    rope(d->k, nkv, hd, d->cosT, d->sinT);
    storeKv(d, S, l, pastLen, d->k, d->v);
    attend(d, S, l, pastLen, d->q, d->ctx);
    linear(d, L, 3, d->ctx, d->t1, H, nh * hd);
    for (int i = 0; i < H; i++) d->x[i] += d->t1[i];
    rmsnorm(d->h, d->x, L->postNorm, H, d->eps);
    linear(d, L, 4, d->h, d->t1, d->inter, H);
    linear(d, L, 5, d->h, d->t2, d->inter, H);
    siluMul(d->t1, d->t2, d->inter);
    linear(d, L, 6, d->t1, d->t2, H, d->inter);
    for (int i = 0; i < H; i++) d->x[i] += d->t2[i];
  }
  rmsnorm(d->h, d->x, d->norm, H, d->eps);
  matvec(d, &d->head, d->h, a->logits, d->vocab, H);
  S->len = pastLen + 1;
}

/* ---------- KV cache slots ---------- */

void slotFree(Decoder *d, Slot *S) {
  if (S->block && S->mapped) munmap(S->block, S->blockLen);
  else free(S->block);
  free(S->k);
  free(S->v);
  memset(S, 0, sizeof *S);
}

/* Room for `need` positions; grows by doubling so a long generation reallocates O(log n) times. */
int slotReserve(Decoder *d, Slot *S, int need) {
  if (need <= S->cap) return 1;
  int cap = S->cap ? S->cap : 64;
  while (cap < need) cap *= 2;
  /* One piece for every layer's K and V, on 2 MiB pages once it is that large. Why: as a malloc per
   * layer and K/V (4 KiB pages), attention's reads of the cache (at 8 rows of 100-400 positions,
   * 37-150 MB a step) crossed a page every 4 KiB of every head. Measured in one run interleaved
   * with the per-layer mallocs, 8 rows a step: 0.94-0.975 of the time at 100 and 400 positions;
   * one row unchanged within noise. The cache is then resident by the 2 MiB, which the KV budget
   * (batch-capacity.ts) already counts at full context. */
  const size_t per = (size_t)d->kvHeads * cap * d->headDim, len = sizeof(float) * per * 2 * d->layers;
  float **k = calloc(d->layers, sizeof(float *)), **v = calloc(d->layers, sizeof(float *));
  void *block = NULL;
  int mapped = 0;
  if (k && v) {
    if (len >= ((size_t)2 << 20)) {
      block = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (block == MAP_FAILED) block = NULL;
      else {
        mapped = 1;
        madvise(block, len, MADV_HUGEPAGE);
      }
    } else if (posix_memalign(&block, 64, len) != 0) block = NULL;
  }
  if (!block) { free(k); free(v); return 0; }
  for (int l = 0; l < d->layers; l++) {
    k[l] = (float *)block + per * 2 * l;
    v[l] = k[l] + per;
    if (S->k) {
      kvCopy(d, k[l], cap, S->k[l], S->cap, S->len);
      kvCopy(d, v[l], cap, S->v[l], S->cap, S->len);
    }
  }
  int keep = S->len;
  slotFree(d, S);
  S->k = k;
  S->v = v;
  S->block = block;
  S->blockLen = len;
  S->mapped = mapped;
  S->cap = cap;
  S->len = keep;
  S->used = 1;
  return 1;
}

/* A free slot id (the slot table grows by 4), with room for one position; -1 when out of memory. */
int slotAlloc(Decoder *d) {
  int id = 0;
  while (id < d->nSlots && d->slots[id].used) id++;
  if (id == d->nSlots) {
    Slot *grown = realloc(d->slots, sizeof(Slot) * (d->nSlots + 4));
    if (!grown) return -1;
    memset(grown + d->nSlots, 0, sizeof(Slot) * 4);
    d->slots = grown;
    d->nSlots += 4;
  }
  if (!slotReserve(d, &d->slots[id], 1)) return -1;
  d->slots[id].len = 0;
  return id;
}

/* Whether the step in flight (single or batched) writes to this slot. */
int slotRunning(const Decoder *d, const Slot *S) {
  if (!d->busy) return 0;
  if (d->running == S) return 1;
  for (int i = 0; i < d->runningCount; i++) if (d->runningRows[i].slot == S) return 1;
  return 0;
}

/* Attention scores for up to `need` positions of every query head of one KV head. */
int scoresReserve(Decoder *d, int need) {
  if (d->scoresCap >= need) return 1;
  float *p = malloc(sizeof(float) * need * (d->heads / d->kvHeads));
  if (!p) return 0;
  free(d->scores);
  d->scores = p;
  d->scoresCap = need;
  return 1;
}

/* ---------- loading ---------- */

void *trackOwned(Decoder *d, size_t bytes) {
  if (d->nOwned == d->capOwned) {
    d->capOwned = d->capOwned ? d->capOwned * 2 : 64;
    d->owned = realloc(d->owned, sizeof(void *) * d->capOwned);
  }
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
  d->owned[d->nOwned++] = p;
  return p;
}

/* Unmaps and frees everything but the struct itself, which the JS handle points to until GC. */
void releaseResources(Decoder *d) {
  for (int i = 0; i < d->nMaps; i++) if (d->maps[i]) munmap(d->maps[i], d->mapLens[i]);
  if (d->arena) munmap(d->arena, d->arenaLen);
  d->arena = NULL;
  d->arenaLen = 0;
  for (int i = 0; i < d->nOwned; i++) free(d->owned[i]);
  free(d->maps);
  free(d->mapLens);
  free(d->owned);
  free(d->layer);
  free(d->scores);
  batchFree(d);
  for (int i = 0; i < d->nSlots; i++) slotFree(d, &d->slots[i]);
  free(d->slots);
  d->slots = NULL;
  d->nSlots = 0;
  d->maps = NULL;
  d->mapLens = NULL;
  d->owned = NULL;
  d->layer = NULL;
  d->scores = NULL;
  d->nMaps = d->nOwned = d->capOwned = d->scoresCap = 0;
  d->released = 1;
}

void freeDecoder(Decoder *d) {
  if (!d) return;
  releaseResources(d);
  free(d);
}
