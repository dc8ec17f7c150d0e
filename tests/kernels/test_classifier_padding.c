/* test_classifier_padding — the CPU loss op on a padded vocabulary (row stride Vp > V), against
 * softmax cross-entropy computed here from its definition in long double over the V real
 * columns only. The padding columns hold 30.0, which would dominate the softmax if the op
 * counted them: the loss must not see them, their gradient must be exactly 0, the bias
 * gradient must be the column sums of the real gradient, and with dscale = 0 the padding is
 * left as it was. */
#include "kernels/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 5
#define V 200
#define VP 256

static int fails;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL: " __VA_ARGS__);                                                          \
            printf("\n");                                                                          \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

int main(void) {
    const struct ops *ops = ops_cpu(OPS_FP32);
    static float logits[N * VP], keep[N * VP], bias[V], dbias[V];
    float losses[N];
    int32_t targets[N] = {0, 17, -1, V - 1, 123};
    uint32_t s = 12345u;
    for (int i = 0; i < N * VP; i++) {
        s = s * 1664525u + 1013904223u;
        logits[i] = i % VP >= V ? 30.0f : (float)((s >> 8) % 2001) / 250.0f - 4.0f;
    }
    for (int i = 0; i < V; i++)
        bias[i] = (float)(i % 7) * 0.1f - 0.3f;

    /* loss only: the padding is left untouched */
    for (int i = 0; i < N * VP; i++)
        keep[i] = logits[i];
    ops->classifier(losses, logits, NULL, NULL, targets, N, V, VP, 0.0f);
    int untouched = 1;
    for (int i = 0; i < N * VP; i++)
        untouched &= logits[i] == keep[i];
    CHECK(untouched, "dscale = 0 changed the logits");

    /* training form: bias added, gradient in place, bias gradient summed */
    const float dscale = 0.25f;
    ops->classifier(losses, logits, bias, dbias, targets, N, V, VP, dscale);
    long double want_db[V] = {0};
    double worst = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = keep + (size_t)n * VP, *g = logits + (size_t)n * VP;
        int pad_zero = 1;
        for (int i = V; i < VP; i++)
            pad_zero &= g[i] == 0.0f;
        CHECK(pad_zero, "row %d: padding gradient not 0", n);
        if (targets[n] < 0) {
            CHECK(losses[n] == 0.0f, "row %d: ignored target gives loss %g", n, losses[n]);
            continue;
        }
        long double mx = -INFINITY, sum = 0.0L;
        for (int i = 0; i < V; i++)
            mx = fmaxl(mx, (long double)x[i] + bias[i]);
        for (int i = 0; i < V; i++)
            sum += expl((long double)x[i] + bias[i] - mx);
        long double loss = logl(sum) + mx - ((long double)x[targets[n]] + bias[targets[n]]);
        CHECK(fabsl(losses[n] - loss) <= 1e-5L * fabsl(loss), "row %d: loss %g, want %Lg", n,
              losses[n], loss);
        for (int i = 0; i < V; i++) {
            long double p = expl((long double)x[i] + bias[i] - mx) / sum;
            long double want = dscale * (p - (i == targets[n] ? 1.0L : 0.0L));
            worst = fmax(worst, (double)fabsl(g[i] - want));
            want_db[i] += want;
        }
    }
    CHECK(worst <= 1e-6, "gradient differs by %g", worst);
    double worst_db = 0.0;
    for (int i = 0; i < V; i++)
        worst_db = fmax(worst_db, (double)fabsl(dbias[i] - want_db[i]));
    CHECK(worst_db <= 1e-6, "bias gradient differs by %g", worst_db);
    printf("N=%d V=%d Vp=%d: losses %.6g %.6g %.6g %.6g, worst |dlogits| error %.3g, "
           "|dbias| error %.3g\n",
           N, V, VP, losses[0], losses[1], losses[3], losses[4], worst, worst_db);
    if (fails) return 1;
    printf("OK: the padding columns are invisible to the loss op\n");
    return 0;
}
