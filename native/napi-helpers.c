/* N-API helpers shared by both addons (see napi-helpers.h). */
#include "napi-helpers.h"

int getInt(napi_env env, napi_value obj, const char *key, int *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

int getDouble(napi_env env, napi_value obj, const char *key, double *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return napi_get_value_double(env, v, out) == napi_ok;
}

/* The data of a Float32Array and its length; NULL for anything else. An empty array's data
 * pointer may be NULL, so it gets a non-NULL dummy. */
float *f32Array(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type t;
  void *data;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &t, len, &data, NULL, NULL) != napi_ok || t != napi_float32_array) return NULL;
  return data ? data : (float *)"";
}

/* A Float32Array of exactly `expect` values, or NULL. */
float *f32Data(napi_env env, napi_value v, size_t expect) {
  size_t len;
  float *p = f32Array(env, v, &len);
  return p && len == expect ? p : NULL;
}

napi_value exportFunctions(napi_env env, napi_value exports, const Export *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const napi_property_descriptor p = {fns[i].name, NULL, fns[i].fn, NULL, NULL, NULL, napi_default, NULL};
    napi_define_properties(env, exports, 1, &p);
  }
  return exports;
}

void settleDeferred(napi_env env, napi_deferred deferred, napi_status status, const char *error, const char *cancelled) {
  napi_value result;
  if (status != napi_ok || (error && error[0])) {
    napi_value msg, code;
    napi_create_string_utf8(env, error && error[0] ? error : cancelled, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "NATIVE", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &result);
    napi_reject_deferred(env, deferred, result);
  } else {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, deferred, result);
  }
}
