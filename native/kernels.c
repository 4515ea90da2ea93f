/*
 * Matrix-vector and vector kernels for the decode step (see kernels.h), each written for AVX-512,
 * AVX2+FMA and plain C, and the choice among them at load. Each function carries its own target
 * attribute, so one build runs on any x86-64 CPU.
 */
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* ---------- matrix-vector kernels: y[n] = W[n, :] . x (W row-major [N, K], the HF layout) ---------- */

void gemvScalar(const float *W, const float *x, float *y, int N, int K) {
  for (int n = 0; n < N; n++) {
    const float *w = W + (size_t)n * K;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int k = 0;
    for (; k + 4 <= K; k += 4) {
      s0 += w[k] * x[k];
      s1 += w[k + 1] * x[k + 1];
      s2 += w[k + 2] * x[k + 2];
      s3 += w[k + 3] * x[k + 3];
    }
    for (; k < K; k++) s0 += w[k] * x[k];
    y[n] = (s0 + s1) + (s2 + s3);
  }
}

/* Two rows at a time, one from each half of the matrix: two sequential streams far apart keep
 * more memory requests in flight on one core than a single stream does; with the prefetch, the
 * gemvs of a SmolLM2-sized model read 16.6 GB/s from huge pages where one row at a time read
 * 13.5-14 (measured in one run on one core). Two accumulators per row hide the FMA latency. An
 * odd last row goes alone. */
__attribute__((target("avx512f")))
void gemvAvx512(const float *W, const float *x, float *y, int N, int K) {
  const int h = N / 2;
  const float *V = W + (size_t)h * K;
  for (int n = 0; n < h; n++) {
    const float *w = W + (size_t)n * K, *v = V + (size_t)n * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD + 16), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD + 16), _MM_HINT_T0);
      const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), x0, a0);
      b0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), x0, b0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), x1, a1);
      b1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), x1, b1);
    }
    for (; k + 16 <= K; k += 16) {
      const __m512 x0 = _mm512_loadu_ps(x + k);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), x0, a0);
      b0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), x0, b0);
    }
    if (k < K) {
      const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, x + k);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + k), x0, a1);
      b1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + k), x0, b1);
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    y[h + n] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
  }
  if (N & 1) y[N - 1] = dotAvx512(W + (size_t)(N - 1) * K, x, K);
}

__attribute__((target("avx2,fma")))
float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/* The AVX-512 kernel's layout (two rows, one from each half, prefetched) with 8-wide vectors. */
__attribute__((target("avx2,fma")))
void gemvAvx2(const float *W, const float *x, float *y, int N, int K) {
  const int h = N / 2;
  const float *V = W + (size_t)h * K;
  for (int n = 0; n < h; n++) {
    const float *w = W + (size_t)n * K, *v = V + (size_t)n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
      _mm_prefetch((const char *)(w + k + PREFETCH_AHEAD), _MM_HINT_T0);
      _mm_prefetch((const char *)(v + k + PREFETCH_AHEAD), _MM_HINT_T0);
      const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), x0, a0);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), x0, b0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), x1, a1);
      b1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k + 8), x1, b1);
    }
    for (; k + 8 <= K; k += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), x0, a0);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), x0, b0);
    }
    float sa = hsum256(_mm256_add_ps(a0, a1)), sb = hsum256(_mm256_add_ps(b0, b1));
    for (; k < K; k++) {
      sa += w[k] * x[k];
      sb += v[k] * x[k];
    }
    y[n] = sa;
    y[h + n] = sb;
  }
  if (N & 1) y[N - 1] = dotAvx2(W + (size_t)(N - 1) * K, x, K);
}

/* Attention's inner loops (head_dim wide): scores = q . K[j], ctx += p * V[j]. Scalar float
 * sums cannot be vectorized by the compiler (no reassociation without -ffast-math), and at a few
 * hundred cached positions they cost as much as a tenth of the step. */
static float dotScalar(const float *a, const float *b, int n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) { s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]; }
  for (; i < n; i++) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

