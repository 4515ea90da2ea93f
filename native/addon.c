/*
 * The morris_native addon: the N-API entry points of the CPU decode kernel. The step itself is
 * plain C (decoder.c over kernels.c); here are the argument checks (a live decoder, not mid-step,
 * a slot in use), the KV cache calls, and decodeStep, which runs the step on a worker thread.
 *
 * JS API (see src/model/native-decode.ts):
 *   kernelInfo() -> { isa, quantIsa }
 *   createDecoder(spec) -> handle; decoderInfo(handle) -> { packedBytes, hugePages, matrixMs, matrixCalls }
 *     (time in the base weights' matrix products so far and their number, with spec.profile; else null)
 *   cacheNew / cacheImport / cacheExport / cacheFork / cacheFree / cacheLength (KV cache slots)
 *   decodeStep(handle, slot, token, position, logits) -> Promise<void> (runs off the main thread)
 *   decodeBatch(handle, slots, tokens, positions, adapters, wantLogits, logits) -> Promise<void> (batch-addon.c)
 *   createAdapter(handle, spec) -> adapter; releaseAdapter(adapter) (adapter.c)
 *   releaseDecoder(handle)
 * The read-bandwidth probes bench:generate uses are another addon (probes.c, morris_probes.node).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "decoder.h"
#include "addon.h"
#include "load.h"
#include "napi-helpers.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep; /* the logits array, so its buffer outlives the step */
  Decoder *d;
  StepArgs args;
  char error[160];
} StepJob;

static void runStep(napi_env env, void *data) {
  (void)env;
  StepJob *j = data;
  step(j->d, &j->args);
}

static void finishStep(napi_env env, napi_status status, void *data) {
  StepJob *j = data;
  j->d->busy = 0;
  j->d->running = NULL;
  settleDeferred(env, j->deferred, status, j->error, "decode step cancelled");
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j);
}

/* Common argument checks: a live decoder, not mid-step, and (when slotArg >= 0) a slot in use. */
Decoder *decoderArg(napi_env env, napi_value h) {
  Decoder *d = NULL;
  napi_valuetype t;
  if (napi_typeof(env, h, &t) != napi_ok || t != napi_external || napi_get_value_external(env, h, (void **)&d) != napi_ok || !d) {
    napi_throw_error(env, "BAD_STEP", "not a decoder handle");
    return NULL;
  }
  if (d->released) { napi_throw_error(env, "RELEASED", "this decoder was released"); return NULL; }
  if (d->busy) { napi_throw_error(env, "BUSY", "this decoder is running a step; steps and cache changes run one at a time"); return NULL; }
  return d;
}

Slot *slotArg(napi_env env, Decoder *d, napi_value v) {
  int id;
  if (napi_get_value_int32(env, v, &id) != napi_ok || id < 0 || id >= d->nSlots || !d->slots[id].used) {
    napi_throw_error(env, "BAD_STEP", "not a live KV cache slot of this decoder");
    return NULL;
  }
  return &d->slots[id];
}

int slotLengthArgs(napi_env env, napi_callback_info info, size_t argc, napi_value *argv, const char *call, Decoder **d, Slot **S, int *T) {
  size_t got = argc;
  char msg[160];
  if (napi_get_cb_info(env, info, &got, argv, NULL, NULL) != napi_ok) { napi_throw_error(env, "BAD_STEP", "cannot read the arguments"); return 0; }
  if (got < argc) { snprintf(msg, sizeof msg, "%s", call); napi_throw_error(env, "BAD_STEP", msg); return 0; }
  if (!(*d = decoderArg(env, argv[0])) || !(*S = slotArg(env, *d, argv[1]))) return 0;
  if (napi_get_value_int32(env, argv[2], T) != napi_ok || *T < 0 || *T > (*S)->len) {
    snprintf(msg, sizeof msg, "%.*s: length must be between 0 and the cached length", (int)strcspn(call, "("), call);
    napi_throw_error(env, "BAD_STEP", msg);
    return 0;
  }
  return 1;
}

