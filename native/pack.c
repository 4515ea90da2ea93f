/*
 * Packing the weights a step streams into one region, in read order, on 2 MiB pages (why and how:
 * the comment on packWeights). Runs once, at the end of createDecoder (load.c).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "pack.h"
#include "sysmem.h"

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
void packWeights(Decoder *d, const int *outF, const int *inF, int tied) {
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
