/* Packing the weights a step streams into one huge-page region at load (pack.c). */
#ifndef MORRIS_PACK_H
#define MORRIS_PACK_H

#include "decoder.h"

void packWeights(Decoder *d, const int *outF, const int *inF, int tied);

#endif
