{
  "target_defaults": {
    # -fvisibility=hidden: the files share functions that were static in one file; hidden keeps
    # them inside each addon, so a name like `step` cannot bind to glibc's step(3) at load, and
    # calls between the files bind directly, as they did within one file. N-API's module entry
    # points are marked visible by node_api.h.
    "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
    "cflags!": ["-O2"],
    "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=gnu11"], "GCC_SYMBOLS_PRIVATE_EXTERN": "YES" }
  },
  "targets": [
    {
      # The decode kernel Morris loads (src/model/native-decode.ts).
      "target_name": "morris_native",
      "sources": ["addon.c", "adapter.c", "batch-addon.c", "load.c", "decoder.c", "batch.c", "kernels.c", "kernels-quant.c", "gemm-q.c", "gemm.c", "pack.c", "sysmem.c", "napi-helpers.c"]
    },
    {
      # Read-bandwidth probes for bench:generate only (scripts/native-probes.ts); they share the
      # kernels' ISA choice and loads, so they are built from the same kernels.c.
      "target_name": "morris_probes",
      "sources": ["probes.c", "kernels.c", "kernels-quant.c", "gemm-q.c", "gemm.c", "sysmem.c", "napi-helpers.c"]
    }
  ]
}
