/*
 * One-token decode step of a Llama-family decoder (batch 1; fp32 weights, or the int8/int4 codes
 * ONNX Runtime's MatMulNBits reads), for CPUs.
 *
 * Why this exists: single-token decode is a chain of matrix-vector products whose speed is set
 * by how fast the weights stream from memory. ONNX Runtime's one-row fp32 matmul reads them at
 * about 60% of the bandwidth a plain read reaches on one core (measured; see README "Figures"),
 * and ONNX Runtime for Node cannot load custom-op libraries, so the decode step runs here. Prompt
 * processing, batches and GPUs stay in the ONNX graph.
 *
 * The math mirrors src/model/llama-graph.ts (HF semantics: rotate_half RoPE, GQA, optional
 * q/k/v/o/MLP biases, Mistral's sliding window) and is tested against the float64 reference.
 * Weights are memory-mapped from the checkpoint's safetensors files (fp16/bf16 widened once, as
 * the ONNX path does), then the matrices a step streams are packed into one huge-page region in
 * read order (packWeights); the gemvs read each matrix as two prefetched streams.
 *
 * JS API (see src/model/native-decode.ts):
 *   kernelInfo() -> { isa, quantIsa }
 *   createDecoder(spec) -> handle; decoderInfo(handle) -> { packedBytes, hugePages }
 *   cacheNew / cacheImport / cacheExport / cacheTruncate / cacheFree / cacheLength (KV cache slots)
 *   decodeStep(handle, slot, token, position, logits) -> Promise<void> (runs off the main thread)
 *   releaseDecoder(handle)
 *   readSum(Float32Array), readBandwidth(mib, passes): one-thread read bandwidth for the roofline
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <immintrin.h>

#define MODULES 7 /* q k v o gate up down, the order of LORA_MODULES in llama-graph.ts */

typedef struct {
  const float *a; /* [r, in] */
  const float *b; /* [out, r] */
  int r;
  float scale;
} Lora;

/* A weight matrix [N, K]: fp32 rows, or MatMulNBits blocks (src/model/quant.ts): per row
 * nBlocks blocks of `block` codes (8-bit, or 4-bit two a byte, element 2j in the low nibble),
 * a float scale and an unsigned zero point per block (4-bit zero points two a byte per row). */
typedef struct {
  const float *f;
  const uint8_t *codes;
  const float *scales;
  const uint8_t *zeros;
  int bits, block, nBlocks;
} Mat;

typedef struct {
  const float *inNorm, *postNorm;
  Mat w[MODULES];
  const float *bias[MODULES];
  Lora lora[MODULES];
} Layer;

/* One sequence's KV cache: per layer [kvHeads, cap, headDim], so appending a position is O(1)
 * (the ONNX graph's present = concat(past, new) copies the whole cache every step). */
typedef struct {
  float **k, **v;
  int cap, len, used;
} Slot;

typedef struct {
  int hidden, inter, layers, heads, kvHeads, headDim, vocab, window;
  float eps;
  float *invFreq; /* [headDim / 2] */
  const float *embed, *norm;
  Mat head;
  Layer *layer;
  void **maps;
  size_t *mapLens;
  int nMaps;
  void **owned;
  int nOwned, capOwned;
  float *x, *h, *q, *k, *v, *ctx, *t1, *t2, *loraTmp, *scores, *cosT, *sinT, *xPad, *xSums;
  int scoresCap;
  int padCap, sumsCap;
  Slot *slots;
  int nSlots;
  int busy, released;
  void *arena; /* the packed weights (packWeights), or NULL when they are used in place */
  size_t arenaLen;
  int hugePages; /* the kernel accepted MADV_HUGEPAGE for the arena */
  Slot *running; /* the slot of the step in flight */
} Decoder;

/* ---------- matrix-vector kernels: y[n] = W[n, :] . x (W row-major [N, K], the HF layout) ---------- */

typedef void (*GemvFn)(const float *W, const float *x, float *y, int N, int K);

