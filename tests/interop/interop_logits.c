/* interop_logits — xlmc's logits for an xlmc checkpoint on a batch file, the way `xlmc forward`
 * computes them (model_forward, fp32, CPU, no dropout).
 *
 * A checkpoint whose config has no clm objective (an imported masked LM) runs bidirectionally.
 * usage: interop_logits CKPT BATCH.h5 [OUT.h5]
 *   BATCH.h5: input_ids, langs, attention_mask (B,T) int32 (right padded) and, optionally,
 *   logits (B,T,V): the reference (from transformers); then every real position is compared
 *   and the run fails when max |xlmc - ref| / max |ref| > 1e-5.
 *   OUT.h5 receives xlmc's logits (B,T,V) for a comparison done elsewhere (Python). */
#include "core/checkpoint.h"
#include "core/h5io.h"
#include "core/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: interop_logits CKPT BATCH.h5 [OUT.h5]\n");
        return 2;
    }
    struct xlmc_config cfg;
    struct model m;
    if (ckpt_read_config(argv[1], &cfg, NULL) || model_create(&m, &cfg, ops_cpu(OPS_FP32)))
        return 1;
    if (ckpt_load(argv[1], &m, NULL, NULL)) return 1;
    hid_t f = h5io_open_read(argv[2]);
    if (f < 0) return 1;
    int32_t *ids, *langs, *mask;
    int nd;
    long long d[H5IO_MAX_DIMS];
    if (h5io_read_i32(f, "input_ids", &ids, &nd, d) ||
        h5io_read_i32(f, "langs", &langs, NULL, NULL) ||
        h5io_read_i32(f, "attention_mask", &mask, NULL, NULL))
        return 1;
    int B = (int)d[0], T = (int)d[1], V = cfg.model.vocab_size;
    int32_t *lengths = calloc((size_t)B, sizeof *lengths);
    for (int i = 0; i < B * T; i++)
        lengths[i / T] += mask[i];
    float *ref = NULL;
    if (h5io_exists(f, "logits") && h5io_read_f32(f, "logits", &ref, &nd, d)) return 1;
    h5io_close(f);
    if (ref && (nd != 3 || d[0] != B || d[1] != T || d[2] != V)) {
        fprintf(stderr, "FAIL: reference logits are not (%d,%d,%d)\n", B, T, V);
        return 1;
    }
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    /* a masked LM (no clm objective) runs bidirectionally, as transformers' causal: false */
    struct batch b = {B, T, ids, langs, lengths, NULL, 0, NULL, !config_has_clm(&cfg)};
    long count;
    model_forward(&m, &b, 0, 0, 0, logits, &count);
    int rc = 0;
    if (ref) {
        double maxdiff = 0, maxref = 0;
        for (int r = 0; r < B; r++)
            for (int t = 0; t < lengths[r]; t++) /* padded positions are not defined */
                for (int v = 0; v < V; v++) {
                    size_t i = ((size_t)r * T + t) * V + v;
                    maxdiff = fmax(maxdiff, fabs((double)logits[i] - ref[i]));
                    maxref = fmax(maxref, fabs((double)ref[i]));
                }
        double rel = maxdiff / maxref;
        printf("%s: max |xlmc - reference| = %.3g, max |reference| = %.3g, relative %.3g\n",
               argv[2], maxdiff, maxref, rel);
        if (!(rel <= 1e-5)) {
            printf("FAIL: logits differ by more than 1e-5 relative\n");
            rc = 1;
        }
    }
    if (argc == 4) {
        hid_t o = h5io_create(argv[3]);
        long long od[3] = {B, T, V};
        if (o < 0 || h5io_write_f32(o, "logits", logits, 3, od) || h5io_close(o)) rc = 1;
    }
    free(ids);
    free(langs);
    free(mask);
    free(lengths);
    free(ref);
    free(logits);
    model_destroy(&m);
    return rc;
}