/* Float32Array element l of a JS array, with exactly `len` values (len < 0: any multiple of kvRow). */
static float *layerArray(napi_env env, napi_value arr, int l, size_t kvRow, long len, size_t *outLen) {
  napi_value e;
  float *p = napi_get_element(env, arr, l, &e) == napi_ok ? f32Array(env, e, outLen) : NULL;
  return p && *outLen % kvRow == 0 && (len < 0 || *outLen == (size_t)len) ? p : NULL;
}

/* cacheNew(handle) -> slot id: an empty KV cache for one sequence */
static napi_value cacheNew(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, out;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  Decoder *d = decoderArg(env, arg);
  if (!d) return NULL;
  const int id = slotAlloc(d);
  if (id < 0) THROW(env, "NO_MEMORY", "out of memory for a KV cache slot");
  napi_create_int32(env, id, &out);
  return out;
}

/* cacheImport(handle, slot, keys[], values[]): replaces the slot's contents with per-layer [kvHeads, T, headDim] arrays */
static napi_value cacheImport(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) THROW(env, "BAD_STEP", "cacheImport(handle, slot, keys, values)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  const size_t hd = d->headDim, kvRow = (size_t)d->kvHeads * hd;
  uint32_t nk, nv;
  size_t n0;
  if (napi_get_array_length(env, argv[2], &nk) != napi_ok || napi_get_array_length(env, argv[3], &nv) != napi_ok || (int)nk != d->layers || (int)nv != d->layers ||
      !layerArray(env, argv[2], 0, kvRow, -1, &n0)) {
    THROW(env, "BAD_STEP", "cacheImport: keys and values need one Float32Array [kvHeads, T, headDim] per layer");
  }
  const int T = (int)(n0 / kvRow);
  S->len = 0;
  if (!slotReserve(d, S, T + 1)) THROW(env, "NO_MEMORY", "out of memory for the KV cache");
  for (int l = 0; l < d->layers; l++) {
    size_t n;
    const float *k = layerArray(env, argv[2], l, kvRow, (long)n0, &n), *v = layerArray(env, argv[3], l, kvRow, (long)n0, &n);
    if (!k || !v) THROW(env, "BAD_STEP", "cacheImport: every layer's keys and values must have the same [kvHeads, T, headDim] shape");
    kvCopy(d, S->k[l], S->cap, k, T, T);
    kvCopy(d, S->v[l], S->cap, v, T, T);
  }
  S->len = T;
  napi_get_undefined(env, &undef);
  return undef;
}

/* cacheExport(handle, slot, length, keysOut[], valuesOut[]): the first `length` positions as [kvHeads, length, headDim] */
static napi_value cacheExport(napi_env env, napi_callback_info info) {
  napi_value argv[5], undef;
  Decoder *d;
  Slot *S;
  int T;
  if (!slotLengthArgs(env, info, 5, argv, "cacheExport(handle, slot, length, keys, values)", &d, &S, &T)) return NULL;
  const size_t hd = d->headDim, kvRow = (size_t)d->kvHeads * hd;
  for (int l = 0; l < d->layers; l++) {
    size_t n;
    float *k = layerArray(env, argv[3], l, kvRow, (long)(kvRow * T), &n), *v = layerArray(env, argv[4], l, kvRow, (long)(kvRow * T), &n);
    if (!k || !v) THROW(env, "BAD_STEP", "cacheExport: keys and values need one Float32Array [kvHeads, length, headDim] per layer");
    kvCopy(d, k, T, S->k[l], S->cap, T);
    kvCopy(d, v, T, S->v[l], S->cap, T);
  }
  napi_get_undefined(env, &undef);
  return undef;
}

/* cacheFree(handle, slot) / cacheLength(handle, slot) */
static napi_value cacheFree(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_get_undefined(env, &undef);
  if (argc < 2) THROW(env, "BAD_STEP", "cacheFree(handle, slot)");
  Decoder *d = NULL;
  if (napi_get_value_external(env, argv[0], (void **)&d) != napi_ok || !d) THROW(env, "BAD_STEP", "not a decoder handle");
  if (d->released) return undef; /* already gone with the decoder */
  int id;
  if (napi_get_value_int32(env, argv[1], &id) != napi_ok || id < 0 || id >= d->nSlots) return undef;
  /* other sequences' caches may go while a step runs; the running one may not */
  if (slotRunning(d, &d->slots[id])) THROW(env, "BUSY", "this sequence is running a step; free its cache after it");
  slotFree(d, &d->slots[id]);
  return undef;
}

