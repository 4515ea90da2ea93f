/*
 * LoRA adapters as native objects apart from the decoder, so one batched step can serve rows with
 * different adapters over the same base weights (as S-LoRA / Punica do):
 *   createAdapter(decoder, { layer: [{ lora: { q_proj: { a, b, r, scale }, … } }, …] }) -> adapter
 *   releaseAdapter(adapter)
 * The spec has the decoder spec's per-layer LoRA shape (load.c reads both); the arrays are copied.
 * A step holds each adapter it uses (busy) until it finishes, so releasing one mid-step is BUSY;
 * a released adapter handed to a step is RELEASED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addon.h"
#include "adapter.h"
#include "load.h"
#include "napi-helpers.h"

static void adapterRelease(Adapter *a) {
  for (int i = 0; i < a->nOwned; i++) free(a->owned[i]);
  free(a->owned);
  free(a->lora);
  a->owned = NULL;
  a->lora = NULL;
  a->nOwned = a->capOwned = 0;
  a->released = 1;
}

static void finalizeAdapter(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Adapter *a = data;
  adapterRelease(a);
  free(a);
}

static float *copyIntoAdapter(napi_env env, void *ctx, napi_value v, size_t expect) {
  Adapter *a = ctx;
  const float *src = f32Data(env, v, expect);
  if (!src) return NULL;
  if (a->nOwned == a->capOwned) {
    void **grown = realloc(a->owned, sizeof(void *) * (a->capOwned ? a->capOwned * 2 : 16));
    if (!grown) return NULL;
    a->owned = grown;
    a->capOwned = a->capOwned ? a->capOwned * 2 : 16;
  }
  float *p = NULL;
  if (posix_memalign((void **)&p, 64, expect ? expect * sizeof(float) : 64) != 0) return NULL;
  memcpy(p, src, expect * sizeof(float));
  a->owned[a->nOwned++] = p;
  return p;
}

/* The decoder behind a handle, live; unlike decoderArg it may be mid-step (loading an adapter
 * touches nothing a step reads). */
static Decoder *liveDecoder(napi_env env, napi_value h) {
  Decoder *d = NULL;
  napi_valuetype t;
  if (napi_typeof(env, h, &t) != napi_ok || t != napi_external || napi_get_value_external(env, h, (void **)&d) != napi_ok || !d) {
    napi_throw_error(env, "BAD_SPEC", "createAdapter needs a decoder handle");
    return NULL;
  }
  if (d->released) { napi_throw_error(env, "RELEASED", "this decoder was released"); return NULL; }
  return d;
}

napi_value createAdapter(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], layers;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) THROW(env, "BAD_SPEC", "createAdapter(decoder, spec)");
  Decoder *d = liveDecoder(env, argv[0]);
  if (!d) return NULL;
  uint32_t n;
  if (napi_get_named_property(env, argv[1], "layer", &layers) != napi_ok || napi_get_array_length(env, layers, &n) != napi_ok || (int)n != d->layers) {
    char msg[160];
    snprintf(msg, sizeof msg, "adapter spec: layer must hold one entry per layer (%d)", d->layers);
    THROW(env, "BAD_SPEC", msg);
  }
  Adapter *a = calloc(1, sizeof *a);
  if (!a || !(a->lora = calloc((size_t)d->layers * MODULES, sizeof(Lora)))) {
    free(a);
    THROW(env, "NO_MEMORY", "out of memory for an adapter");
  }
  a->magic = ADAPTER_MAGIC;
  a->owner = d;
  a->layers = d->layers;
  int outF[MODULES], inF[MODULES];
  moduleDims(d, outF, inF);
  char err[256];
  for (int l = 0; l < d->layers; l++) {
    napi_value lv, lora;
    napi_get_element(env, layers, l, &lv);
    const int r = napi_get_named_property(env, lv, "lora", &lora) == napi_ok ? readLoras(env, lora, l, outF, inF, a->lora + (size_t)l * MODULES, copyIntoAdapter, a, err, sizeof err) : 0;
    if (r < 0) {
      char msg[300];
      snprintf(msg, sizeof msg, "adapter spec: %s", err);
      finalizeAdapter(env, a, NULL);
      THROW(env, "BAD_SPEC", msg);
    }
    if (r > a->maxR) a->maxR = r;
  }
  napi_value handle;
  if (napi_create_external(env, a, finalizeAdapter, NULL, &handle) != napi_ok) {
    finalizeAdapter(env, a, NULL);
    THROW(env, "NATIVE", "cannot create the adapter handle");
  }
  return handle;
}

Adapter *adapterOf(napi_env env, napi_value v) {
  Adapter *a = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, (void **)&a) != napi_ok || !a || a->magic != ADAPTER_MAGIC) return NULL;
  return a;
}

napi_value releaseAdapter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  Adapter *a = argc < 1 ? NULL : adapterOf(env, arg);
  if (!a) THROW(env, "BAD_ARG", "not an adapter handle");
  if (a->busy) THROW(env, "BUSY", "this adapter is in use by a running step; release it after the step");
  if (!a->released) adapterRelease(a);
  napi_get_undefined(env, &undef);
  return undef;
}
