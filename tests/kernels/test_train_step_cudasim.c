/* test_train_step_cudasim — one full fp16 training step (forward, backward, unscale, Adam,
 * dropout on) of a tiny model with the CUDA backend run in cudasim, against the CPU backend's
 * fp16 mode; then an injected overflow that must skip the step exactly as on the CPU.
 * The checks and their documented tolerances are in train/selftest_step.c (shared with
 * `xlmc selftest` on a real GPU).
 * With the argument `graphs`: fp16 steps whose micro-batches replay recorded CUDA Graphs
 * against the same steps launched one by one (cudasim's graphs record the work and run it at
 * cudaGraphLaunch): bit-identical losses and weights, a moved buffer refused and recorded anew
 * (train/selftest_graphs.c). */
#include "kernels/ops.h"
#include "train/selftest.h"

#include <stdio.h>
#include <string.h>

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

int main(int argc, char **argv) {
    char why[256] = "";
    int graphs = argc > 1 && !strcmp(argv[1], "graphs");
    const struct ops *sim = cudasim_ops_cuda(OPS_FP16, 0, why, sizeof why);
    if (!sim || (graphs && !sim->graph_begin)) {
        fprintf(stderr, "cudasim backend did not open%s: %s\n", sim ? " with graphs" : "", why);
        return 1;
    }
    int failures =
        graphs ? selftest_graphs(sim, stdout) : selftest_train_step(ops_cpu(OPS_FP16), sim, stdout);
    printf(failures ? "FAILED (%d checks)\n" : "PASSED\n", failures);
    return failures ? 1 : 0;
}
