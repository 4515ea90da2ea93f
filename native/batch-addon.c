/*
 * N-API side of the batched step and the shared-prefix cache:
 *   decodeBatch(handle, slots: Int32Array, tokens: Int32Array, positions: Int32Array,
 *               adapters: (adapter | null)[], wantLogits: Uint8Array, logits: Float32Array) -> Promise<void>
 *     one step over R rows (batch.c) on a worker thread; logits holds [rows with wantLogits, vocab].
 *   cacheFork(handle, srcSlot, length) -> slot: a new slot holding the first `length` positions of src.
 * Everything is checked before the step is queued, so a refused step changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "adapter.h"
#include "addon.h"
#include "napi-helpers.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keepLogits; /* its buffer outlives the step */
  napi_ref *keepAdapters; /* [R]: each row's adapter handle (NULL for none), so none is collected mid-step
                           * even if the caller empties its array */
  Decoder *d;
  BatchRow *rows;
  int R;
  float *logits;
} BatchJob;

static void runBatch(napi_env env, void *data) {
  (void)env;
  BatchJob *j = data;
  batchStep(j->d, j->rows, j->R, j->logits);
}

static void finishBatch(napi_env env, napi_status status, void *data) {
  BatchJob *j = data;
  j->d->busy = 0;
  j->d->runningRows = NULL;
  j->d->runningCount = 0;
  for (int r = 0; r < j->R; r++) if (j->rows[r].adapter) ((Adapter *)j->rows[r].adapter)->busy--;
  settleDeferred(env, j->deferred, status, NULL, "batched decode step cancelled");
  napi_delete_reference(env, j->keepLogits);
  for (int r = 0; r < j->R; r++) if (j->keepAdapters[r]) napi_delete_reference(env, j->keepAdapters[r]);
  free(j->keepAdapters);
  napi_delete_async_work(env, j->work);
  free(j->rows);
  free(j);
}

/* The data of a typed array of `type` with exactly `len` elements, or NULL. */
static void *typedData(napi_env env, napi_value v, napi_typedarray_type type, size_t len) {
  napi_typedarray_type t;
  size_t n;
  void *data;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &t, &n, &data, NULL, NULL) != napi_ok || t != type || n != len) return NULL;
  return data ? data : (void *)"";
}

#define BAD(...) do { snprintf(msg, sizeof msg, __VA_ARGS__); goto bad; } while (0)

