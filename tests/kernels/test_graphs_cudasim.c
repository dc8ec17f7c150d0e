/* test_graphs_cudasim — fp16 training steps whose micro-batches replay recorded CUDA Graphs
 * against the same steps launched one by one, the CUDA backend run in cudasim (whose graphs
 * record the work and run it at cudaGraphLaunch): bit-identical losses and weights, a moved
 * buffer refused and recorded anew (train/selftest_graphs.c, shared with `xlmc selftest`). */
#include "kernels/ops.h"
#include "train/selftest.h"

#include <stdio.h>

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

int main(void) {
    char why[256] = "";
    const struct ops *sim = cudasim_ops_cuda(OPS_FP16, 0, why, sizeof why);
    if (!sim) {
        fprintf(stderr, "cudasim backend did not open: %s\n", why);
        return 1;
    }
    if (!sim->graph_begin) {
        fprintf(stderr, "the CUDA backend has no graph entries\n");
        return 1;
    }
    int failures = selftest_graphs(sim, stdout);
    printf(failures ? "FAILED (%d checks)\n" : "PASSED\n", failures);
    return failures ? 1 : 0;
}
