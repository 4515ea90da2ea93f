/*
 * The batched step (batch.c): one pass over the weights advances many rows, each a token of some
 * sequence (a decode step, or one position of a prompt prefilled in chunks), each with its own
 * LoRA adapter or the decoder's own. Every row's logits and K/V are bitwise those of step().
 */
#ifndef MORRIS_BATCH_H
#define MORRIS_BATCH_H

#include "decoder.h"

/* A LoRA adapter held apart from the decoder, so rows of one step can use different ones. */
typedef struct Adapter {
  unsigned magic;       /* ADAPTER_MAGIC (adapter.h); first, so any external can be checked */
  const Decoder *owner; /* compared, never dereferenced: the decoder may be gone */
  Lora *lora;           /* [layers * MODULES]; a == NULL where the adapter leaves a module alone */
  int layers, maxR;
  int busy;             /* steps in flight that use it */
  int released;
  void **owned;
  int nOwned, capOwned;
} Adapter;

typedef struct BatchRow {
  Slot *slot;
  const Adapter *adapter; /* NULL: the decoder's own LoRA (none for a base decoder) */
  int wantLogits;         /* 0: no logits for this row (the LM head, the biggest matrix, is skipped for it) */
  int token, position;
  int cacheIndex;         /* where its K/V go: the slot's length plus its index among the slot's rows */
} BatchRow;

typedef struct BatchScratch {
  int rows, maxR, stride;
  float *x, *h, *q, *k, *v, *ctx, *t1, *t2; /* [rows, stride] each */
  float *cosT, *sinT;                       /* [rows, headDim / 2] */
  float *loraX, *loraUp;                    /* [rows, stride]: one LoRA's rows gathered, and its B (A x) */
  float *loraDown;                          /* [rows, maxR rounded up to 16]: A x */
  void *block;                              /* the one allocation all of the above live in */
  const Lora **loraOf;                      /* [rows]: each row's LoRA pair in the matrix at hand */
  int *pick;                                /* [rows]: the rows gathered for one LoRA pair */
  char *done;                               /* [rows] */
  /* Quantized matrices: each row's activations quantized (QuantX pieces sized as the decoder's own,
   * load.c) at quant + r * quantStride, so gemmQ gets all rows at once; qx [rows] points at them. */
  uint8_t *quant;
  size_t quantStride;
  QuantX *qx;
} BatchScratch;

/* Room for `rows` rows with LoRA rank up to maxR; 0 when out of memory (the old buffers stay). */
int batchReserve(Decoder *d, int rows, int maxR);
/* Widest row any step buffer holds: hidden, heads * headDim or the MLP's width. */
int rowWidth(const Decoder *d);
void batchFree(Decoder *d);
/* Runs R rows (validated by the caller: slots reserved for every cacheIndex, scratch for R rows);
 * logits: [rows with wantLogits, vocab], in row order. */
void batchStep(Decoder *d, const BatchRow *rows, int R, float *logits);

/* y[r] = W x[r] for R rows (row r of X at X + r * ldx), bitwise gemv's result for each row. */
void matmulRows(Decoder *d, const Mat *m, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);

#endif
