/* test_half_round_matches_numpy — the CPU backend's fp16 precision stores exactly what IEEE
 * binary16 stores: ops_cpu(OPS_FP16)->storage_from_f32 (the rounding every fp16 storage write
 * uses) against numpy's float32 -> float16 -> float32 on edge cases and random values
 * (half_reference.bin, made by make_half_reference.py). Signs of zeros are compared too.
 * usage: test_half_round_matches_numpy half_reference.bin */
#include "kernels/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    FILE *f = argc == 2 ? fopen(argv[1], "rb") : NULL;
    if (!f) {
        fprintf(stderr, "usage: %s half_reference.bin (cannot open it)\n", argv[0]);
        return 2;
    }
    float pair[2], *x = NULL, *want = NULL;
    size_t n = 0;
    while (fread(pair, sizeof(float), 2, f) == 2) {
        x = realloc(x, (n + 1) * sizeof(float));
        want = realloc(want, (n + 1) * sizeof(float));
        x[n] = pair[0];
        want[n++] = pair[1];
    }
    fclose(f);
    if (n < 1000) {
        fprintf(stderr, "FAIL: only %zu pairs in %s\n", n, argv[1]);
        return 1;
    }
    const struct ops *ops = ops_cpu(OPS_FP16);
    float *got = ops->alloc(n * sizeof(float));
    ops->storage_from_f32(got, x, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            unsigned bits;
            memcpy(&bits, &x[i], sizeof bits);
            if (bad++ < 10)
                printf("FAIL: %.9g (0x%08x) -> %.9g, numpy %.9g\n", x[i], bits, got[i], want[i]);
        }
    }
    /* fp32 precision must not round */
    float *same = ops->alloc(n * sizeof(float));
    ops_cpu(OPS_FP32)->storage_from_f32(same, x, n);
    if (memcmp(same, x, n * sizeof(float)) != 0) {
        printf("FAIL: fp32 storage changed a value\n");
        bad++;
    }
    printf("%zu values, %d mismatches\n", n, bad);
    ops->free(got);
    ops->free(same);
    free(x);
    free(want);
    return bad ? 1 : 0;
}
