/* cmd_selftest.c — `xlmc selftest`: runs the op table (train/selftest.c) of a compute backend
 * against the CPU reference, in fp32 and fp16 storage, and one fp16 training step of a tiny
 * model (train/selftest_step.c). Without a usable GPU, `--device cuda`
 * says why and exits 77 (the "skipped" status of ctest and automake). */
#include "train/commands.h"

#include "train/selftest.h"
#include "core/util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SELFTEST_SKIPPED 77

static void selftest_usage(FILE *f) {
    fprintf(f, "usage: xlmc selftest [--device cuda|cpu] [--gpu N] [--precision fp32|fp16|both]\n"
               "                     [--seed N] [--small] [--verbose]\n\n"
               "Runs every op of the backend against the CPU reference on fresh random inputs\n"
               "(odd shapes, T not a multiple of 32, a 64699-word classifier unless --small),\n"
               "with guard bytes around outputs and NaN-poisoned outputs. Exit status: 0 all\n"
               "ops within tolerance, 1 a failure, 2 a usage error, 77 no GPU (skipped).\n");
}

int cmd_selftest(int argc, char **argv) {
    const char *device = "cuda", *precision = "both";
    int gpu = 0, verbose = 0, small = 0;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            selftest_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            verbose = 1;
        } else if (!strcmp(a, "--small")) {
            small = 1;
        } else if (val && !strcmp(a, "--device")) {
            device = argv[++i];
        } else if (val && !strcmp(a, "--precision")) {
            precision = argv[++i];
        } else if (val && !strcmp(a, "--gpu")) {
            if (xlmc_parse_int(argv[++i], 0, INT_MAX, &gpu)) {
                fprintf(stderr, "xlmc selftest: error: --gpu %s: not a device number\n", val);
                return 2;
            }
        } else if (val && !strcmp(a, "--seed")) {
            if (xlmc_parse_u64(argv[++i], &seed)) {
                fprintf(stderr, "xlmc selftest: error: --seed %s: not a whole number\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "xlmc selftest: error: unknown or incomplete option '%s'\n", a);
            selftest_usage(stderr);
            return 2;
        }
    }
    if (strcmp(device, "cuda") && strcmp(device, "cpu")) {
        fprintf(stderr, "xlmc selftest: error: --device '%s': expected cuda or cpu\n", device);
        return 2;
    }
    int want32 = !strcmp(precision, "fp32") || !strcmp(precision, "both");
    int want16 = !strcmp(precision, "fp16") || !strcmp(precision, "both");
    if (!want32 && !want16) {
        fprintf(stderr, "xlmc selftest: error: --precision '%s': expected fp32, fp16 or both\n",
                precision);
        return 2;
    }
    int failures = 0;
    for (int p = 0; p < 2; p++) {
        enum ops_precision prec = p ? OPS_FP16 : OPS_FP32;
        if (!(p ? want16 : want32)) continue;
        const struct ops *dev = ops_cpu(prec);
        if (!strcmp(device, "cuda")) {
            char why[256] = "";
            dev = ops_cuda(prec, gpu, why, sizeof why);
            if (!dev) {
                printf("xlmc selftest: skipped: %s\n", why);
                return SELFTEST_SKIPPED;
            }
        }
        printf("xlmc selftest: %s backend, %s storage, seed %llu\n", device, p ? "fp16" : "fp32",
               (unsigned long long)seed);
        fflush(stdout);
        struct selftest_opts opts = {seed, !small, verbose, stdout};
        int f = selftest_optable(ops_cpu(prec), dev, &opts);
        printf("xlmc selftest: %s %s: %s (%d failed checks)\n", device, p ? "fp16" : "fp32",
               f ? "FAILED" : "passed", f);
        failures += f;
        if (prec == OPS_FP16) {
            f = selftest_train_step(ops_cpu(prec), dev, stdout);
            printf("xlmc selftest: %s fp16 training step: %s\n", device, f ? "FAILED" : "passed");
            failures += f;
            f = selftest_graphs(dev, stdout);
            printf("xlmc selftest: %s fp16 steps from CUDA graphs: %s\n", device,
                   f ? "FAILED" : "passed");
            failures += f;
        }
    }
    return failures ? 1 : 0;
}