static void gemvScalar(const float *W, const float *x, float *y, int N, int K) {
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

/* Software prefetch distance, in floats (1 KiB): measured on this kind of VM, the hardware
 * prefetcher alone leaves the gemv's speed at the mercy of the compiler's instruction order
 * (14.4 against 16.0 GB/s for the same loop built two ways); prefetching 1 KiB ahead in each
 * stream gives 16.6 either way. One row ahead (576 floats at SmolLM2's width) was slower. */
#define PREFETCH_AHEAD 256

/* Two rows at a time, one from each half of the matrix: two sequential streams far apart keep
 * more memory requests in flight on one core than a single stream does; with the prefetch, the
 * gemvs of a SmolLM2-sized model read 16.6 GB/s from huge pages where one row at a time read
 * 13.5-14 (measured in one run on one core). Two accumulators per row hide the FMA latency. An
 * odd last row goes alone. */
__attribute__((target("avx512f")))
static float dotAvx512(const float *a, const float *b, int n);

__attribute__((target("avx512f")))
static void gemvAvx512(const float *W, const float *x, float *y, int N, int K) {
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
static float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/* The AVX-512 kernel's layout (two rows, one from each half, prefetched) with 8-wide vectors. */
__attribute__((target("avx2,fma")))
static float dotAvx2(const float *a, const float *b, int n);

__attribute__((target("avx2,fma")))
static void gemvAvx2(const float *W, const float *x, float *y, int N, int K) {
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
typedef float (*DotFn)(const float *a, const float *b, int n);
typedef void (*AxpyFn)(float *y, float a, const float *x, int n);

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
static float dotAvx512(const float *a, const float *b, int n) {
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
static float dotAvx2(const float *a, const float *b, int n) {
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

static DotFn dotf = dotScalar;
static AxpyFn axpy = axpyScalar;
static GemvFn gemv = gemvScalar;
static const char *isaName = "scalar";

/* ---------- quantized matrix-vector: y[n] = sum_b scale_nb * (codes_nb . x_b - zero_nb * sum(x_b)) ----------
 * x comes zero-padded to nBlocks * block with its block sums precomputed, so the zero point costs one
 * scalar multiply-add per block and padding needs no special case. Weights are widened to fp32 in
 * registers: the activations keep full precision (ONNX Runtime's fast path rounds them to int8). */

static inline int zeroPoint(const Mat *m, int n, int b) {
  if (m->bits == 8) return m->zeros[(size_t)n * m->nBlocks + b];
  uint8_t z = m->zeros[(size_t)n * ((m->nBlocks + 1) / 2) + (b >> 1)];
  return b & 1 ? z >> 4 : z & 15;
}

static void gemvQScalar(const Mat *m, const float *x, const float *xs, float *y, int N) {
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
static void gemvQAvx512(const Mat *m, const float *x, const float *xs, float *y, int N) {
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

typedef void (*GemvQFn)(const Mat *m, const float *x, const float *xs, float *y, int N);
static GemvQFn gemvQ = gemvQScalar;

/* y = M x for either kind of matrix; quantized ones use d->xPad / d->xSums as scratch. */
static void matvec(Decoder *d, const Mat *m, const float *x, float *y, int N, int K) {
  if (m->f) {
    gemv(m->f, x, y, N, K);
    return;
  }
  const int padded = m->nBlocks * m->block;
  memcpy(d->xPad, x, sizeof(float) * K);
  memset(d->xPad + K, 0, sizeof(float) * (padded - K));
  for (int b = 0; b < m->nBlocks; b++) {
    float s = 0;
    for (int j = 0; j < m->block; j++) s += d->xPad[b * m->block + j];
    d->xSums[b] = s;
  }
  /* vector blocks need whole groups of 16 codes */
  (m->block % 16 == 0 ? gemvQ : gemvQScalar)(m, d->xPad, d->xSums, y, N);
}

static void pickKernel(void) {
  __builtin_cpu_init();
  const char *forced = getenv("MORRIS_NATIVE_ISA"); /* tests force a lower ISA */
  if (forced && strcmp(forced, "scalar") == 0) return;
  if (__builtin_cpu_supports("avx512f") && !(forced && strcmp(forced, "avx2") == 0)) {
    gemv = gemvAvx512;
    dotf = dotAvx512;
    axpy = axpyAvx512;
    isaName = "avx512";
    if (__builtin_cpu_supports("avx512bw")) gemvQ = gemvQAvx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    gemv = gemvAvx2;
    dotf = dotAvx2;
    axpy = axpyAvx2;
    isaName = "avx2";
  }
}

/* ---------- the step ---------- */

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* y = W x + b + scale * B (A x) */
static void linear(Decoder *d, const Layer *L, int m, const float *x, float *y, int out, int in) {
  matvec(d, &L->w[m], x, y, out, in);
  if (L->bias[m]) for (int i = 0; i < out; i++) y[i] += L->bias[m][i];
  const Lora *lo = &L->lora[m];
  if (lo->a) {
    float *down = d->loraTmp, *up = d->loraTmp + lo->r;
    gemv(lo->a, x, down, lo->r, in);
    gemv(lo->b, down, up, out, lo->r);
    for (int i = 0; i < out; i++) y[i] += lo->scale * up[i];
  }
}

static void rope(float *v, int nHeads, int hd, const float *cosT, const float *sinT) {
  int half = hd / 2;
  for (int hh = 0; hh < nHeads; hh++) {
    float *p = v + hh * hd;
    for (int i = 0; i < half; i++) {
      float x1 = p[i], x2 = p[i + half];
      p[i] = x1 * cosT[i] - x2 * sinT[i];
      p[i + half] = x2 * cosT[i] + x1 * sinT[i];
    }
  }
}

typedef struct {
  Slot *slot;
  float *logits;
  int token, position;
} StepArgs;

static void step(Decoder *d, const StepArgs *a) {
  const int H = d->hidden, hd = d->headDim, nh = d->heads, nkv = d->kvHeads, group = nh / nkv;
  Slot *S = a->slot;
  const int pastLen = S->len, T = pastLen + 1, cap = S->cap;
  for (int i = 0; i < hd / 2; i++) {
    double ang = (double)a->position * (double)d->invFreq[i];
    d->cosT[i] = (float)cos(ang);
    d->sinT[i] = (float)sin(ang);
  }
  memcpy(d->x, d->embed + (size_t)a->token * H, sizeof(float) * H);
  const int first = d->window > 0 && pastLen - d->window + 1 > 0 ? pastLen - d->window + 1 : 0;
  const float scale = 1.0f / sqrtf((float)hd);
  for (int l = 0; l < d->layers; l++) {
    const Layer *L = &d->layer[l];
    rmsnorm(d->h, d->x, L->inNorm, H, d->eps);
    linear(d, L, 0, d->h, d->q, nh * hd, H);
    linear(d, L, 1, d->h, d->k, nkv * hd, H);
    linear(d, L, 2, d->h, d->v, nkv * hd, H);
    rope(d->q, nh, hd, d->cosT, d->sinT);
    rope(d->k, nkv, hd, d->cosT, d->sinT);
    for (int g = 0; g < nkv; g++) {
      memcpy(S->k[l] + ((size_t)g * cap + pastLen) * hd, d->k + g * hd, sizeof(float) * hd);
      memcpy(S->v[l] + ((size_t)g * cap + pastLen) * hd, d->v + g * hd, sizeof(float) * hd);
    }
    for (int hh = 0; hh < nh; hh++) {
      const float *qh = d->q + hh * hd;
      const float *K = S->k[l] + (size_t)(hh / group) * cap * hd;
      const float *V = S->v[l] + (size_t)(hh / group) * cap * hd;
      float mx = -INFINITY;
      for (int j = first; j < T; j++) {
        float s = dotf(qh, K + (size_t)j * hd, hd) * scale;
        d->scores[j] = s;
        if (s > mx) mx = s;
      }
      float z = 0;
      for (int j = first; j < T; j++) z += (d->scores[j] = expf(d->scores[j] - mx));
      float *c = d->ctx + hh * hd;
      memset(c, 0, sizeof(float) * hd);
      for (int j = first; j < T; j++) axpy(c, d->scores[j] / z, V + (size_t)j * hd, hd);
    }
    linear(d, L, 3, d->ctx, d->t1, H, nh * hd);
    for (int i = 0; i < H; i++) d->x[i] += d->t1[i];
    rmsnorm(d->h, d->x, L->postNorm, H, d->eps);
    linear(d, L, 4, d->h, d->t1, d->inter, H);
    linear(d, L, 5, d->h, d->t2, d->inter, H);
    for (int i = 0; i < d->inter; i++) {
      float g = d->t1[i];
      d->t1[i] = g / (1.0f + expf(-g)) * d->t2[i];
    }
    linear(d, L, 6, d->t1, d->t2, H, d->inter);
    for (int i = 0; i < H; i++) d->x[i] += d->t2[i];
  }
  rmsnorm(d->h, d->x, d->norm, H, d->eps);
  matvec(d, &d->head, d->h, a->logits, d->vocab, H);
  S->len = T;
}

/* ---------- KV cache slots ---------- */

static void slotFree(Decoder *d, Slot *S) {
  if (S->k) for (int l = 0; l < d->layers; l++) { free(S->k[l]); free(S->v[l]); }
  free(S->k);
  free(S->v);
  memset(S, 0, sizeof *S);
}

/* Room for `need` positions; grows by doubling so a long generation reallocates O(log n) times. */
static int slotReserve(Decoder *d, Slot *S, int need) {
  if (need <= S->cap) return 1;
  int cap = S->cap ? S->cap : 64;
  while (cap < need) cap *= 2;
  const size_t hd = d->headDim, rowBytes = sizeof(float) * hd;
  float **k = calloc(d->layers, sizeof(float *)), **v = calloc(d->layers, sizeof(float *));
  if (!k || !v) { free(k); free(v); return 0; }
  for (int l = 0; l < d->layers; l++) {
    k[l] = malloc(rowBytes * d->kvHeads * cap);
    v[l] = malloc(rowBytes * d->kvHeads * cap);
    if (!k[l] || !v[l]) {
      for (int i = 0; i <= l; i++) { free(k[i]); free(v[i]); }
      free(k);
      free(v);
      return 0;
    }
    if (S->k) for (int g = 0; g < d->kvHeads; g++) {
      memcpy(k[l] + (size_t)g * cap * hd, S->k[l] + (size_t)g * S->cap * hd, rowBytes * S->len);
      memcpy(v[l] + (size_t)g * cap * hd, S->v[l] + (size_t)g * S->cap * hd, rowBytes * S->len);
    }
  }
  int len = S->len;
  slotFree(d, S);
  S->k = k;
  S->v = v;
  S->cap = cap;
  S->len = len;
  S->used = 1;
  return 1;
}

/* ---------- loading ---------- */

static void *trackOwned(Decoder *d, size_t bytes) {
  if (d->nOwned == d->capOwned) {
    d->capOwned = d->capOwned ? d->capOwned * 2 : 64;
    d->owned = realloc(d->owned, sizeof(void *) * d->capOwned);
  }
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
  d->owned[d->nOwned++] = p;
  return p;
}

/* Unmaps and frees everything but the struct itself, which the JS handle points to until GC. */
static void releaseResources(Decoder *d) {
  for (int i = 0; i < d->nMaps; i++) if (d->maps[i]) munmap(d->maps[i], d->mapLens[i]);
  if (d->arena) munmap(d->arena, d->arenaLen);
  d->arena = NULL;
  d->arenaLen = 0;
  for (int i = 0; i < d->nOwned; i++) free(d->owned[i]);
  free(d->maps);
  free(d->mapLens);
  free(d->owned);
  free(d->layer);
  free(d->scores);
  for (int i = 0; i < d->nSlots; i++) slotFree(d, &d->slots[i]);
  free(d->slots);
  d->slots = NULL;
  d->nSlots = 0;
  d->maps = NULL;
  d->mapLens = NULL;
  d->owned = NULL;
  d->layer = NULL;
  d->scores = NULL;
  d->nMaps = d->nOwned = d->capOwned = d->scoresCap = 0;
  d->released = 1;
}

static void freeDecoder(Decoder *d) {
  if (!d) return;
  releaseResources(d);
  free(d);
}

static float halfToFloat(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) bits = sign | 0x7f800000 | (man << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

#define THROW(env, code, msg) do { napi_throw_error(env, code, msg); return NULL; } while (0)
#define CHECK(env, call) do { if ((call) != napi_ok) { const napi_extended_error_info *info; napi_get_last_error_info(env, &info); bool pending; napi_is_exception_pending(env, &pending); if (!pending) napi_throw_error(env, "NATIVE", info && info->error_message ? info->error_message : "N-API call failed"); return NULL; } } while (0)

static int getInt(napi_env env, napi_value obj, const char *key, int *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static int getDouble(napi_env env, napi_value obj, const char *key, double *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return napi_get_value_double(env, v, out) == napi_ok;
}

/* The data of a Float32Array and its length; NULL for anything else. An empty array's data
 * pointer may be NULL, so it gets a non-NULL dummy. */
static float *f32Array(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type t;
  void *data;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &t, len, &data, NULL, NULL) != napi_ok || t != napi_float32_array) return NULL;
  return data ? data : (float *)"";
}

/* A Float32Array of exactly `expect` values, or NULL. */
static float *f32Data(napi_env env, napi_value v, size_t expect) {
  size_t len;
  float *p = f32Array(env, v, &len);
  return p && len == expect ? p : NULL;
}

/* Float32Array (copied, so JS may drop it) → owned buffer */
static float *copyF32Array(napi_env env, Decoder *d, napi_value v, size_t expect) {
  const float *src = f32Data(env, v, expect);
  float *p = src ? trackOwned(d, expect * sizeof(float)) : NULL;
  if (p) memcpy(p, src, expect * sizeof(float));
  return p;
}

/* { file: index, offset, dtype: 'F32'|'F16'|'BF16', count } → fp32 pointer (in place when possible) */
static const float *tensorPointer(napi_env env, Decoder *d, napi_value desc, size_t expect, char *err, size_t errLen) {
  int file;
  double offset, count;
  char dtype[8] = {0};
  size_t dl;
  napi_value dv;
  if (!getInt(env, desc, "file", &file) || !getDouble(env, desc, "offset", &offset) || !getDouble(env, desc, "count", &count) ||
      napi_get_named_property(env, desc, "dtype", &dv) != napi_ok || napi_get_value_string_utf8(env, dv, dtype, sizeof dtype, &dl) != napi_ok) {
    snprintf(err, errLen, "tensor descriptor needs file, offset, count and dtype");
    return NULL;
  }
  if (file < 0 || file >= d->nMaps || (size_t)count != expect) {
    snprintf(err, errLen, "tensor descriptor: file %d of %d, %.0f values where %zu were expected", file, d->nMaps, count, expect);
    return NULL;
  }
  int width = strcmp(dtype, "F32") == 0 ? 4 : (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0) ? 2 : 0;
  if (!width) {
    snprintf(err, errLen, "tensor dtype %s is not F32, F16 or BF16", dtype);
    return NULL;
  }
  if (offset < 0 || (size_t)offset + (size_t)count * width > d->mapLens[file]) {
    snprintf(err, errLen, "tensor at byte %.0f runs past the end of its file (%zu bytes)", offset, d->mapLens[file]);
    return NULL;
  }
  const uint8_t *src = (const uint8_t *)d->maps[file] + (size_t)offset;
  if (width == 4 && ((uintptr_t)src & 3) == 0) return (const float *)src;
  float *dst = trackOwned(d, expect * sizeof(float));
  if (!dst) {
    snprintf(err, errLen, "out of memory widening a tensor");
    return NULL;
  }
  if (width == 4) memcpy(dst, src, expect * 4);
  else if (strcmp(dtype, "F16") == 0) for (size_t i = 0; i < expect; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); dst[i] = halfToFloat(h); }
  else for (size_t i = 0; i < expect; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); uint32_t b = (uint32_t)h << 16; memcpy(&dst[i], &b, 4); }
  return dst;
}

/* A matrix descriptor: a tensor descriptor (fp32/fp16/bf16 in the checkpoint) or
 * { quant: { bits, block, nBlocks, file, codes, scales, zeros } } with byte offsets into quant.bin. */
static int matrixFrom(napi_env env, Decoder *d, napi_value desc, int N, int K, Mat *out, char *err, size_t errLen) {
  bool isQuant = false;
  napi_has_named_property(env, desc, "quant", &isQuant);
  memset(out, 0, sizeof *out);
  if (!isQuant) {
    out->f = tensorPointer(env, d, desc, (size_t)N * K, err, errLen);
    return out->f != NULL;
  }
  napi_value q;
  int file;
  double codes, scales, zeros;
  napi_get_named_property(env, desc, "quant", &q);
  if (!getInt(env, q, "bits", &out->bits) || !getInt(env, q, "block", &out->block) || !getInt(env, q, "nBlocks", &out->nBlocks) ||
      !getInt(env, q, "file", &file) || !getDouble(env, q, "codes", &codes) || !getDouble(env, q, "scales", &scales) || !getDouble(env, q, "zeros", &zeros)) {
    snprintf(err, errLen, "quantized matrix descriptor needs bits, block, nBlocks, file, codes, scales and zeros");
    return 0;
  }
  if ((out->bits != 4 && out->bits != 8) || out->block <= 0 || out->block % 2 || out->nBlocks != (K + out->block - 1) / out->block || file < 0 || file >= d->nMaps) {
    snprintf(err, errLen, "quantized matrix [%d, %d]: %d bits, block %d, %d blocks, file %d is not a valid layout", N, K, out->bits, out->block, out->nBlocks, file);
    return 0;
  }
  const size_t blocks = (size_t)N * out->nBlocks;
  const size_t codeBytes = blocks * out->block * out->bits / 8;
  const size_t zeroBytes = out->bits == 8 ? blocks : (size_t)N * ((out->nBlocks + 1) / 2);
  const size_t len = d->mapLens[file];
  if (codes < 0 || scales < 0 || zeros < 0 || (size_t)codes + codeBytes > len || (size_t)scales + blocks * 4 > len || (size_t)zeros + zeroBytes > len) {
    snprintf(err, errLen, "quantized matrix [%d, %d] runs past the end of its file (%zu bytes); compile the model again", N, K, len);
    return 0;
  }
  const uint8_t *base = d->maps[file];
  out->codes = base + (size_t)codes;
  out->zeros = base + (size_t)zeros;
  if (((uintptr_t)(base + (size_t)scales) & 3) == 0) out->scales = (const float *)(base + (size_t)scales);
  else {
    float *copy = trackOwned(d, blocks * 4);
    if (!copy) { snprintf(err, errLen, "out of memory"); return 0; }
    memcpy(copy, base + (size_t)scales, blocks * 4);
    out->scales = copy;
  }
  if (out->nBlocks * out->block > d->padCap) d->padCap = out->nBlocks * out->block;
  if (out->nBlocks > d->sumsCap) d->sumsCap = out->nBlocks;
  return 1;
}

/* ---------- packing: the streamed weights in one huge-page region ---------- */

/* Frees an owned buffer early (a widened tensor once packed); its slot stays, empty. */
static void releaseOwned(Decoder *d, const void *p) {
  for (int i = 0; i < d->nOwned; i++) if (d->owned[i] == p) { free(d->owned[i]); d->owned[i] = NULL; return; }
}

static size_t alignUp(size_t n) { return (n + 63) & ~(size_t)63; }

/* Drops the whole file pages under [p, p + bytes) from this process if p lies in a mapped file,
 * so the copy does not hold the weights twice even for a moment. */
static void dropMapped(Decoder *d, const void *p, size_t bytes) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p;
  for (int i = 0; i < d->nMaps; i++) {
    const uintptr_t m = (uintptr_t)d->maps[i];
    if (!m || a < m || a >= m + d->mapLens[i]) continue;
    const uintptr_t from = (a + page - 1) & ~(page - 1), to = (a + bytes) & ~(page - 1);
    if (to > from) madvise((void *)from, to - from, MADV_DONTNEED);
    return;
  }
}

/* One piece a step streams: where its pointer lives and how many bytes it covers. */
typedef struct { const void **at; size_t bytes; } Piece;

/* Pieces of a matrix [N, K] in read order: its fp32 rows, or codes, scales and zero points. */
static int matPieces(Mat *m, int N, int K, Piece *out) {
  if (m->f) {
    out[0] = (Piece){(const void **)&m->f, (size_t)N * K * sizeof(float)};
    return 1;
  }
  const size_t blocks = (size_t)N * m->nBlocks;
  out[0] = (Piece){(const void **)&m->codes, blocks * m->block * m->bits / 8};
  out[1] = (Piece){(const void **)&m->scales, blocks * sizeof(float)};
  out[2] = (Piece){(const void **)&m->zeros, m->bits == 8 ? blocks : (size_t)N * ((m->nBlocks + 1) / 2)};
  return 3;
}

/* MemAvailable from /proc/meminfo in bytes, or -1 where it cannot be read. */
static long long memAvailableBytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

/* Transparent huge pages in "always" or "madvise" mode (the bracketed word in sysfs). */
static int hugePagesEnabled(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return 0;
  char buf[128] = {0};
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[got] = 0;
  return strstr(buf, "[always]") != NULL || strstr(buf, "[madvise]") != NULL;
}

/*
 * Copies every matrix a step streams (per layer q, k, v, o, gate, up, down, then the LM head)
 * into one anonymous region in the order a step reads them, and asks for 2 MiB pages there
 * (MADV_HUGEPAGE). Why: with the checkpoint's own 4 KiB file pages the read pays a TLB miss every
 * 4 KiB and restarts at each matrix; measured on one core of this kind of VM, the same gemvs read
 * 12.7 GB/s from 4 KiB pages and 15.5 GB/s from huge pages. Each piece's file pages are dropped
 * from this process as soon as it is copied (MADV_DONTNEED; they stay in the page cache), so
 * resident memory holds the weights once, even during the copy. `tied`: the embedding is the LM
 * head's matrix, so the lookup reads the packed copy. If the region cannot be had, or would not fit
 * in the memory available, the weights are used in place.
 */
static void packWeights(Decoder *d, const int *outF, const int *inF, int tied) {
  const int cap = d->layers * MODULES * 3 + 3;
  Piece *pieces = malloc(sizeof(Piece) * cap);
  if (!pieces) return;
  int n = 0;
  for (int l = 0; l < d->layers; l++)
    for (int k = 0; k < MODULES; k++) n += matPieces(&d->layer[l].w[k], outF[k], inF[k], pieces + n);
  n += matPieces(&d->head, d->vocab, d->hidden, pieces + n);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += alignUp(pieces[i].bytes);
  /* Anonymous memory is not reclaimable the way file pages are, and Linux overcommits: a mapping
   * larger than what is free succeeds and the copy then gets the process killed. So pack only with
   * room to spare; a model too large for that (7B in fp32 on a small host) is read in place. */
  const long long avail = memAvailableBytes();
  if (avail >= 0 && (long long)total + ((long long)512 << 20) > avail) {
    free(pieces);
    return;
  }
  void *arena = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (arena == MAP_FAILED) {
    free(pieces);
    return;
  }
  /* madvise succeeds even where huge pages are off ("never"), so ask the mode too */
  d->hugePages = madvise(arena, total, MADV_HUGEPAGE) == 0 && hugePagesEnabled();
  uint8_t *at = arena;
  for (int i = 0; i < n; i++) {
    const void *src = *pieces[i].at;
    memcpy(at, src, pieces[i].bytes);
    *pieces[i].at = at;
    releaseOwned(d, src); /* a widened copy is not needed twice */
    dropMapped(d, src, pieces[i].bytes);
    at += alignUp(pieces[i].bytes);
  }
  if (tied && d->head.f) {
    /* the lookup reads the packed head; a widened embedding copy (fp16/bf16) goes */
    releaseOwned(d, d->embed);
    d->embed = d->head.f;
  }
  free(pieces);
  mprotect(arena, total, PROT_READ); /* weights are read-only from here: a stray write faults */
  d->arena = arena;
  d->arenaLen = total;
}

static void finalizeDecoder(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  freeDecoder((Decoder *)data);
}

static const char *MODULE_NAMES[MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* spec: { hidden, inter, layers, heads, kvHeads, headDim, vocab, window, eps, invFreq: Float32Array,
 *         files: string[], embed, norm, head: desc, layer: [{ inNorm, postNorm, w: {q_proj: desc…}, bias: {…},
 *         lora: {q_proj: { a: Float32Array, b: Float32Array, r, scale }…} }] } */
static napi_value createDecoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value spec;
  CHECK(env, napi_get_cb_info(env, info, &argc, &spec, NULL, NULL));
  if (argc < 1) THROW(env, "BAD_SPEC", "createDecoder(spec) needs a spec object");
  Decoder *d = calloc(1, sizeof(Decoder));
  double eps;
  if (!getInt(env, spec, "hidden", &d->hidden) || !getInt(env, spec, "inter", &d->inter) || !getInt(env, spec, "layers", &d->layers) ||
      !getInt(env, spec, "heads", &d->heads) || !getInt(env, spec, "kvHeads", &d->kvHeads) || !getInt(env, spec, "headDim", &d->headDim) ||
      !getInt(env, spec, "vocab", &d->vocab) || !getInt(env, spec, "window", &d->window) || !getDouble(env, spec, "eps", &eps) ||
      d->hidden <= 0 || d->inter <= 0 || d->layers <= 0 || d->heads <= 0 || d->kvHeads <= 0 || d->headDim <= 1 || d->vocab <= 0 ||
      d->heads % d->kvHeads != 0 || d->headDim % 2 != 0) {
    freeDecoder(d);
    THROW(env, "BAD_SPEC", "decoder spec: hidden, inter, layers, heads, kvHeads (dividing heads), headDim (even), vocab, window and eps are required");
  }
  d->eps = (float)eps;
  char err[4400];
  napi_value v, files;
  /* map every safetensors file once, read-only: the page cache is shared with ONNX Runtime's view */
  uint32_t nFiles;
  if (napi_get_named_property(env, spec, "files", &files) != napi_ok || napi_get_array_length(env, files, &nFiles) != napi_ok || nFiles == 0) {
    freeDecoder(d);
    THROW(env, "BAD_SPEC", "decoder spec: files must list the safetensors files");
  }
  d->maps = calloc(nFiles, sizeof(void *));
  d->mapLens = calloc(nFiles, sizeof(size_t));
  d->nMaps = (int)nFiles;
  for (uint32_t i = 0; i < nFiles; i++) {
    char path[4096];
    size_t pl;
    napi_get_element(env, files, i, &v);
    if (napi_get_value_string_utf8(env, v, path, sizeof path, &pl) != napi_ok) { freeDecoder(d); THROW(env, "BAD_SPEC", "decoder spec: files must be strings"); }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
      snprintf(err, sizeof err, "cannot open %s: %s", path, strerror(errno));
      if (fd >= 0) close(fd);
      freeDecoder(d);
      THROW(env, "IO", err);
    }
    void *m = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    close(fd);
    if (m == MAP_FAILED) {
      snprintf(err, sizeof err, "cannot map %s: %s", path, strerror(errno));
      freeDecoder(d);
      THROW(env, "IO", err);
    }
    d->maps[i] = m;
    d->mapLens[i] = (size_t)st.st_size;
  }
  const int H = d->hidden, hd = d->headDim, qOut = d->heads * hd, kvOut = d->kvHeads * hd;
  const int outF[MODULES] = {qOut, kvOut, kvOut, H, d->inter, d->inter, H};
  const int inF[MODULES] = {H, H, H, qOut, H, H, d->inter};

#define TENSOR(dst, obj, key, count) do { \
    if (napi_get_named_property(env, obj, key, &v) != napi_ok) { snprintf(err, sizeof err, "decoder spec: missing %s", key); freeDecoder(d); THROW(env, "BAD_SPEC", err); } \
    dst = tensorPointer(env, d, v, (size_t)(count), err, sizeof err); \
    if (!dst) { freeDecoder(d); THROW(env, "BAD_SPEC", err); } } while (0)

  TENSOR(d->embed, spec, "embed", (size_t)d->vocab * H);
  TENSOR(d->norm, spec, "norm", H);
  if (napi_get_named_property(env, spec, "head", &v) != napi_ok || !matrixFrom(env, d, v, d->vocab, H, &d->head, err, sizeof err)) {
    freeDecoder(d);
    THROW(env, "BAD_SPEC", err);
  }
  if (napi_get_named_property(env, spec, "invFreq", &v) != napi_ok || !(d->invFreq = copyF32Array(env, d, v, hd / 2))) {
    freeDecoder(d);
    THROW(env, "BAD_SPEC", "decoder spec: invFreq must be a Float32Array of headDim / 2 values");
  }
  napi_value layers;
  uint32_t nLayers;
  if (napi_get_named_property(env, spec, "layer", &layers) != napi_ok || napi_get_array_length(env, layers, &nLayers) != napi_ok || (int)nLayers != d->layers) {
    freeDecoder(d);
    THROW(env, "BAD_SPEC", "decoder spec: layer must hold one entry per layer");
  }
  d->layer = calloc(d->layers, sizeof(Layer));
  int maxR = 0;
  for (int l = 0; l < d->layers; l++) {
    napi_value lv, w, bias, lora, m;
    napi_get_element(env, layers, l, &lv);
    Layer *L = &d->layer[l];
    TENSOR(L->inNorm, lv, "inNorm", H);
    TENSOR(L->postNorm, lv, "postNorm", H);
    napi_get_named_property(env, lv, "w", &w);
    napi_get_named_property(env, lv, "bias", &bias);
    napi_get_named_property(env, lv, "lora", &lora);
    for (int k = 0; k < MODULES; k++) {
      if (napi_get_named_property(env, w, MODULE_NAMES[k], &v) != napi_ok || !matrixFrom(env, d, v, outF[k], inF[k], &L->w[k], err, sizeof err)) {
        freeDecoder(d);
        THROW(env, "BAD_SPEC", err);
      }
      bool has = false;
      napi_has_named_property(env, bias, MODULE_NAMES[k], &has);
      if (has) TENSOR(L->bias[k], bias, MODULE_NAMES[k], outF[k]);
      napi_has_named_property(env, lora, MODULE_NAMES[k], &has);
      if (has) {
        int r;
        double sc;
        napi_value a, b;
        napi_get_named_property(env, lora, MODULE_NAMES[k], &m);
        if (!getInt(env, m, "r", &r) || r <= 0 || !getDouble(env, m, "scale", &sc) || napi_get_named_property(env, m, "a", &a) != napi_ok ||
            napi_get_named_property(env, m, "b", &b) != napi_ok || !(L->lora[k].a = copyF32Array(env, d, a, (size_t)r * inF[k])) ||
            !(L->lora[k].b = copyF32Array(env, d, b, (size_t)outF[k] * r))) {
          snprintf(err, sizeof err, "decoder spec: layer %d %s LoRA needs r, scale, a [r, %d] and b [%d, r] as Float32Arrays", l, MODULE_NAMES[k], inF[k], outF[k]);
          freeDecoder(d);
          THROW(env, "BAD_SPEC", err);
        }
        L->lora[k].r = r;
        L->lora[k].scale = (float)sc;
        if (r > maxR) maxR = r;
      }
    }
  }
  bool tied = false;
  if (napi_get_named_property(env, spec, "tied", &v) == napi_ok) napi_get_value_bool(env, v, &tied);
  packWeights(d, outF, inF, tied);
  int widest = H > qOut ? H : qOut;
  if (d->inter > widest) widest = d->inter;
  float **bufs[] = {&d->x, &d->h, &d->q, &d->k, &d->v, &d->ctx, &d->t1, &d->t2};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i] = trackOwned(d, sizeof(float) * widest);
  d->loraTmp = trackOwned(d, sizeof(float) * (maxR + widest));
  d->xPad = trackOwned(d, sizeof(float) * (d->padCap + 16));
  d->xSums = trackOwned(d, sizeof(float) * (d->sumsCap + 1));
  d->cosT = trackOwned(d, sizeof(float) * hd);
  d->sinT = trackOwned(d, sizeof(float) * hd);
  napi_value handle;
  if (napi_create_external(env, d, finalizeDecoder, NULL, &handle) != napi_ok) {
    freeDecoder(d);
    THROW(env, "NATIVE", "cannot create the decoder handle");
  }
  return handle;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep; /* the logits array, so its buffer outlives the step */
  Decoder *d;
  StepArgs args;
  char error[160];
} StepJob;

static void runStep(napi_env env, void *data) {
  (void)env;
  StepJob *j = data;
  step(j->d, &j->args);
}

static void finishStep(napi_env env, napi_status status, void *data) {
  StepJob *j = data;
  j->d->busy = 0;
  j->d->running = NULL;
  napi_value result;
  if (status != napi_ok || j->error[0]) {
    napi_value msg, code;
    napi_create_string_utf8(env, j->error[0] ? j->error : "decode step cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "NATIVE", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &result);
    napi_reject_deferred(env, j->deferred, result);
  } else {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, j->deferred, result);
  }
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j);
}

