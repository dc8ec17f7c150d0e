/* test_forward_errors — `xlmc forward` refuses bad inputs with a message naming the file and
 * the cause, exits non-zero and leaves no output file: a missing tensor, a tensor of the wrong
 * shape, a pred_layer.proj.weight that is not the tied embedding, a left-padded
 * attention_mask, a token id outside the vocabulary. The bad files are edited copies of the
 * transformers fixture (tests/ref/model).
 * usage: test_forward_errors XLMC_BIN FIXTURE_DIR WORK_DIR */
#include "core/h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Copy every root dataset of src to dst (float or int by `is_int`), except that `drop` is left
 * out and `edit` (if non-NULL) may change a dataset's data or shape before it is written. */
typedef void (*edit_fn)(const char *name, void *data, int *nd, long long *d);
static int copy_file(const char *src, const char *dst, int is_int, const char *drop, edit_fn edit) {
    hid_t in = h5io_open_read(src), out = h5io_create(dst);
    if (in < 0 || out < 0) return -1;
    struct names nm = {.n = 0};
    if (H5Literate(in, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, collect, &nm) < 0) return -1;
    for (int i = 0; i < nm.n; i++) {
        if (drop && !strcmp(nm.list[i], drop)) continue;
        void *data;
        int nd;
        long long d[H5IO_MAX_DIMS];
        int rc = is_int ? h5io_read_i32(in, nm.list[i], (int32_t **)&data, &nd, d)
                        : h5io_read_f32(in, nm.list[i], (float **)&data, &nd, d);
        if (rc) return -1;
        if (edit) edit(nm.list[i], data, &nd, d);
        rc = is_int ? h5io_write_i32(out, nm.list[i], data, nd, d)
                    : h5io_write_f32(out, nm.list[i], data, nd, d);
        free(data);
        if (rc) return -1;
    }
    h5io_close(in);
    return h5io_close(out);
}

static void shrink_q(const char *name, void *data, int *nd, long long *d) {
    (void)data;
    if (!strcmp(name, "transformer.attentions.0.q_lin.weight") && *nd == 2) d[1] -= 1;
}

static void left_pad(const char *name, void *data, int *nd, long long *d) {
    int32_t *x = data;
    (void)nd;
    if (!strcmp(name, "attention_mask")) { /* row 1: 0 first, then 1 */
        x[d[1]] = 0;
        x[d[1] + 1] = 1;
    }
}

static void big_id(const char *name, void *data, int *nd, long long *d) {
    (void)nd;
    (void)d;
    if (!strcmp(name, "input_ids")) ((int32_t *)data)[3] = 100000;
}

static int fails;

/* run forward on (weights, batch); expect failure with every pattern in stderr */
static void expect_error(const char *what, const char *bin, const char *ini, const char *w,
                         const char *b, const char *work, const char *p1, const char *p2) {
    char out[1024], err[1024], cmd[8192];
    snprintf(out, sizeof out, "%s/ferr_out.h5", work);
    snprintf(err, sizeof err, "%s/ferr_%s.err", work, what);
    remove(out);
    snprintf(cmd, sizeof cmd,
             "'%s' forward --config '%s' --weights '%s' --batch '%s' --out '%s' 2> '%s'", bin, ini,
             w, b, out, err);
    int st = system(cmd);
    char msg[2048] = "";
    FILE *f = fopen(err, "r");
    size_t n = f ? fread(msg, 1, sizeof msg - 1, f) : 0;
    msg[n] = '\0';
    if (f) fclose(f);
    remove(err);
    int ok = st != 0 && strstr(msg, p1) && strstr(msg, p2) && access(out, F_OK) != 0;
    printf("%s %s: status %d: %s", ok ? "ok  " : "FAIL", what, st, n ? msg : "(no message)\n");
    fails += !ok;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s XLMC_BIN FIXTURE_DIR WORK_DIR\n", argv[0]);
        return 2;
    }
    const char *bin = argv[1], *work = argv[3];
    char w[1024], b[1024], ini[1024], bw[1024], bb[1024];
    snprintf(w, sizeof w, "%s/weights.h5", argv[2]);
    snprintf(b, sizeof b, "%s/batch.h5", argv[2]);
    snprintf(ini, sizeof ini, "%s/ferr_model.ini", work);
    snprintf(bw, sizeof bw, "%s/ferr_weights.h5", work);
    snprintf(bb, sizeof bb, "%s/ferr_batch.h5", work);
    hid_t wf = h5io_open_read(w);
    char *text = NULL;
    if (wf < 0 || h5io_read_attr_str(wf, "config_ini", &text)) return 1;
    h5io_close(wf);
    FILE *f = fopen(ini, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) return 1;
    free(text);

    if (copy_file(w, bw, 0, "transformer.ffns.1.lin2.bias", NULL)) return 1;
    expect_error("missing_tensor", bin, ini, bw, b, work, bw,
                 "missing tensor 'transformer.ffns.1.lin2.bias'");
    if (copy_file(w, bw, 0, NULL, shrink_q)) return 1;
    expect_error("wrong_shape", bin, ini, bw, b, work, "transformer.attentions.0.q_lin.weight",
                 "shape 64 x 63, expected 64 x 64");
    /* an untied output projection: a copy of the embeddings with one element changed */
    if (copy_file(w, bw, 0, NULL, NULL)) return 1;
    {
        hid_t o = H5Fopen(bw, H5F_ACC_RDWR, H5P_DEFAULT);
        float *e;
        int nd;
        long long d[H5IO_MAX_DIMS];
        if (o < 0 || h5io_read_f32(o, "transformer.embeddings.weight", &e, &nd, d)) return 1;
        e[5] += 1.0f;
        if (h5io_write_f32(o, "pred_layer.proj.weight", e, nd, d) || h5io_close(o)) return 1;
        free(e);
    }
    expect_error("untied", bin, ini, bw, b, work, bw, "pred_layer.proj.weight");
    if (copy_file(b, bb, 1, NULL, left_pad)) return 1;
    expect_error("left_padding", bin, ini, w, bb, work, bb, "right padded");
    if (copy_file(b, bb, 1, NULL, big_id)) return 1;
    expect_error("id_range", bin, ini, w, bb, work, bb, "outside the vocabulary");
    /* and the untouched copies work, so the failures above come from the edits */
    if (copy_file(w, bw, 0, NULL, NULL) || copy_file(b, bb, 1, NULL, NULL)) return 1;
    char cmd[8192], out[1024];
    snprintf(out, sizeof out, "%s/ferr_out.h5", work);
    snprintf(cmd, sizeof cmd, "'%s' forward --config '%s' --weights '%s' --batch '%s' --out '%s'",
             bin, ini, bw, bb, out);
    int st = system(cmd);
    printf("%s unedited copies: status %d\n", st == 0 && access(out, F_OK) == 0 ? "ok  " : "FAIL",
           st);
    fails += !(st == 0 && access(out, F_OK) == 0);
    remove(out);
    remove(bw);
    remove(bb);
    remove(ini);
    return fails ? 1 : 0;
}
