/*
 * The decode step's arithmetic, one kernel per instruction set (kernels.c): the fp32 gemv, the
 * int8/int4 gemv over MatMulNBits codes, and attention's dot/axpy. pickKernel chooses once at load
 * and sets the pointers below, so the step never branches on the CPU it runs on.
 */
#ifndef MORRIS_KERNELS_H
#define MORRIS_KERNELS_H

#include <stdint.h>
#include <immintrin.h>

/* Software prefetch distance, in floats (1 KiB): measured on this kind of VM, the hardware
 * prefetcher alone leaves the gemv's speed at the mercy of the compiler's instruction order
 * (14.4 against 16.0 GB/s for the same loop built two ways); prefetching 1 KiB ahead in each
 * stream gives 16.6 either way. One row ahead (576 floats at SmolLM2's width) was slower. */
#define PREFETCH_AHEAD 256

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

typedef void (*GemvFn)(const float *W, const float *x, float *y, int N, int K);

typedef float (*DotFn)(const float *a, const float *b, int n);
typedef void (*AxpyFn)(float *y, float a, const float *x, int n);

typedef void (*GemvQFn)(const Mat *m, const float *x, const float *xs, float *y, int N);

/* Y[r] = W X[r] for R activation rows (row r at X + r * ldx, its output at Y + r * ldy): each
 * weight row is read from memory once for all R rows (gemm.c), and each row's result is bitwise
 * what gemv gives for it alone, so a batched step changes no row's logits. */
typedef void (*GemmFn)(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
/* The same for quantized matrices: X padded to whole blocks (ldx apart), XS their block sums (ldxs apart). */
typedef void (*GemmQFn)(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R);

/* Set by pickKernel (AVX-512, AVX2 or scalar; MORRIS_NATIVE_ISA may force a lower one). */
extern GemvFn gemv;
extern DotFn dotf;
extern AxpyFn axpy;
extern GemvQFn gemvQ;
extern GemmFn gemm;
extern GemmQFn gemmQ;
extern const char *isaName;

void pickKernel(void);

/* Named so callers can tell which kernel pickKernel chose, and so matvec can fall back to the scalar
 * quantized kernel for blocks that are not whole groups of 16 codes. */
void gemvScalar(const float *W, const float *x, float *y, int N, int K);
__attribute__((target("avx512f"))) void gemvAvx512(const float *W, const float *x, float *y, int N, int K);
__attribute__((target("avx2,fma"))) void gemvAvx2(const float *W, const float *x, float *y, int N, int K);
void gemvQScalar(const Mat *m, const float *x, const float *xs, float *y, int N);
__attribute__((target("avx512f,avx512bw"))) void gemvQAvx512(const Mat *m, const float *x, const float *xs, float *y, int N);
__attribute__((target("avx2,fma"))) float hsum256(__m256 v);
__attribute__((target("avx512f"))) float dotAvx512(const float *a, const float *b, int n);
__attribute__((target("avx2,fma"))) float dotAvx2(const float *a, const float *b, int n);
void gemmScalar(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
__attribute__((target("avx512f"))) void gemmAvx512(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
__attribute__((target("avx2,fma"))) void gemmAvx2(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
void gemmQScalar(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R);
__attribute__((target("avx512f,avx512bw"))) void gemmQAvx512(const Mat *m, const float *X, int ldx, const float *XS, int ldxs, float *Y, int ldy, int N, int R);

#endif