/* Common argument checks: a live decoder, not mid-step, and (when slotArg >= 0) a slot in use. */
static Decoder *decoderArg(napi_env env, napi_value h) {
  Decoder *d = NULL;
  napi_valuetype t;
  if (napi_typeof(env, h, &t) != napi_ok || t != napi_external || napi_get_value_external(env, h, (void **)&d) != napi_ok || !d) {
    napi_throw_error(env, "BAD_STEP", "not a decoder handle");
    return NULL;
  }
  if (d->released) { napi_throw_error(env, "RELEASED", "this decoder was released"); return NULL; }
  if (d->busy) { napi_throw_error(env, "BUSY", "this decoder is running a step; steps and cache changes run one at a time"); return NULL; }
  return d;
}

static Slot *slotArg(napi_env env, Decoder *d, napi_value v) {
  int id;
  if (napi_get_value_int32(env, v, &id) != napi_ok || id < 0 || id >= d->nSlots || !d->slots[id].used) {
    napi_throw_error(env, "BAD_STEP", "not a live KV cache slot of this decoder");
    return NULL;
  }
  return &d->slots[id];
}

/* Float32Array element l of a JS array, with exactly `len` values (len < 0: any multiple of kvRow). */
static float *layerArray(napi_env env, napi_value arr, int l, size_t kvRow, long len, size_t *outLen) {
  napi_value e;
  float *p = napi_get_element(env, arr, l, &e) == napi_ok ? f32Array(env, e, outLen) : NULL;
  return p && *outLen % kvRow == 0 && (len < 0 || *outLen == (size_t)len) ? p : NULL;
}

