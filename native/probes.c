/*
 * The morris_probes addon: one-thread read-bandwidth probes for bench:generate's roofline (loaded
 * by scripts/native-probes.ts). They issue the loads the gemv issues (kernels.c, the same ISA
 * choice), without the multiply. A separate addon so the production one (addon.c) carries no
 * benchmark code.
 *
 * JS API: isa() -> 'avx512' | 'avx2' | 'scalar'; readSum(Float32Array) -> number;
 *   readBandwidth(mib, passes) -> { <pages>.<streams>[.prefetch]: GB/s …, hugePages }
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kernels.h"
#include "napi-helpers.h"
#include "sysmem.h"

/* Read bandwidth of one thread over a caller's Float32Array (for the roofline in bench:generate):
 * the same loads the gemv issues, without the multiply. Returns the sum so nothing is optimized away. */
__attribute__((target("avx512f")))
static float readSum512(const float *a, size_t n, int prefetch) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if (prefetch) for (int j = 0; j < 64; j += 16) _mm_prefetch((const char *)(a + i + j + PREFETCH_AHEAD), _MM_HINT_T0);
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i];
  return s;
}

__attribute__((target("avx2,fma")))
static float readSum256(const float *a, size_t n, int prefetch) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (prefetch) for (int j = 0; j < 32; j += 16) _mm_prefetch((const char *)(a + i + j + PREFETCH_AHEAD), _MM_HINT_T0);
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i];
  return s;
}

static napi_value readSum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, out;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  size_t len;
  const float *data = argc < 1 ? NULL : f32Array(env, arg, &len);
  if (!data) THROW(env, "BAD_ARG", "readSum needs a Float32Array");
  float s = 0;
  if (gemv == gemvAvx512) s = readSum512(data, len, 0);
  else if (gemv == gemvAvx2) s = readSum256(data, len, 0);
  else for (size_t i = 0; i < len; i++) s += data[i];
  napi_create_double(env, s, &out);
  return out;
}

/* Two reads at once, from the two halves of the buffer: the access pattern of the gemv. */
__attribute__((target("avx512f")))
static float readSumHalves512(const float *a, size_t n, int prefetch) {
  const size_t h = n / 2;
  const float *b = a + h;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= h; i += 32) {
    if (prefetch) for (int j = 0; j < 32; j += 16) {
      _mm_prefetch((const char *)(a + i + j + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(b + i + j + PREFETCH_AHEAD), _MM_HINT_T0);
    }
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(b + i));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 16));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(b + i + 16));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  for (; i < h; i++) s += a[i] + b[i];
  for (i = 2 * h; i < n; i++) s += a[i];
  return s;
}

__attribute__((target("avx2,fma")))
static float readSumHalves256(const float *a, size_t n, int prefetch) {
  const size_t h = n / 2;
  const float *b = a + h;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= h; i += 16) {
    if (prefetch) {
      _mm_prefetch((const char *)(a + i + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(b + i + PREFETCH_AHEAD), _MM_HINT_T0);
    }
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(b + i));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 8));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(b + i + 8));
  }
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < h; i++) s += a[i] + b[i];
  for (i = 2 * h; i < n; i++) s += a[i];
  return s;
}

static double nowSeconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *mapFilled(size_t bytes, int huge) {
  float *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) return NULL;
  madvise(a, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (size_t i = 0; i < bytes / sizeof(float); i++) a[i] = (float)(i & 7);
  return a;
}

/*
 * readBandwidth(mib, passes) -> { <pages>.<streams>[.prefetch]: GB/s …, hugePages }: the best
 * one-thread read rate over a buffer of `mib` MiB, read eight ways: on 4 KiB pages or on 2 MiB
 * pages (how packWeights holds the weights), as one sequential stream or two (the gemv's pattern),
 * with and without the gemv's software prefetch. bench:generate's roofline takes the best.
 *
 * Every timed read starts cold: a flush buffer at least as large as the L3 is read first. Decode
 * streams all its weights every token, so none of them are still cached when it comes back to
 * them; a buffer read twice in a row is partly served from this VM's 480 MiB L3 (measured: the
 * best pattern 4-5% faster warm than cold over 538 MiB), which would make the roofline a bound
 * decode cannot reach rather than the memory's.
 */
