/*
 * N-API helpers shared by the addons' entry points (napi-args.c): throwing an error with a code,
 * reading a number property, reading a Float32Array.
 */
#ifndef MORRIS_NAPI_ARGS_H
#define MORRIS_NAPI_ARGS_H

#include <node_api.h>
#include <stddef.h>


#define THROW(env, code, msg) do { napi_throw_error(env, code, msg); return NULL; } while (0)
#define CHECK(env, call) do { if ((call) != napi_ok) { const napi_extended_error_info *info; napi_get_last_error_info(env, &info); bool pending; napi_is_exception_pending(env, &pending); if (!pending) napi_throw_error(env, "NATIVE", info && info->error_message ? info->error_message : "N-API call failed"); return NULL; } } while (0)

int getInt(napi_env env, napi_value obj, const char *key, int *out);
int getDouble(napi_env env, napi_value obj, const char *key, double *out);
float *f32Array(napi_env env, napi_value v, size_t *len);
float *f32Data(napi_env env, napi_value v, size_t expect);

#endif
