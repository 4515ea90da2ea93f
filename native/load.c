/*
 * createDecoder: turns the spec src/model/native-decode.ts builds (createNativeDecoder) into a
 * Decoder. Maps every safetensors file once, checks each tensor or quantized-matrix descriptor
 * against its file, widens fp16/bf16 once (as the ONNX path does), copies the LoRA pairs, then packs
 * the streamed weights (pack.c) and sizes the step's scratch buffers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "decoder.h"
#include "load.h"
#include "napi-helpers.h"
#include "pack.h"

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
  const int chunks = quantChunks(out->bits, out->block, out->nBlocks);
  if (chunks > d->chunkCap) d->chunkCap = chunks;
  return 1;
}

static void finalizeDecoder(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  freeDecoder((Decoder *)data);
}

static const char *MODULE_NAMES[MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

void moduleDims(const Decoder *d, int outF[MODULES], int inF[MODULES]) {
  const int H = d->hidden, qOut = d->heads * d->headDim, kvOut = d->kvHeads * d->headDim;
  const int o[MODULES] = {qOut, kvOut, kvOut, H, d->inter, d->inter, H}, i[MODULES] = {H, H, H, qOut, H, H, d->inter};
  memcpy(outF, o, sizeof o);
  memcpy(inF, i, sizeof i);
}

static float *copyIntoDecoder(napi_env env, void *ctx, napi_value v, size_t expect) { return copyF32Array(env, ctx, v, expect); }

/* One layer's LoRA pairs, { q_proj: { a: Float32Array [r, in], b: [out, r], r, scale }, … } (any
 * subset), copied through `copy`; the decoder spec and createAdapter share it. Returns the largest
 * rank (0 for none) or -1 with err set. */
int readLoras(napi_env env, napi_value lora, int l, const int *outF, const int *inF, Lora *dst, CopyFn copy, void *ctx, char *err, size_t errLen) {
  int maxR = 0;
  napi_valuetype t;
  if (napi_typeof(env, lora, &t) != napi_ok || t != napi_object) return 0;
  for (int k = 0; k < MODULES; k++) {
    bool has = false;
    napi_has_named_property(env, lora, MODULE_NAMES[k], &has);
    if (!has) continue;
    int r;
    double sc;
    napi_value m, a, b;
    napi_get_named_property(env, lora, MODULE_NAMES[k], &m);
    if (!getInt(env, m, "r", &r) || r <= 0 || !getDouble(env, m, "scale", &sc) || napi_get_named_property(env, m, "a", &a) != napi_ok ||
        napi_get_named_property(env, m, "b", &b) != napi_ok || !(dst[k].a = copy(env, ctx, a, (size_t)r * inF[k])) ||
        !(dst[k].b = copy(env, ctx, b, (size_t)outF[k] * r))) {
      snprintf(err, errLen, "layer %d %s LoRA needs r, scale, a [r, %d] and b [%d, r] as Float32Arrays", l, MODULE_NAMES[k], inF[k], outF[k]);
      return -1;
    }
    dst[k].r = r;
    dst[k].scale = (float)sc;
    if (r > maxR) maxR = r;
  }
  return maxR;
}

/* spec: { hidden, inter, layers, heads, kvHeads, headDim, vocab, window, eps, profile?: 1, invFreq: Float32Array,
 *         files: string[], embed, norm, head: desc, layer: [{ inNorm, postNorm, w: {q_proj: desc…}, bias: {…},
 *         lora: {q_proj: { a: Float32Array, b: Float32Array, r, scale }…} }] } */
napi_value createDecoder(napi_env env, napi_callback_info info) {
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
  if (!getInt(env, spec, "profile", &d->profile)) d->profile = 0; /* optional */
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
  const int H = d->hidden, hd = d->headDim, qOut = d->heads * hd;
  int outF[MODULES], inF[MODULES];
  moduleDims(d, outF, inF);

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
    napi_value lv, w, bias, lora;
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
    }
    const int r = readLoras(env, lora, l, outF, inF, L->lora, copyIntoDecoder, d, err, sizeof err);
    if (r < 0) {
      freeDecoder(d);
      THROW(env, "BAD_SPEC", err);
    }
    if (r > maxR) maxR = r;
  }
  bool tied = false;
  if (napi_get_named_property(env, spec, "tied", &v) == napi_ok) napi_get_value_bool(env, v, &tied);
  d->loraMaxR = maxR;
  packWeights(d, outF, inF, tied);
  int widest = H > qOut ? H : qOut;
  if (d->inter > widest) widest = d->inter;
  float **bufs[] = {&d->x, &d->h, &d->q, &d->k, &d->v, &d->ctx, &d->t1, &d->t2};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i] = trackOwned(d, sizeof(float) * widest);
  d->loraTmp = trackOwned(d, sizeof(float) * (maxR + widest));
  d->xq = trackOwned(d, (size_t)128 * d->chunkCap + 64); /* int4: 128 activations a chunk */
  d->xLane = trackOwned(d, sizeof(float) * 16 * ((size_t)d->chunkCap + 1));
  d->xNsum = trackOwned(d, sizeof(int32_t) * 16 * ((size_t)d->chunkCap + 1));
  d->xGsum = trackOwned(d, sizeof(int32_t) * 4 * ((size_t)d->chunkCap + 4));
  d->xGscale = trackOwned(d, sizeof(float) * 4 * ((size_t)d->chunkCap + 4));
  d->cosT = trackOwned(d, sizeof(float) * hd);
  d->sinT = trackOwned(d, sizeof(float) * hd);
  napi_value handle;
  if (napi_create_external(env, d, finalizeDecoder, NULL, &handle) != napi_ok) {
    freeDecoder(d);
    THROW(env, "NATIVE", "cannot create the decoder handle");
  }
  return handle;
}
