/* backend.c — what ops_cuda() answers in a build without the CUDA backend. */
#include "kernels/ops.h"

#include <stdio.h>

#ifndef XLMC_HAVE_CUDA
const struct ops *ops_cuda(enum ops_precision precision, int device, char *why, size_t why_len) {
    if (why && why_len)
        snprintf(why, why_len,
                 "this xlmc was built without the CUDA backend "
                 "(no CUDA toolkit found, or -DXLMC_CUDA=OFF)");
    return NULL;
}
#endif
