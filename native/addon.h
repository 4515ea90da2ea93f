/*
 * What the addon's entry point files share: the argument checks of addon.c, and the entry points
 * of adapter.c (LoRA adapters as their own objects) and batch-addon.c (the batched step, cacheFork).
 */
#ifndef MORRIS_ADDON_H
#define MORRIS_ADDON_H

#include <node_api.h>
#include "decoder.h"

/* A live decoder that is not mid-step, or NULL with BAD_STEP / RELEASED / BUSY thrown. */
Decoder *decoderArg(napi_env env, napi_value h);
/* A slot of d in use, or NULL with BAD_STEP thrown. */
Slot *slotArg(napi_env env, Decoder *d, napi_value v);
/* argv[0..2] as (decoder, slot, length) with 0 <= length <= the slot's cached length; 0 with BAD_STEP
 * (naming `call`) thrown otherwise. `call` reads like "cacheFork(handle, slot, length)". */
int slotLengthArgs(napi_env env, napi_callback_info info, size_t argc, napi_value *argv, const char *call, Decoder **d, Slot **S, int *T);

napi_value createAdapter(napi_env env, napi_callback_info info);
napi_value releaseAdapter(napi_env env, napi_callback_info info);
napi_value decodeBatch(napi_env env, napi_callback_info info);
napi_value cacheFork(napi_env env, napi_callback_info info);

#endif
