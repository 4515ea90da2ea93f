/*
 * The decoder's state (weights, scratch buffers, KV cache slots) and the one-token step over it
 * (decoder.c). Plain C without N-API: load.c fills a Decoder from the JS spec and addon.c runs
 * step() off the main thread.
 */
#ifndef MORRIS_DECODER_H
#define MORRIS_DECODER_H

#include <stddef.h>
#include "kernels.h"

#define MODULES 7 /* q k v o gate up down, the order of LORA_MODULES in llama-graph.ts */

typedef struct {
  const float *a; /* [r, in] */
  const float *b; /* [out, r] */
  int r;
  float scale;
} Lora;

typedef struct {
  const float *inNorm, *postNorm;
  Mat w[MODULES];
  const float *bias[MODULES];
  Lora lora[MODULES];
} Layer;

/* One sequence's KV cache: per layer [kvHeads, cap, headDim], so appending a position is O(1)
 * (the ONNX graph's present = concat(past, new) copies the whole cache every step). */
typedef struct {
  float **k, **v;
  int cap, len, used;
  void *block; /* every layer's K and V in one piece (slotReserve) */
  size_t blockLen;
  int mapped; /* block is an mmap (huge pages asked for), else malloc'd */
} Slot;

typedef struct {
  int hidden, inter, layers, heads, kvHeads, headDim, vocab, window;
  float eps;
  float *invFreq; /* [headDim / 2] */
  const float *embed, *norm;
  Mat head;
  Layer *layer;
  void **maps;
  size_t *mapLens;
  int nMaps;
  void **owned;
  int nOwned, capOwned;
  float *x, *h, *q, *k, *v, *ctx, *t1, *t2, *loraTmp, *scores, *cosT, *sinT;
  int8_t *xq; /* a quantized matvec's activations (QuantX) */
  float *xLane, *xGscale;
  int32_t *xNsum, *xGsum;
  int scoresCap;
  int chunkCap; /* the most 64-byte code chunks in a quantized row */
  int loraMaxR; /* the largest rank of the decoder's own LoRA pairs (0: none) */
  Slot *slots;
  int nSlots;
  int busy, released;
  void *arena; /* the packed weights (packWeights), or NULL when they are used in place */
  size_t arenaLen;
  int hugePages; /* the kernel accepted MADV_HUGEPAGE for the arena */
  Slot *running; /* the slot of the step in flight (NULL for a batched step: see runningBatch) */
  struct BatchScratch *batch; /* the batched step's buffers (batch.c), grown on demand */
  const struct BatchRow *runningRows; /* the rows of the batched step in flight */
  int runningCount;
  /* With spec.profile: nanoseconds spent in the base weights' matrix products (matvec, matmulRows)
   * and how many ran (one per matrix per step, whatever the rows), so a benchmark can split a step
   * into the weight stream and everything else. Off: no clock reads. */
  int profile;
  unsigned long long matrixNs, matrixCalls;
} Decoder;

typedef struct {
  Slot *slot;
  float *logits;
  int token, position;
} StepArgs;

void step(Decoder *d, const StepArgs *a);

/* The per-row pieces of step(), shared with the batched step (batch.c) so both give bitwise the same rows. */
void matvec(Decoder *d, const Mat *m, const float *x, float *y, int N, int K);
void matvecRun(Decoder *d, const Mat *m, const float *x, float *y, int N, int K);
unsigned long long nowNs(void);
void rmsnorm(float *out, const float *x, const float *w, int n, float eps);
void ropeTables(const Decoder *d, int position, float *cosT, float *sinT);
void rope(float *v, int nHeads, int hd, const float *cosT, const float *sinT);
void storeKv(const Decoder *d, Slot *S, int l, int p, const float *k, const float *v);
void kvCopy(const Decoder *d, float *dst, int dstCap, const float *src, int srcCap, int T);
void attend(Decoder *d, const Slot *S, int l, int p, const float *q, float *ctx);
void siluMul(float *gate, const float *up, int n);
int slotReserve(Decoder *d, Slot *S, int need);
void slotFree(Decoder *d, Slot *S);
int slotAlloc(Decoder *d);
int slotRunning(const Decoder *d, const Slot *S);
int scoresReserve(Decoder *d, int need);
void *trackOwned(Decoder *d, size_t bytes);
void releaseResources(Decoder *d);
void freeDecoder(Decoder *d);

#endif
