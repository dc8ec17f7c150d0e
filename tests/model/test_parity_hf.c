/* test_parity_hf — `xlmc forward --grads` on the transformers fixture (tests/ref/model, made by
 * make_model_reference.py with XLMWithLMHeadModel, causal=True, in float64) matches it:
 *   logits  max|a-b| / max|b| <= 1e-5
 *   loss    |a-b| / |b|        <= 1e-6
 *   grads   per tensor max|a-b| / max(max|b|, floor) <= 1e-4, where floor = 1e-3 * the largest
 *           |gradient| of the whole model. The floor is there because some gradients are zero
 *           in exact arithmetic (k_lin.bias: softmax is invariant to a per-row shift of the
 *           scores), so both sides hold only rounding noise (~1e-9) with no scale of their own.
 * usage: test_parity_hf XLMC_BIN FIXTURE_DIR WORK_DIR */
#include "core/h5io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static size_t numel(int nd, const long long *d) {
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)d[i];
    return n;
}

/* names of the datasets in group "grads" of the expected file */
struct names {
    char list[64][128];
    int n;
};

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    struct names *nm = data;
    (void)g;
    (void)info;
    if (nm->n < 64) snprintf(nm->list[nm->n++], 128, "%s", name);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s XLMC_BIN FIXTURE_DIR WORK_DIR\n", argv[0]);
        return 2;
    }
    char weights[1024], batch[1024], expected[1024], ini[1024], out[1024], cmd[8192];
    snprintf(weights, sizeof weights, "%s/weights.h5", argv[2]);
    snprintf(batch, sizeof batch, "%s/batch.h5", argv[2]);
    snprintf(expected, sizeof expected, "%s/expected.h5", argv[2]);
    snprintf(ini, sizeof ini, "%s/parity_model.ini", argv[3]);
    snprintf(out, sizeof out, "%s/parity_out.h5", argv[3]);

    hid_t wf = h5io_open_read(weights);
    char *text = NULL;
    if (wf < 0 || h5io_read_attr_str(wf, "config_ini", &text)) return 1;
    h5io_close(wf);
    FILE *f = fopen(ini, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", ini);
        return 1;
    }
    free(text);
    snprintf(cmd, sizeof cmd,
             "'%s' forward --config '%s' --weights '%s' --batch '%s' --out '%s' --grads", argv[1],
             ini, weights, batch, out);
    int st = system(cmd);
    if (st != 0) {
        fprintf(stderr, "FAIL: %s exited with status %d\n", cmd, st);
        return 1;
    }

    hid_t of = h5io_open_read(out), ef = h5io_open_read(expected);
    if (of < 0 || ef < 0) return 1;
    int fails = 0, nda, ndb;
    long long da[H5IO_MAX_DIMS], db[H5IO_MAX_DIMS];
    float *a, *b;
    if (h5io_read_f32(of, "logits", &a, &nda, da) || h5io_read_f32(ef, "logits", &b, &ndb, db))
        return 1;
    if (numel(nda, da) != numel(ndb, db)) {
        fprintf(stderr, "FAIL: logits have %zu elements, expected %zu\n", numel(nda, da),
                numel(ndb, db));
        return 1;
    }
    double rel = max_diff(a, b, numel(ndb, db)) / max_abs(b, numel(ndb, db));
    printf("logits: max|a-b|/max|b| = %.3g (limit 1e-5)\n", rel);
    fails += !(rel <= 1e-5);
    free(a);
    free(b);
    if (h5io_read_f32(of, "loss", &a, NULL, NULL) || h5io_read_f32(ef, "loss", &b, NULL, NULL))
        return 1;
    rel = fabs((double)a[0] - (double)b[0]) / fabs((double)b[0]);
    printf("loss: %.8g vs %.8g, relative error %.3g (limit 1e-6)\n", a[0], b[0], rel);
    fails += !(rel <= 1e-6);
    free(a);
    free(b);

    struct names nm = {.n = 0};
    hid_t g = H5Gopen2(ef, "grads", H5P_DEFAULT);
    if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, collect, &nm) < 0) {
        fprintf(stderr, "FAIL: %s has no readable group grads\n", expected);
        return 1;
    }
    H5Gclose(g);
    double floor_scale = 0.0, worst = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < nm.n; i++) {
            char name[160];
            snprintf(name, sizeof name, "grads/%s", nm.list[i]);
            if (h5io_read_f32(ef, name, &b, &ndb, db)) return 1;
            size_t n = numel(ndb, db);
            if (pass == 0) {
                floor_scale = fmax(floor_scale, max_abs(b, n));
                free(b);
                continue;
            }
            if (h5io_read_f32(of, name, &a, &nda, da)) return 1;
            if (numel(nda, da) != n) {
                fprintf(stderr, "FAIL: %s has %zu elements, expected %zu\n", name, numel(nda, da),
                        n);
                return 1;
            }
            double err = max_diff(a, b, n) / fmax(max_abs(b, n), 1e-3 * floor_scale);
            worst = fmax(worst, err);
            if (!(err <= 1e-4)) {
                printf("FAIL: gradient %s relative error %.3g (limit 1e-4)\n", nm.list[i], err);
                fails++;
            }
            free(a);
            free(b);
        }
    }
    printf("gradients: %d tensors, worst relative error %.3g (limit 1e-4)\n", nm.n, worst);
    if (nm.n < 20) {
        printf("FAIL: only %d gradient tensors in %s\n", nm.n, expected);
        fails++;
    }
    h5io_close(of);
    h5io_close(ef);
    remove(out);
    remove(ini);
    return fails ? 1 : 0;
}