static napi_value readBandwidth(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], obj, v;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int mib = 0, passes = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &mib) != napi_ok || napi_get_value_int32(env, argv[1], &passes) != napi_ok || mib < 1 || mib > 65536 || passes < 1) {
    THROW(env, "BAD_ARG", "readBandwidth(mib >= 1, passes >= 1)");
  }
  if (gemv == gemvScalar) THROW(env, "UNSUPPORTED", "readBandwidth needs the AVX2 or AVX-512 kernel");
  const size_t bytes = (size_t)mib << 20, n = bytes / sizeof(float);
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  size_t flushBytes = bytes;
  if (l3 > 0 && (size_t)l3 * 2 > flushBytes) flushBytes = (size_t)l3 * 2;
  float *buf[2] = {mapFilled(bytes, 0), mapFilled(bytes, 1)}, *flush = mapFilled(flushBytes, 0);
  if (!buf[0] || !buf[1] || !flush) {
    for (int i = 0; i < 2; i++) if (buf[i]) munmap(buf[i], bytes);
    if (flush) munmap(flush, flushBytes);
    THROW(env, "NO_MEMORY", "readBandwidth: cannot map its buffers");
  }
  int huge = 0;
  {
    void *probe = mmap(NULL, (size_t)4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe != MAP_FAILED) {
      huge = madvise(probe, (size_t)4 << 20, MADV_HUGEPAGE) == 0 && hugePagesEnabled();
      munmap(probe, (size_t)4 << 20);
    }
  }
  const int wide = gemv == gemvAvx512;
  double best[8];
  for (int k = 0; k < 8; k++) best[k] = 1e30;
  volatile float sink = 0;
  for (int p = 0; p < passes; p++) {
    for (int k = 0; k < 8; k++) { /* k: bit 0 two streams, bit 1 prefetch, bit 2 huge pages */
      const int two = k & 1, prefetch = (k >> 1) & 1;
      const float *a = buf[k >> 2];
      sink += wide ? readSum512(flush, flushBytes / sizeof(float), 0) : readSum256(flush, flushBytes / sizeof(float), 0);
      double t = nowSeconds();
      sink += two ? (wide ? readSumHalves512(a, n, prefetch) : readSumHalves256(a, n, prefetch)) : (wide ? readSum512(a, n, prefetch) : readSum256(a, n, prefetch));
      t = nowSeconds() - t;
      if (t < best[k]) best[k] = t;
    }
  }
  (void)sink;
  for (int i = 0; i < 2; i++) munmap(buf[i], bytes);
  munmap(flush, flushBytes);
  static const char *names[8] = {"4k.oneStream", "4k.twoStreams", "4k.oneStream.prefetch", "4k.twoStreams.prefetch",
                                 "huge.oneStream", "huge.twoStreams", "huge.oneStream.prefetch", "huge.twoStreams.prefetch"};
  napi_create_object(env, &obj);
  for (int k = 0; k < 8; k++) {
    napi_create_double(env, (double)bytes / best[k] / 1e9, &v);
    napi_set_named_property(env, obj, names[k], v);
  }
  napi_get_boolean(env, huge, &v);
  napi_set_named_property(env, obj, "hugePages", v);
  return obj;
}

/* The instruction set the probes read with: pickKernel's choice, so the bench knows before calling
 * readBandwidth (which needs AVX2 or AVX-512) without loading the decode addon. */
static napi_value isa(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_string_utf8(env, isaName, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  pickKernel();
  static const Export fns[] = {
    {"isa", isa},
    {"readSum", readSum},
    {"readBandwidth", readBandwidth},
  };
  return exportFunctions(env, exports, fns, sizeof fns / sizeof *fns);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
