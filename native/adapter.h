/* Adapter handles (adapter.c): telling one from any other external, for decodeBatch. */
#ifndef MORRIS_ADAPTER_H
#define MORRIS_ADAPTER_H

#include <node_api.h>
#include "batch.h"

/* Marks an Adapter, so a decoder handle passed where an adapter goes is refused, not misread. */
#define ADAPTER_MAGIC 0x4c6f5241u

/* The adapter behind a handle (released or not), or NULL for anything else. */
Adapter *adapterOf(napi_env env, napi_value v);

#endif