/* cacheNew(handle) -> slot id: an empty KV cache for one sequence */
static napi_value cacheNew(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, out;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  Decoder *d = decoderArg(env, arg);
  if (!d) return NULL;
  int id = 0;
  while (id < d->nSlots && d->slots[id].used) id++;
  if (id == d->nSlots) {
    Slot *grown = realloc(d->slots, sizeof(Slot) * (d->nSlots + 4));
    if (!grown) THROW(env, "NO_MEMORY", "out of memory for a KV cache slot");
    memset(grown + d->nSlots, 0, sizeof(Slot) * 4);
    d->slots = grown;
    d->nSlots += 4;
  }
  if (!slotReserve(d, &d->slots[id], 1)) THROW(env, "NO_MEMORY", "out of memory for a KV cache");
  d->slots[id].len = 0;
  napi_create_int32(env, id, &out);
  return out;
}

/* cacheImport(handle, slot, keys[], values[]): replaces the slot's contents with per-layer [kvHeads, T, headDim] arrays */
static napi_value cacheImport(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) THROW(env, "BAD_STEP", "cacheImport(handle, slot, keys, values)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  const size_t hd = d->headDim, kvRow = (size_t)d->kvHeads * hd;
  uint32_t nk, nv;
  size_t n0;
  if (napi_get_array_length(env, argv[2], &nk) != napi_ok || napi_get_array_length(env, argv[3], &nv) != napi_ok || (int)nk != d->layers || (int)nv != d->layers ||
      !layerArray(env, argv[2], 0, kvRow, -1, &n0)) {
    THROW(env, "BAD_STEP", "cacheImport: keys and values need one Float32Array [kvHeads, T, headDim] per layer");
  }
  const int T = (int)(n0 / kvRow);
  S->len = 0;
  if (!slotReserve(d, S, T + 1)) THROW(env, "NO_MEMORY", "out of memory for the KV cache");
  for (int l = 0; l < d->layers; l++) {
    size_t n;
    const float *k = layerArray(env, argv[2], l, kvRow, (long)n0, &n), *v = layerArray(env, argv[3], l, kvRow, (long)n0, &n);
    if (!k || !v) THROW(env, "BAD_STEP", "cacheImport: every layer's keys and values must have the same [kvHeads, T, headDim] shape");
    for (int g = 0; g < d->kvHeads; g++) {
      memcpy(S->k[l] + (size_t)g * S->cap * hd, k + (size_t)g * T * hd, sizeof(float) * T * hd);
      memcpy(S->v[l] + (size_t)g * S->cap * hd, v + (size_t)g * T * hd, sizeof(float) * T * hd);
    }
  }
  S->len = T;
  napi_get_undefined(env, &undef);
  return undef;
}