static napi_value cacheLength(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) THROW(env, "BAD_STEP", "cacheLength(handle, slot)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  napi_create_int32(env, S->len, &out);
  return out;
}

/* decodeStep(handle, slot, token, position, logits) -> Promise: appends one position to the slot's cache */
static napi_value decodeStep(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW(env, "BAD_STEP", "decodeStep(handle, slot, token, position, logits)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  int token, position;
  if (napi_get_value_int32(env, argv[2], &token) != napi_ok || napi_get_value_int32(env, argv[3], &position) != napi_ok || token < 0 || token >= d->vocab || position < 0) {
    THROW(env, "BAD_STEP", "token must be a vocabulary id and position a non-negative integer");
  }
  float *logits = f32Data(env, argv[4], (size_t)d->vocab);
  if (!logits) THROW(env, "BAD_STEP", "decodeStep: logits must be a Float32Array of vocabulary size");
  if (!slotReserve(d, S, S->len + 1)) THROW(env, "NO_MEMORY", "out of memory growing the KV cache");
  if (!scoresReserve(d, S->cap)) THROW(env, "NO_MEMORY", "out of memory for attention scores");
  StepJob *j = calloc(1, sizeof(StepJob));
  if (!j) THROW(env, "NO_MEMORY", "out of memory");
  j->d = d;
  j->args.slot = S;
  j->args.token = token;
  j->args.position = position;
  j->args.logits = logits;
  napi_value promise, name;
  napi_create_reference(env, argv[4], 1, &j->keep);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "morris.decodeStep", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, runStep, finishStep, j, &j->work);
  d->busy = 1;
  d->running = S;
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value releaseDecoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, undef;
  Decoder *d;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, arg, (void **)&d) != napi_ok || !d) THROW(env, "BAD_ARG", "not a decoder handle");
  if (d->busy) THROW(env, "BUSY", "cannot release a decoder while a step runs; await the step first");
  if (!d->released) releaseResources(d);
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value kernelInfo(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, isa;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, isaName, NAPI_AUTO_LENGTH, &isa);
  napi_set_named_property(env, obj, "isa", isa);
  napi_create_string_utf8(env, gemvQ == gemvQAvx512 ? "avx512" : "scalar", NAPI_AUTO_LENGTH, &isa);
  napi_set_named_property(env, obj, "quantIsa", isa);
  return obj;
}

/* { packedBytes, hugePages }: how the weights are held (packWeights), for logs and tests. */
static napi_value decoderInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, obj, v;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  Decoder *d = argc < 1 ? NULL : decoderArg(env, arg);
  if (!d) return NULL;
  napi_create_object(env, &obj);
  napi_create_double(env, (double)d->arenaLen, &v);
  napi_set_named_property(env, obj, "packedBytes", v);
  napi_get_boolean(env, d->hugePages, &v);
  napi_set_named_property(env, obj, "hugePages", v);
  if (d->profile) napi_create_double(env, (double)d->matrixNs / 1e6, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, "matrixMs", v);
  if (d->profile) napi_create_double(env, (double)d->matrixCalls, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, "matrixCalls", v);
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  pickKernel();
  static const Export fns[] = {
    {"createDecoder", createDecoder},
    {"decodeStep", decodeStep},
    {"cacheNew", cacheNew},
    {"cacheImport", cacheImport},
    {"cacheExport", cacheExport},
    {"cacheFork", cacheFork},
    {"decodeBatch", decodeBatch},
    {"createAdapter", createAdapter},
    {"releaseAdapter", releaseAdapter},
    {"cacheFree", cacheFree},
    {"cacheLength", cacheLength},
    {"releaseDecoder", releaseDecoder},
    {"kernelInfo", kernelInfo},
    {"decoderInfo", decoderInfo},
  };
  return exportFunctions(env, exports, fns, sizeof fns / sizeof *fns);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
