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
  Slot *slots;
  int nSlots;
  int busy, released;
  void *arena; /* the packed weights (packWeights), or NULL when they are used in place */
  size_t arenaLen;
  int hugePages; /* the kernel accepted MADV_HUGEPAGE for the arena */
  Slot *running; /* the slot of the step in flight */
} Decoder;

typedef struct {
  Slot *slot;
  float *logits;
  int token, position;
} StepArgs;

void step(Decoder *d, const StepArgs *a);
int slotReserve(Decoder *d, Slot *S, int need);
void slotFree(Decoder *d, Slot *S);
void *trackOwned(Decoder *d, size_t bytes);
void releaseResources(Decoder *d);
void freeDecoder(Decoder *d);

#endif