/* cacheExport(handle, slot, length, keysOut[], valuesOut[]): the first `length` positions as [kvHeads, length, headDim] */
static napi_value cacheExport(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW(env, "BAD_STEP", "cacheExport(handle, slot, length, keys, values)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  int T;
  if (napi_get_value_int32(env, argv[2], &T) != napi_ok || T < 0 || T > S->len) THROW(env, "BAD_STEP", "cacheExport: length must be between 0 and the cached length");
  const size_t hd = d->headDim, kvRow = (size_t)d->kvHeads * hd;
  for (int l = 0; l < d->layers; l++) {
    size_t n;
    float *k = layerArray(env, argv[3], l, kvRow, (long)(kvRow * T), &n), *v = layerArray(env, argv[4], l, kvRow, (long)(kvRow * T), &n);
    if (!k || !v) THROW(env, "BAD_STEP", "cacheExport: keys and values need one Float32Array [kvHeads, length, headDim] per layer");
    for (int g = 0; g < d->kvHeads; g++) {
      memcpy(k + (size_t)g * T * hd, S->k[l] + (size_t)g * S->cap * hd, sizeof(float) * T * hd);
      memcpy(v + (size_t)g * T * hd, S->v[l] + (size_t)g * S->cap * hd, sizeof(float) * T * hd);
    }
  }
  napi_get_undefined(env, &undef);
  return undef;
}

/* cacheTruncate(handle, slot, length) / cacheFree(handle, slot) / cacheLength(handle, slot) */
static napi_value cacheTruncate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Decoder *d = argc >= 3 ? decoderArg(env, argv[0]) : NULL;
  if (argc < 3) THROW(env, "BAD_STEP", "cacheTruncate(handle, slot, length)");
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  int T;
  if (napi_get_value_int32(env, argv[2], &T) != napi_ok || T < 0 || T > S->len) THROW(env, "BAD_STEP", "cacheTruncate: length must be between 0 and the cached length");
  S->len = T;
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value cacheFree(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], undef;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_get_undefined(env, &undef);
  if (argc < 2) THROW(env, "BAD_STEP", "cacheFree(handle, slot)");
  Decoder *d = NULL;
  if (napi_get_value_external(env, argv[0], (void **)&d) != napi_ok || !d) THROW(env, "BAD_STEP", "not a decoder handle");
  if (d->released) return undef; /* already gone with the decoder */
  int id;
  if (napi_get_value_int32(env, argv[1], &id) != napi_ok || id < 0 || id >= d->nSlots) return undef;
  /* other sequences' caches may go while a step runs; the running one may not */
  if (d->busy && d->running == &d->slots[id]) THROW(env, "BUSY", "this sequence is running a step; free its cache after it");
  slotFree(d, &d->slots[id]);
  return undef;
}