static void axpyScalar(float *y, float a, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx512f")))
float dotAvx512(const float *a, const float *b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f")))
static void axpyAvx512(float *y, float a, const float *x, int n) {
  __m512 av = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* The weighted sum of values (WsumFn) as a sequence of axpys, positions in order: the scalar and
 * AVX2 kernels, and the AVX-512 one where head_dim is not a multiple of 16. */
static inline void wsumByAxpy(void (*ax)(float *, float, const float *, int), float *ctx, int ldc, const float *P, int ldp, const float *V, int n, int rows, int hd) {
  for (int j = 0; j < n; j++) for (int r = 0; r < rows; r++) ax(ctx + (size_t)r * ldc, P[(size_t)r * ldp + j], V + (size_t)j * hd, hd);
}

/* ctx[r] += sum_j P[r][j] V[j] for `rows` heads sharing one KV head (GQA): the axpy sequence above
 * (one fma per element per position, positions in order, so bitwise the same sums), with the
 * heads' outputs held in registers across positions instead of loaded and stored at every one.
 * As `rows` x positions axpy calls of 4 vectors each, it took about a tenth of an 8-row step at
 * 100 cached positions (call overhead and a load/store round trip per fma). Column tiles of 4
 * vectors and row tiles of 4 heads keep 16 accumulators; head_dim not a multiple of 16 (tiny
 * test models) goes through axpy. */
__attribute__((target("avx512f")))
static void wsumAvx512(float *ctx, int ldc, const float *P, int ldp, const float *V, int n, int rows, int hd) {
  if (hd % 16) {
    wsumByAxpy(axpyAvx512, ctx, ldc, P, ldp, V, n, rows, hd);
    return;
  }
  for (int c0 = 0; c0 < hd; c0 += 64) {
    const int nc = hd - c0 >= 64 ? 4 : (hd - c0) / 16;
    for (int r0 = 0; r0 < rows; r0 += 4) {
      const int nr = rows - r0 >= 4 ? 4 : rows - r0;
      __m512 acc[4][4];
      for (int r = 0; r < nr; r++) for (int c = 0; c < nc; c++) acc[r][c] = _mm512_loadu_ps(ctx + (size_t)(r0 + r) * ldc + c0 + 16 * c);
      for (int j = 0; j < n; j++) {
        const float *v = V + (size_t)j * hd + c0;
        __m512 vv[4];
        for (int c = 0; c < nc; c++) vv[c] = _mm512_loadu_ps(v + 16 * c);
        for (int r = 0; r < nr; r++) {
          const __m512 p = _mm512_set1_ps(P[(size_t)(r0 + r) * ldp + j]);
          for (int c = 0; c < nc; c++) acc[r][c] = _mm512_fmadd_ps(p, vv[c], acc[r][c]);
        }
      }
      for (int r = 0; r < nr; r++) for (int c = 0; c < nc; c++) _mm512_storeu_ps(ctx + (size_t)(r0 + r) * ldc + c0 + 16 * c, acc[r][c]);
    }
  }
}

__attribute__((target("avx2,fma")))
float dotAvx2(const float *a, const float *b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,fma")))
static void axpyAvx2(float *y, float a, const float *x, int n) {
  __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

static void wsumScalar(float *ctx, int ldc, const float *P, int ldp, const float *V, int n, int rows, int hd) { wsumByAxpy(axpyScalar, ctx, ldc, P, ldp, V, n, rows, hd); }
static void wsumAvx2(float *ctx, int ldc, const float *P, int ldp, const float *V, int n, int rows, int hd) { wsumByAxpy(axpyAvx2, ctx, ldc, P, ldp, V, n, rows, hd); }

DotFn dotf = dotScalar;
WsumFn wsum = wsumScalar;
GemvFn gemv = gemvScalar;
const char *isaName = "scalar";

GemvQFn gemvQ = gemvQScalar; /* kernels-quant.c */
GemmQFn gemmQ = NULL;        /* gemm-q.c */

void pickKernel(void) {
  __builtin_cpu_init();
  const char *forced = getenv("MORRIS_NATIVE_ISA"); /* tests force a lower ISA */
  if (forced && strcmp(forced, "scalar") == 0) return;
  if (__builtin_cpu_supports("avx512f") && !(forced && strcmp(forced, "avx2") == 0)) {
    gemv = gemvAvx512;
    gemm = gemmAvx512;
    dotf = dotAvx512;
    wsum = wsumAvx512;
    isaName = "avx512";
    /* vpdpbusd (u8 x s8 -> s32) is VNNI (VL for its 256-bit form); without them the quantized step stays scalar */
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
      gemvQ = gemvQAvx512;
      gemmQ = gemmQAvx512;
      pickQuantizer(1);
    }
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    gemv = gemvAvx2;
    gemm = gemmAvx2;
    dotf = dotAvx2;
    wsum = wsumAvx2;
    isaName = "avx2";
  }
}
