/* selftest_norm.c — the selftest's LayerNorm rows (see selftest.c): the forward and backward,
 * the backward's extras (struct ln_backward_extra) and the residual + LayerNorm forward. */
#include "train/selftest_pairs.h"

#include <stdlib.h>

const struct out_tol ST_LAYERNORM_TOL[] = {{"out", {1e-5, 1e-5}, {4e-3, 4e-3}},
                                           {"mean", {1e-6, 1e-5}, {1e-6, 1e-5}},
                                           {"rstd", {1e-6, 1e-5}, {1e-6, 1e-5}},
                                           {"dinp", {1e-5, 1e-4}, {1e-2, 1e-2}},
                                           {"dw", {1e-4, 1e-5}, {5e-2, 1e-2}},
                                           {"db", {1e-4, 1e-5}, {5e-2, 1e-2}},
                                           /* struct ln_backward_extra's outputs */
                                           {"dropped", {1e-5, 1e-4}, {1e-2, 1e-2}},
                                           {"dbias", {1e-4, 1e-5}, {5e-2, 1e-2}},
                                           {NULL}};

/* The extras of layernorm_backward, four ways: a branch's dropped gradient with the next
 * bias's sums (LN2 and LN1 of a layer in training), the sums alone (no dropout), the dropped
 * gradient alone, dout dropped on the way in (the embeddings). Every output against the CPU. */
static void check_layernorm_extra(struct st_ctx *c, int N, int C, int T, const int32_t *lr,
                                  const int32_t *ld, const struct tpair *inp, const struct tpair *w,
                                  const struct tpair *mean, const struct tpair *rstd) {
    static const char *what[4] = {"dropout + next bias", "next bias, p=0", "dropout only",
                                  "dout dropout"};
    for (int mode = 0; mode < 4; mode++) {
        st_begin(c, "layernorm+", "N=%d C=%d T=%d", N, C, T, 0);
        snprintf(c->shape, sizeof c->shape, "N=%d C=%d T=%d, %s", N, C, T, what[mode]);
        struct dropout_key key = {0x5eed5eed1234ull, 9, 3, DROPOUT_TENSOR_FFN_OUT(2)};
        struct tpair dout = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
        struct tpair dinp = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
        struct tpair dropped = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
        struct tpair dw = tp_random(c, T_STORAGE, C, -1, 1), db = tp_random(c, T_STORAGE, C, -1, 1);
        struct tpair dbias = tp_random(c, T_STORAGE, C, -1, 1);
        int drop_out = mode == 0 || mode == 2, sums = mode < 2;
        struct ln_backward_extra xr = {mode == 1 ? 0.0f : 0.1f, mode == 3 ? &key : NULL,
                                       drop_out ? dropped.r : NULL, &key, sums ? dbias.r : NULL};
        struct ln_backward_extra xd = {xr.p, xr.dout_key, drop_out ? dropped.d : NULL, &key,
                                       sums ? dbias.d : NULL};
        c->ref->layernorm_backward(dinp.r, dw.r, db.r, dout.r, inp->r, w->r, mean->r, rstd->r, N, C,
                                   lr, T, &xr);
        c->dev->layernorm_backward(dinp.d, dw.d, db.d, dout.d, inp->d, w->d, mean->d, rstd->d, N, C,
                                   ld, T, &xd);
        CHECK(dinp, "dinp");
        CHECK(dw, "dw");
        CHECK(db, "db");
        if (drop_out) CHECK(dropped, "dropped");
        if (sums) CHECK(dbias, "dbias");
        struct tpair *all[] = {&dout, &dinp, &dropped, &dw, &db, &dbias};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            tp_free(c, all[i]);
    }
}