static napi_value cacheLength(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) THROW(env, "BAD_STEP", "cacheLength(handle, slot)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  napi_create_int32(env, S->len, &out);
  return out;
}

/* decodeStep(handle, slot, token, position, logits) -> Promise: appends one position to the slot's cache */
static napi_value decodeStep(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW(env, "BAD_STEP", "decodeStep(handle, slot, token, position, logits)");
  Decoder *d = decoderArg(env, argv[0]);
  if (!d) return NULL;
  Slot *S = slotArg(env, d, argv[1]);
  if (!S) return NULL;
  int token, position;
  if (napi_get_value_int32(env, argv[2], &token) != napi_ok || napi_get_value_int32(env, argv[3], &position) != napi_ok || token < 0 || token >= d->vocab || position < 0) {
    THROW(env, "BAD_STEP", "token must be a vocabulary id and position a non-negative integer");
  }
  float *logits = f32Data(env, argv[4], (size_t)d->vocab);
  if (!logits) THROW(env, "BAD_STEP", "decodeStep: logits must be a Float32Array of vocabulary size");
  if (!slotReserve(d, S, S->len + 1)) THROW(env, "NO_MEMORY", "out of memory growing the KV cache");
  if (d->scoresCap < S->len + 1) {
    free(d->scores);
    d->scoresCap = S->cap;
    d->scores = malloc(sizeof(float) * d->scoresCap);
    if (!d->scores) { d->scoresCap = 0; THROW(env, "NO_MEMORY", "out of memory for attention scores"); }
  }
  StepJob *j = calloc(1, sizeof(StepJob));
  if (!j) THROW(env, "NO_MEMORY", "out of memory");
  j->d = d;
  j->args.slot = S;
  j->args.token = token;
  j->args.position = position;
  j->args.logits = logits;
  napi_value promise, name;
  napi_create_reference(env, argv[4], 1, &j->keep);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "morris.decodeStep", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, runStep, finishStep, j, &j->work);
  d->busy = 1;
  d->running = S;
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value releaseDecoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, undef;
  Decoder *d;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, arg, (void **)&d) != napi_ok || !d) THROW(env, "BAD_ARG", "not a decoder handle");
  if (d->busy) THROW(env, "BUSY", "cannot release a decoder while a step runs; await the step first");
  if (!d->released) releaseResources(d);
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value kernelInfo(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, isa;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, isaName, NAPI_AUTO_LENGTH, &isa);
  napi_set_named_property(env, obj, "isa", isa);
  napi_create_string_utf8(env, gemvQ == gemvQAvx512 ? "avx512" : "scalar", NAPI_AUTO_LENGTH, &isa);
  napi_set_named_property(env, obj, "quantIsa", isa);
  return obj;
}

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

