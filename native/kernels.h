/*
 * The decode step's arithmetic, one kernel per instruction set (kernels.c): the fp32 gemv, the
 * int8/int4 gemv over MatMulNBits codes, and attention's dot and weighted sum. pickKernel chooses once at load
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

/* The activation vector of one quantized matvec, itself quantized (kernels-quant.c,
 * quantizeActivations): int8 codes per QX_BLOCK elements with one float scale each, laid out in
 * the order the weight codes stream. A row is read in chunks of 64 code bytes (64 int8 codes, or
 * 128 int4 codes); chunk c's 16 int32 lanes each cover 4 (int8) or 8 (int4) consecutive elements.
 *   q:    per chunk, int8: its 64 codes in order; int4: the 64 even elements, then the 64 odd ones
 *         (the low and high nibbles of the chunk's bytes), zero past K.
 *   lane: per chunk, 16 floats: the activation scale of each lane's elements.
 *   nsum: per chunk, 16 int32: minus the sum of each lane's activation codes, for the zero point:
 *         a lane's dot is wscale * ascale * (sum code_j * q_j + zero * nsum). */
typedef struct {
  const int8_t *q;
  const float *lane;
  const int32_t *nsum;
  /* int4 with blocks of QX_BLOCK only (else NULL): per group of 4 chunks (16 blocks), each block's
   * nsum total and activation scale, in the AVX-512 kernel's lane order (groupAcc). */
  const int32_t *gsum;
  const float *gscale;
} QuantX;

typedef void (*GemvFn)(const float *W, const float *x, float *y, int N, int K);

typedef float (*DotFn)(const float *a, const float *b, int n);
/* ctx[r] += sum_j P[r][j] V[j] for r < rows (row r of ctx at ctx + r * ldc, of P at P + r * ldp; V is
 * n rows of hd): attention's weighted sum of values, each element summed in position order. */
typedef void (*WsumFn)(float *ctx, int ldc, const float *P, int ldp, const float *V, int n, int rows, int hd);

typedef void (*GemvQFn)(const Mat *m, const QuantX *x, float *y, int N);

/* Y[r] = M X[r] for R activation rows quantized against M (x[r], from quantizeActivations), row r's
 * output at Y + r * ldy: each weight row's codes are read once for all R rows (gemm-q.c), and each
 * row's result is bitwise what gemvQ gives for it alone. */
typedef void (*GemmQFn)(const Mat *m, const QuantX *x, int R, float *Y, int ldy, int N);

/* Y[r] = W X[r] for R activation rows (row r at X + r * ldx, its output at Y + r * ldy): each
 * weight row is read from memory once for all R rows (gemm.c), and each row's result is bitwise
 * what gemv gives for it alone, so a batched step changes no row's logits. */
typedef void (*GemmFn)(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);

/* Set by pickKernel (AVX-512, AVX2 or scalar; MORRIS_NATIVE_ISA may force a lower one). */
extern GemvFn gemv;
extern DotFn dotf;
extern WsumFn wsum;
extern GemvQFn gemvQ;
extern GemmFn gemm;
/* NULL where gemvQ is not the AVX-512 VNNI kernel: the batched step then runs rows through matvec. */
extern GemmQFn gemmQ;
extern const char *isaName;

void pickKernel(void);

/* Named so callers can tell which kernel pickKernel chose, and so matvec can fall back to the scalar
 * quantized kernel for block layouts the vector one does not take (quantVectorOk). */
void gemvScalar(const float *W, const float *x, float *y, int N, int K);
__attribute__((target("avx512f"))) void gemvAvx512(const float *W, const float *x, float *y, int N, int K);
__attribute__((target("avx2,fma"))) void gemvAvx2(const float *W, const float *x, float *y, int N, int K);

/* kernels-quant.c: activations quantized per QX_BLOCK elements, then integer dot products.
 * 32, as llama.cpp's Q8_0: it equals the int4 block (quant.ts), which the int4 kernel's 16-block
 * groups need (one activation scale per weight block), and on stories260K it keeps int8 at top-1
 * 1.000 / perplexity x0.9993 against fp32 (fp32 activations: 0.993 / x1.0006) and int4 at 0.873 /
 * x1.139 (fp32 activations: 0.873 / x1.138; ONNX Runtime's int4: 0.88 / x1.141). */
#define QX_BLOCK 32
/* 64-byte code chunks a row of nBlocks blocks holds: quantizeActivations writes 64 (int8) or
 * 128 (int4) codes, 16 lane scales and 16 lane sums per chunk. */
int quantChunks(int bits, int block, int nBlocks);
void quantizeActivations(const Mat *m, const float *x, int K, int8_t *q, float *lane, int32_t *nsum, int32_t *gsum, float *gscale);
void pickQuantizer(int avx512);
int quantVectorOk(const Mat *m);
void gemvQScalar(const Mat *m, const QuantX *x, float *y, int N);
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void gemvQAvx512(const Mat *m, const QuantX *x, float *y, int N);
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void gemmQAvx512(const Mat *m, const QuantX *x, int R, float *Y, int ldy, int N);
__attribute__((target("avx2,fma"))) float hsum256(__m256 v);
__attribute__((target("avx512f"))) float dotAvx512(const float *a, const float *b, int n);
__attribute__((target("avx2,fma"))) float dotAvx2(const float *a, const float *b, int n);
void gemmScalar(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
__attribute__((target("avx512f"))) void gemmAvx512(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);
__attribute__((target("avx2,fma"))) void gemmAvx2(const float *W, const float *X, int ldx, float *Y, int ldy, int N, int K, int R);


#endif
