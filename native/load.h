/* createDecoder (load.c): the JS spec → a Decoder with its weights mapped, checked and packed;
 * and the LoRA spec reader it shares with createAdapter (adapter.c). */
#ifndef MORRIS_LOAD_H
#define MORRIS_LOAD_H

#include <node_api.h>
#include "decoder.h"

napi_value createDecoder(napi_env env, napi_callback_info info);

/* Copies a Float32Array of exactly `expect` values into memory `ctx` owns; NULL if it is not one. */
typedef float *(*CopyFn)(napi_env env, void *ctx, napi_value v, size_t expect);
int readLoras(napi_env env, napi_value lora, int l, const int *outF, const int *inF, Lora *dst, CopyFn copy, void *ctx, char *err, size_t errLen);
/* Each module's [out, in] (q k v o gate up down). */
void moduleDims(const Decoder *d, int outF[MODULES], int inF[MODULES]);

#endif
