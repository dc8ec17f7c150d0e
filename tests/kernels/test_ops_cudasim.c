/* test_ops_cudasim — the op table (train/selftest.c) with the CUDA backend run in cudasim
 * against the CPU backend, fp32 and fp16 storage, under the thread schedule named by argv[1]
 * (ascending or shuffle). Inputs are fresh each run (seed printed; XLMC_TEST_SEED repeats one). */
#include "kernels/ops.h"
#include "train/selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);
void cudasim_set_schedule(int schedule, unsigned long long seed);

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "ascending") && strcmp(argv[1], "shuffle"))) {
        fprintf(stderr, "usage: %s ascending|shuffle\n", argv[0]);
        return 2;
    }
    const char *env = getenv("XLMC_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    int shuffle = !strcmp(argv[1], "shuffle");
    cudasim_set_schedule(shuffle, seed);
    printf("cudasim schedule %s, seed %llu (XLMC_TEST_SEED=%llu repeats this run)\n", argv[1],
           (unsigned long long)seed, (unsigned long long)seed);
    int failures = 0;
    for (int p = 0; p < 2; p++) {
        enum ops_precision prec = p ? OPS_FP16 : OPS_FP32;
        char why[256] = "";
        const struct ops *dev = cudasim_ops_cuda(prec, 0, why, sizeof why);
        if (!dev) {
            fprintf(stderr, "cudasim backend did not open: %s\n", why);
            return 1;
        }
        printf("== %s storage\n", p ? "fp16" : "fp32");
        struct selftest_opts opts = {seed + (uint64_t)p, 1, 1, stdout};
        int f = selftest_optable(ops_cpu(prec), dev, &opts);
        printf("== %s: %d failed checks\n", p ? "fp16" : "fp32", f);
        failures += f;
    }
    printf(failures ? "FAILED\n" : "PASSED\n");
    return failures ? 1 : 0;
}
