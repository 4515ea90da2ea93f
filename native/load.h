/* createDecoder (load.c): the JS spec → a Decoder with its weights mapped, checked and packed. */
#ifndef MORRIS_LOAD_H
#define MORRIS_LOAD_H

#include <node_api.h>

napi_value createDecoder(napi_env env, napi_callback_info info);

#endif
