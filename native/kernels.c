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

DotFn dotf = dotScalar;
AxpyFn axpy = axpyScalar;
GemvFn gemv = gemvScalar;
const char *isaName = "scalar";

/* ---------- quantized matrix-vector: y[n] = sum_b scale_nb * (codes_nb . x_b - zero_nb * sum(x_b)) ----------
 * x comes zero-padded to nBlocks * block with its block sums precomputed, so the zero point costs one
 * scalar multiply-add per block and padding needs no special case. Weights are widened to fp32 in
 * registers: the activations keep full precision (ONNX Runtime's fast path rounds them to int8). */

static inline int zeroPoint(const Mat *m, int n, int b) {
  if (m->bits == 8) return m->zeros[(size_t)n * m->nBlocks + b];
  uint8_t z = m->zeros[(size_t)n * ((m->nBlocks + 1) / 2) + (b >> 1)];
  return b & 1 ? z >> 4 : z & 15;
}

void gemvQScalar(const Mat *m, const float *x, const float *xs, float *y, int N) {
  const int blob = m->block * m->bits / 8;
  for (int n = 0; n < N; n++) {
    float acc = 0;
    for (int b = 0; b < m->nBlocks; b++) {
      const uint8_t *c = m->codes + ((size_t)n * m->nBlocks + b) * blob;
      const float *xb = x + (size_t)b * m->block;
      float dot = 0;
      if (m->bits == 8) for (int j = 0; j < m->block; j++) dot += c[j] * xb[j];
      else for (int j = 0; j < m->block; j += 2) dot += (c[j >> 1] & 15) * xb[j] + (c[j >> 1] >> 4) * xb[j + 1];
      acc += m->scales[(size_t)n * m->nBlocks + b] * (dot - zeroPoint(m, n, b) * xs[b]);
    }
    y[n] = acc;
  }
}

/* codes(one block) . x_b, 16 codes at a time, widened to fp32 in registers. */
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline __m512 blockDotQ512(int bits, const uint8_t *c, const float *xb, int groups) {
  __m512 dot = _mm512_setzero_ps();
  if (bits == 8) {
    for (int g = 0; g < groups; g++) {
      __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + 16 * g))));
      dot = _mm512_fmadd_ps(w, _mm512_loadu_ps(xb + 16 * g), dot);
    }
    return dot;
  }
  const __m128i low = _mm_set1_epi8(15);
  for (int g = 0; g < groups; g += 2) { /* 16 bytes hold 32 codes */
    __m128i bytes = _mm_loadu_si128((const __m128i *)(c + 8 * g));
    __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    dot = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb + 16 * g), dot);
    if (g + 1 < groups) {
      __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)));
      dot = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16 * g + 16), dot);
    }
  }
  return dot;
}

/* One vector accumulator per row, scaled per block; like the fp32 kernel, two rows at a time, one
 * from each half, prefetched, so the codes stream from two places at once. */
__attribute__((target("avx512f,avx512bw")))
void gemvQAvx512(const Mat *m, const float *x, const float *xs, float *y, int N) {
  const int blob = m->block * m->bits / 8, groups = m->block / 16, h = N / 2;
  int n = 0;
  for (; n < h; n++) {
    const int r[2] = {n, h + n};
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    float corr0 = 0, corr1 = 0;
    const uint8_t *row0 = m->codes + (size_t)r[0] * m->nBlocks * blob, *row1 = m->codes + (size_t)r[1] * m->nBlocks * blob;
    const float *sc0 = m->scales + (size_t)r[0] * m->nBlocks, *sc1 = m->scales + (size_t)r[1] * m->nBlocks;
    for (int b = 0; b < m->nBlocks; b++) {
      const float *xb = x + (size_t)b * m->block;
      _mm_prefetch((const char *)(row0 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0); /* the same 1 KiB ahead */
      _mm_prefetch((const char *)(row1 + (size_t)b * blob + 4 * PREFETCH_AHEAD), _MM_HINT_T0);
      acc0 = _mm512_fmadd_ps(_mm512_set1_ps(sc0[b]), blockDotQ512(m->bits, row0 + (size_t)b * blob, xb, groups), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_set1_ps(sc1[b]), blockDotQ512(m->bits, row1 + (size_t)b * blob, xb, groups), acc1);
      corr0 += sc0[b] * zeroPoint(m, r[0], b) * xs[b];
      corr1 += sc1[b] * zeroPoint(m, r[1], b) * xs[b];
    }
    y[r[0]] = _mm512_reduce_add_ps(acc0) - corr0;
    y[r[1]] = _mm512_reduce_add_ps(acc1) - corr1;
  }
  if (N & 1) {
    const int last = N - 1;
    __m512 acc = _mm512_setzero_ps();
    float corr = 0;
    const uint8_t *row = m->codes + (size_t)last * m->nBlocks * blob;
    const float *sc = m->scales + (size_t)last * m->nBlocks;
    for (int b = 0; b < m->nBlocks; b++) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(sc[b]), blockDotQ512(m->bits, row + (size_t)b * blob, x + (size_t)b * m->block, groups), acc);
      corr += sc[b] * zeroPoint(m, last, b) * xs[b];
    }
    y[last] = _mm512_reduce_add_ps(acc) - corr;
  }
}

GemvQFn gemvQ = gemvQScalar;

void pickKernel(void) {
  __builtin_cpu_init();
  const char *forced = getenv("MORRIS_NATIVE_ISA"); /* tests force a lower ISA */
  if (forced && strcmp(forced, "scalar") == 0) return;
  if (__builtin_cpu_supports("avx512f") && !(forced && strcmp(forced, "avx2") == 0)) {
    gemv = gemvAvx512;
    gemm = gemmAvx512;
    dotf = dotAvx512;
    axpy = axpyAvx512;
    isaName = "avx512";
    if (__builtin_cpu_supports("avx512bw")) {
      gemvQ = gemvQAvx512;
      gemmQ = gemmQAvx512;
    }
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    gemv = gemvAvx2;
    gemm = gemmAvx2;
    dotf = dotAvx2;
    axpy = axpyAvx2;
    isaName = "avx2";
  }
}