napi_value decodeBatch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) THROW(env, "BAD_STEP", "decodeBatch(handle, slots, tokens, positions, adapters, wantLogits, logits)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  char msg[256];
  const char *code = "BAD_STEP";
  BatchRow *rows = NULL;
  int *lastRow = NULL, *inSlot = NULL;
  napi_typedarray_type t;
  size_t R = 0;
  void *ignored;
  bool is = false;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is || napi_get_typedarray_info(env, argv[1], &t, &R, &ignored, NULL, NULL) != napi_ok || t != napi_int32_array) {
    THROW(env, "BAD_STEP", "decodeBatch: slots must be an Int32Array");
  }
  if (R < 1) THROW(env, "BAD_STEP", "decodeBatch: a step needs at least one row");
  const int32_t *slots = typedData(env, argv[1], napi_int32_array, R), *tokens = typedData(env, argv[2], napi_int32_array, R), *positions = typedData(env, argv[3], napi_int32_array, R);
  const uint8_t *want = typedData(env, argv[5], napi_uint8_array, R);
  uint32_t nAdapters;
  if (!tokens || !positions || !want) THROW(env, "BAD_STEP", "decodeBatch: tokens and positions must be Int32Arrays and wantLogits a Uint8Array, each with one entry per row");
  if (napi_get_array_length(env, argv[4], &nAdapters) != napi_ok || nAdapters != R) THROW(env, "BAD_STEP", "decodeBatch: adapters must be an array with one entry (an adapter or null) per row");
  rows = calloc(R, sizeof *rows);
  lastRow = malloc(sizeof(int) * (d->nSlots + 1));
  inSlot = calloc(d->nSlots + 1, sizeof(int));
  if (!rows || !lastRow || !inSlot) { code = "NO_MEMORY"; BAD("out of memory for a batched step"); }
  for (int i = 0; i < d->nSlots; i++) lastRow[i] = -2;
  int nWanted = 0, maxR = 0;
  for (int r = 0; r < (int)R; r++) {
    const int id = slots[r];
    if (id < 0 || id >= d->nSlots || !d->slots[id].used) BAD("decodeBatch: row %d: slot %d is not a live KV cache slot of this decoder", r, id);
    if (lastRow[id] >= 0 && lastRow[id] != r - 1) BAD("decodeBatch: row %d: the rows of slot %d must be consecutive (it also has row %d)", r, id, lastRow[id]);
    lastRow[id] = r;
    Slot *S = &d->slots[id];
    const int index = S->len + inSlot[id]++;
    if (positions[r] != index) BAD("decodeBatch: row %d: position %d, but slot %d continues at position %d", r, positions[r], id, index);
    if (tokens[r] < 0 || tokens[r] >= d->vocab) BAD("decodeBatch: row %d: token %d is not a vocabulary id (0 .. %d)", r, tokens[r], d->vocab - 1);
    napi_value av;
    napi_valuetype at;
    napi_get_element(env, argv[4], r, &av);
    napi_typeof(env, av, &at);
    const Adapter *a = NULL;
    if (at != napi_null && at != napi_undefined) {
      a = adapterOf(env, av);
      if (!a) BAD("decodeBatch: row %d: adapters[%d] is neither an adapter handle nor null", r, r);
      if (a->released) { code = "RELEASED"; BAD("decodeBatch: row %d: its adapter was released", r); }
      if (a->owner != d) BAD("decodeBatch: row %d: its adapter was made for another decoder", r);
      if (a->maxR > maxR) maxR = a->maxR;
    }
    rows[r] = (BatchRow){.slot = S, .adapter = a, .wantLogits = want[r] != 0, .token = tokens[r], .position = positions[r], .cacheIndex = index};
    nWanted += want[r] != 0;
  }
  float *logits = typedData(env, argv[6], napi_float32_array, (size_t)nWanted * d->vocab);
  if (!logits) BAD("decodeBatch: logits must be a Float32Array of %d x %d values (rows with wantLogits x vocabulary)", nWanted, d->vocab);
  /* room for every row: KV cache, attention scores, the step's buffers (growing only, so a
   * NO_MEMORY here leaves every slot's contents as they were) */
  int scores = 0;
  for (int r = 0; r < (int)R; r++) {
    Slot *S = rows[r].slot;
    if (!slotReserve(d, S, rows[r].cacheIndex + 1)) { code = "NO_MEMORY"; BAD("out of memory growing a KV cache"); }
    if (S->cap > scores) scores = S->cap;
  }
  if (!scoresReserve(d, scores)) { code = "NO_MEMORY"; BAD("out of memory for attention scores"); }
  if (!batchReserve(d, (int)R, maxR)) { code = "NO_MEMORY"; BAD("out of memory for the batched step's buffers"); }
  free(lastRow);
  free(inSlot);
  BatchJob *j = calloc(1, sizeof *j);
  napi_ref *keep = calloc(R, sizeof(napi_ref));
  if (!j || !keep) { free(j); free(keep); free(rows); THROW(env, "NO_MEMORY", "out of memory"); }
  j->keepAdapters = keep;
  j->d = d;
  j->rows = rows;
  j->R = (int)R;
  j->logits = logits;
  for (int r = 0; r < (int)R; r++) {
    if (!rows[r].adapter) continue;
    ((Adapter *)rows[r].adapter)->busy++;
    napi_value av;
    napi_get_element(env, argv[4], r, &av);
    napi_create_reference(env, av, 1, &keep[r]);
  }
  napi_value promise, name;
  napi_create_reference(env, argv[6], 1, &j->keepLogits);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "morris.decodeBatch", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, runBatch, finishBatch, j, &j->work);
  d->busy = 1;
  d->running = NULL;
  d->runningRows = rows;
  d->runningCount = (int)R;
  napi_queue_async_work(env, j->work);
  return promise;
bad:
  free(rows);
  free(lastRow);
  free(inSlot);
  napi_throw_error(env, code, msg);
  return NULL;
}

napi_value cacheFork(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  Decoder *d;
  Slot *src;
  int T;
  if (!slotLengthArgs(env, info, 3, argv, "cacheFork(handle, slot, length)", &d, &src, &T)) return NULL;
  const int srcIndex = (int)(src - d->slots); /* slotAlloc may move the slot table */
  const int id = slotAlloc(d);
  if (id < 0) THROW(env, "NO_MEMORY", "out of memory for a KV cache slot");
  src = &d->slots[srcIndex];
  Slot *S = &d->slots[id];
  if (!slotReserve(d, S, T + 1)) {
    slotFree(d, S);
    THROW(env, "NO_MEMORY", "out of memory for the forked KV cache");
  }
  for (int l = 0; l < d->layers; l++) {
    kvCopy(d, S->k[l], S->cap, src->k[l], src->cap, T);
    kvCopy(d, S->v[l], S->cap, src->v[l], src->cap, T);
  }
  S->len = T;
  napi_create_int32(env, id, &out);
  return out;
}