/* { packedBytes, hugePages }: how the weights are held (packWeights), for logs and tests. */
static napi_value decoderInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, obj, v;
  CHECK(env, napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  Decoder *d = argc < 1 ? NULL : decoderArg(env, arg);
  if (!d) return NULL;
  napi_create_object(env, &obj);
  napi_create_double(env, (double)d->arenaLen, &v);
  napi_set_named_property(env, obj, "packedBytes", v);
  napi_get_boolean(env, d->hugePages, &v);
  napi_set_named_property(env, obj, "hugePages", v);
  return obj;
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

static napi_value init(napi_env env, napi_value exports) {
  pickKernel();
  napi_property_descriptor props[] = {
    {"createDecoder", NULL, createDecoder, NULL, NULL, NULL, napi_default, NULL},
    {"decodeStep", NULL, decodeStep, NULL, NULL, NULL, napi_default, NULL},
    {"cacheNew", NULL, cacheNew, NULL, NULL, NULL, napi_default, NULL},
    {"cacheImport", NULL, cacheImport, NULL, NULL, NULL, napi_default, NULL},
    {"cacheExport", NULL, cacheExport, NULL, NULL, NULL, napi_default, NULL},
    {"cacheTruncate", NULL, cacheTruncate, NULL, NULL, NULL, napi_default, NULL},
    {"cacheFree", NULL, cacheFree, NULL, NULL, NULL, napi_default, NULL},
    {"cacheLength", NULL, cacheLength, NULL, NULL, NULL, napi_default, NULL},
    {"releaseDecoder", NULL, releaseDecoder, NULL, NULL, NULL, napi_default, NULL},
    {"kernelInfo", NULL, kernelInfo, NULL, NULL, NULL, napi_default, NULL},
    {"readSum", NULL, readSum, NULL, NULL, NULL, napi_default, NULL},
    {"readBandwidth", NULL, readBandwidth, NULL, NULL, NULL, napi_default, NULL},
    {"decoderInfo", NULL, decoderInfo, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
