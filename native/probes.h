/* The read-bandwidth probes (probes.c). */
#ifndef MORRIS_PROBES_H
#define MORRIS_PROBES_H

#include <node_api.h>

napi_value readSum(napi_env env, napi_callback_info info);
napi_value readBandwidth(napi_env env, napi_callback_info info);

#endif
