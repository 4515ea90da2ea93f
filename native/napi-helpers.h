/*
 * N-API helpers shared by both addons' entry points (napi-helpers.c): throwing an error with a
 * code, reading a number property or a Float32Array, exporting the functions.
 */
#ifndef MORRIS_NAPI_HELPERS_H
#define MORRIS_NAPI_HELPERS_H

#include <node_api.h>
#include <stddef.h>

#define THROW(env, code, msg) do { napi_throw_error(env, code, msg); return NULL; } while (0)
#define CHECK(env, call) do { if ((call) != napi_ok) { const napi_extended_error_info *info; napi_get_last_error_info(env, &info); bool pending; napi_is_exception_pending(env, &pending); if (!pending) napi_throw_error(env, "NATIVE", info && info->error_message ? info->error_message : "N-API call failed"); return NULL; } } while (0)

int getInt(napi_env env, napi_value obj, const char *key, int *out);
int getDouble(napi_env env, napi_value obj, const char *key, double *out);
float *f32Array(napi_env env, napi_value v, size_t *len);
float *f32Data(napi_env env, napi_value v, size_t expect);

/* Settles an async step's promise: rejected with code NATIVE and `error` (or `cancelled` when the
 * work did not run), else resolved with undefined. */
void settleDeferred(napi_env env, napi_deferred deferred, napi_status status, const char *error, const char *cancelled);

/* A function an addon exports, under its JS name. */
typedef struct {
  const char *name;
  napi_callback fn;
} Export;

/* Defines each function on `exports` (napi_default: read-only, not enumerable); returns exports. */
napi_value exportFunctions(napi_env env, napi_value exports, const Export *fns, size_t n);

#endif
