/* classifier.c — softmax cross-entropy over the vocabulary, fused with its gradient. */
#include "kernels/cpu/cpu.h"

#include <float.h>

/* losses (N) = -log softmax(logits)[t] (0 where t < 0); logits (N,V). If dscale != 0 the
 * logits become dscale * (softmax - onehot), 0 on ignored rows. The log-sum-exp is summed in
 * double: with V = 64k an fp32 sum would lose ~1e-6 relative in the loss. */
CPU_HOT void cpu_classifier(int h, float *losses, void *logits_, const int32_t *targets, int N,
                            int V, float dscale) {
    float *logits = logits_;
#pragma omp parallel for schedule(static) if ((long)N * V > CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *l = logits + (size_t)n * V;
        int t = targets[n];
        if (t < 0) {
            losses[n] = 0.0f;
            if (dscale != 0.0f) memset(l, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = row_max(l, V);
        float lt = l[t];
        double sum = 0.0;
        if (dscale == 0.0f) {
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < V; i++)
                sum += (double)fast_expf(l[i] - mx);
        } else {
            /* keep the exponentials: the gradient is one scaling pass, no second exp */
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < V; i++) {
                l[i] = fast_expf(l[i] - mx);
                sum += (double)l[i];
            }
        }
        losses[n] = (float)(log(sum) + (double)mx - (double)lt);
        if (dscale != 0.0f) {
            float s = (float)((double)dscale / sum), et = l[t];
            if (h) {
                for (int i = 0; i < V; i++)
                    l[i] = half_round(l[i] * s);
            } else {
#pragma omp simd
                for (int i = 0; i < V; i++)
                    l[i] *= s;
            }
            l[t] = st(dscale * (float)((double)et / sum - 1.0), h);
        }
    }
}