void st_check_layernorm(struct st_ctx *c, const struct op_case *row) {
    /* variant 1: (N/T, T) rows with lengths: the padding masked in the pass */
    int N = row->d[0], C = row->d[1], T = row->variant ? row->d[2] : 1;
    st_begin(c, "layernorm", row->variant ? "N=%d C=%d T=%d padded" : "N=%d C=%d", N, C, T, 0);
    struct tpair len = tp_ints(c, row->variant ? (size_t)(N / T) : 1, 0, T);
    const int32_t *lr = row->variant ? len.r : NULL, *ld = row->variant ? len.d : NULL;
    struct tpair inp = tp_random(c, T_STORAGE, (size_t)N * C, -2, 3);
    struct tpair w = tp_random(c, T_STORAGE, C, 0.5f, 1.5f), b = tp_random(c, T_STORAGE, C, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair mean = tp_new(c, T_F32, N, NULL), rstd = tp_new(c, T_F32, N, NULL);
    c->ref->layernorm_forward(out.r, mean.r, rstd.r, inp.r, w.r, b.r, N, C, 1e-5f, lr, T);
    c->dev->layernorm_forward(out.d, mean.d, rstd.d, inp.d, w.d, b.d, N, C, 1e-5f, ld, T);
    CHECK(out, "out");
    CHECK(mean, "mean");
    CHECK(rstd, "rstd");
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair dinp = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair dw = tp_random(c, T_STORAGE, C, -1, 1), db = tp_random(c, T_STORAGE, C, -1, 1);
    c->ref->layernorm_backward(dinp.r, dw.r, db.r, dout.r, inp.r, w.r, mean.r, rstd.r, N, C, lr, T,
                               NULL);
    c->dev->layernorm_backward(dinp.d, dw.d, db.d, dout.d, inp.d, w.d, mean.d, rstd.d, N, C, ld, T,
                               NULL);
    CHECK(dinp, "dinp");
    CHECK(dw, "dw");
    CHECK(db, "db");
    check_layernorm_extra(c, N, C, T, lr, ld, &inp, &w, &mean, &rstd);
    struct tpair *all[] = {&len, &inp, &w, &b, &out, &mean, &rstd, &dout, &dinp, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

const struct out_tol ST_RESLN_TOL[] = {{"r", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                       {"out", {1e-5, 1e-5}, {4e-3, 4e-3}},
                                       {"mean", {1e-6, 1e-5}, {1e-6, 1e-5}},
                                       {"rstd", {1e-6, 1e-5}, {1e-6, 1e-5}},
                                       {NULL}};

/* residual_layernorm_forward: r = res + dropout(x + bias) then LayerNorm, in turn with dropout
 * and a bias, in place (r is x), and without either; variant 1 with padded rows (T = d[2]) */
void st_check_residual_layernorm(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], C = row->d[1], T = row->variant ? row->d[2] : 1, B = N / T;
    st_begin(c, "residual + layernorm", row->variant ? "N=%d C=%d T=%d padded" : "N=%d C=%d", N, C,
             T, 0);
    struct tpair len = tp_ints(c, row->variant ? (size_t)B : 1, 0, T);
    const int32_t *lr = row->variant ? len.r : NULL, *ld = row->variant ? len.d : NULL;
    struct tpair x = tp_random(c, T_STORAGE, (size_t)N * C, -2, 2);
    struct tpair res = tp_random(c, T_STORAGE, (size_t)N * C, -2, 2);
    struct tpair bias = tp_random(c, T_STORAGE, C, -1, 1);
    struct tpair w = tp_random(c, T_STORAGE, C, 0.5f, 1.5f), b = tp_random(c, T_STORAGE, C, -1, 1);
    struct tpair r = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair mean = tp_new(c, T_F32, N, NULL), rstd = tp_new(c, T_F32, N, NULL);
    struct dropout_key key = {123456789ull, 5, 3, DROPOUT_TENSOR_ATTN_OUT(1)};
    for (int k = 0; k < 3; k++) {
        float p = k == 2 ? 0.f : 0.1f;
        const void *br = k == 2 ? NULL : bias.r, *bd = k == 2 ? NULL : bias.d;
        /* k 1: in place, as the model calls it (r is the GEMM's output x) */
        struct tpair *dst = k == 1 ? &x : &r;
        c->ref->residual_layernorm_forward(out.r, mean.r, rstd.r, dst->r, res.r, x.r, br, w.r, b.r,
                                           B, T, C, 1e-5f, lr, p, &key);
        c->dev->residual_layernorm_forward(out.d, mean.d, rstd.d, dst->d, res.d, x.d, bd, w.d, b.d,
                                           B, T, C, 1e-5f, ld, p, &key);
        CHECK(*dst, "r");
        CHECK(out, "out");
        CHECK(mean, "mean");
        CHECK(rstd, "rstd");
    }
    struct tpair *all[] = {&len, &x, &res, &bias, &w, &b, &r, &out, &mean, &rstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}
