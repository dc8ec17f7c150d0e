/* selftest.c — the op table (see selftest.h). Each check builds the same random inputs on
 * both backends, poisons the outputs with NaN bytes, surrounds every buffer of the backend
 * under test with guard bytes, runs the op on both and compares element by element:
 * |dev - ref| <= atol + rtol |ref|. */
#include "train/selftest.h"
#include "train/selftest_pairs.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the checks: one function per op, run by the rows of OP_CASES below ---- */

static const struct out_tol CONVERSIONS_TOL[] = {{"storage", {0, 0}, {0, 0}},
                                                 {"converted", {0, 0}, {0, 0}},
                                                 {"acc", {1e-6, 1e-6}, {1e-6, 1e-6}},
                                                 {NULL}};

static void check_conversions(struct st_ctx *c, const struct op_case *row) {
    size_t n = (size_t)row->d[0];
    st_begin(c, "convert+accumulate", "n=%d", (int)n, 0, 0, 0);
    struct tpair s = tp_random(c, T_STORAGE, n, -3, 3); /* storage_from_f32 inside */
    struct tpair acc = tp_random(c, T_F32, n, -1, 1);
    c->ref->grad_accumulate(acc.r, s.r, n, 0.37f);
    c->dev->grad_accumulate(acc.d, s.d, n, 0.37f);
    CHECK(s, "storage"); /* conversions must be exact */
    CHECK(acc, "acc");
    tp_free(c, &s);
    tp_free(c, &acc);
}

/* Tensors carved from one buffer: an odd offset and odd lengths (no 16-byte accesses), an
 * empty one, gaps that no entry covers (they must stay as they were), and more entries than
 * a bucket of layer slices has. Modes 3 and 4 add three gradient buffers in one call (the
 * trainer's micro-batches of a step), at a stride of 16-byte multiples and at one that is not. */
static void check_accumulate_list(struct st_ctx *c, const struct op_case *row) {
    static const size_t off[] = {0,    1001, 2016, 2016, 2100, 2111, 2200, 2300, 2400, 2500,
                                 2600, 2700, 2800, 2900, 3000, 3100, 3200, 3300, 3311, 3400};
    static const size_t len[] = {1000, 1015, 0,   77, 1,  32, 96, 7,  64, 3,
                                 100,  55,   100, 8,  64, 99, 90, 11, 77, 600};
    size_t n = 4000, k = XLMC_ARRAY_LEN(off);
    const char *what[5] = {"first, weight 1", "first", "+=", "first, 3 buffers",
                           "+=, 3 buffers at an odd stride"};
    for (int mode = 0; mode < 5; mode++) {
        int sources = mode < 3 ? 1 : 3;
        size_t stride = mode == 4 ? n + 1 : n; /* elements */
        st_begin(c, "grad_accumulate_list", "%d tensors", (int)k, 0, 0, 0);
        snprintf(c->shape, sizeof c->shape, "%d tensors, %s", (int)k, what[mode]);
        struct tpair g = tp_random(c, T_STORAGE, stride * (size_t)sources, -3, 3),
                     acc = tp_random(c, T_F32, n, -1, 1);
        struct ops_tensor_list lr = {.first = mode < 2 || mode == 3, .sources = sources}, ld;
        lr.weight[0] = mode == 0 ? 1.0f : 0.37f;
        lr.weight[1] = 1.0f;
        lr.weight[2] = -0.61f;
        ld = lr;
        lr.stride = stride * c->ref->storage_bytes;
        ld.stride = stride * c->dev->storage_bytes;
        for (size_t i = 0; i < k; i++) {
            lr.t[i].acc = (float *)acc.r + off[i];
            ld.t[i].acc = (float *)acc.d + off[i];
            lr.t[i].grad = ops_at(c->ref, g.r, off[i]);
            ld.t[i].grad = ops_at(c->dev, g.d, off[i]);
            lr.t[i].n = ld.t[i].n = len[i];
        }
        lr.count = ld.count = (int)k;
        c->ref->grad_accumulate_list(&lr);
        c->dev->grad_accumulate_list(&ld);
        CHECK(acc, mode == 0 ? "converted" : "acc");
        tp_free(c, &g);
        tp_free(c, &acc);
    }
    (void)row;
}

/* both backends sum every gradient element in fp32 in the same order (by position) and round
 * it to storage once: the same bits */
static const struct out_tol EMBED_TOL[] = {{"out", {1e-6, 1e-6}, {2e-3, 2e-3}},
                                           {"dwte", {0, 0}, {0, 0}},
                                           {"dwpe", {0, 0}, {0, 0}},
                                           {"dwlang", {0, 0}, {0, 0}},
                                           {NULL}};

static void check_embed(struct st_ctx *c, const struct op_case *row) {
    int B = row->d[0], T = row->d[1], C = row->d[2], V = row->d[3], NL = row->d[4];
    int P = T + 3;
    st_begin(c, row->variant ? "embed (positions)" : "embed", "B=%d T=%d C=%d V=%d", B, T, C, V);
    struct tpair ids = tp_ints(c, (size_t)B * T, 0, V - 1);
    /* TLM-like position ids: any of the P rows, repeated within a row */
    struct tpair pos = tp_ints(c, (size_t)B * T, 0, row->variant ? P - 1 : 0);
    const int32_t *pr = row->variant ? pos.r : NULL, *pd = row->variant ? pos.d : NULL;
    struct tpair langs = tp_ints(c, (size_t)B * T, 0, NL > 0 ? NL - 1 : 0);
    struct tpair wte = tp_random(c, T_STORAGE, (size_t)V * C, -1, 1);
    struct tpair wpe = tp_random(c, T_STORAGE, (size_t)P * C, -1, 1);
    struct tpair wl = tp_random(c, T_STORAGE, (size_t)(NL ? NL : 1) * C, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)B * T * C, NULL);
    c->ref->embed_forward(out.r, ids.r, langs.r, pr, wte.r, wpe.r, NL ? wl.r : NULL, B, T, C);
    c->dev->embed_forward(out.d, ids.d, langs.d, pd, wte.d, wpe.d, NL ? wl.d : NULL, B, T, C);
    CHECK(out, "out");
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)B * T * C, -1, 1);
    c->ref->embed_backward(wte.r, wpe.r, NL ? wl.r : NULL, dout.r, ids.r, langs.r, pr, B, T, C, V,
                           NL);
    c->dev->embed_backward(wte.d, wpe.d, NL ? wl.d : NULL, dout.d, ids.d, langs.d, pd, B, T, C, V,
                           NL);
    CHECK(wte, "dwte");
    CHECK(wpe, "dwpe");
    if (NL) CHECK(wl, "dwlang");
    struct tpair *all[] = {&ids, &langs, &pos, &wte, &wpe, &wl, &out, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct out_tol MATMUL_TOL[] = {{"out", {1e-4, 1e-4}, {2e-2, 4e-3}},
                                            {"dinp", {1e-4, 1e-4}, {2e-2, 4e-3}},
                                            {"dw", {1e-4, 1e-4}, {2e-2, 4e-3}},
                                            {"db", {1e-4, 1e-4}, {2e-2, 4e-3}},
                                            {NULL}};

/* dw_set's meaning, on the reference: the members' weight gradients (OC*C elements each, at
 * stride ws) in `set` (the pair's reference side, written with dw_set) equal, bit for bit, those
 * in `zero` (written by the add mode onto zeroes). */
static void check_set_is_add_onto_zero(struct st_ctx *c, const struct tpair *set, const void *zero,
                                       size_t wn, int batch, size_t ws) {
    size_t n = set->n;
    float *a = st_xmalloc(n * sizeof(float)), *e = st_xmalloc(n * sizeof(float));
    st_download(c->ref, a, set->r, T_STORAGE, n);
    st_download(c->ref, e, zero, T_STORAGE, n);
    for (size_t k = 0; k < (size_t)batch * wn; k++) {
        size_t i = k / wn * ws + k % wn;
        if (a[i] != e[i]) {
            st_fail(c, "element %zu is %g, += onto zero gives %g", "dw (set, reference)", a[i],
                    e[i], i);
            break;
        }
    }
    free(a);
    free(e);
}

/* a zeroed buffer of n storage elements on the reference */
static void *ref_zeros(struct st_ctx *c, size_t n) {
    void *p = c->ref->alloc(n * c->ref->storage_bytes);
    c->ref->memset0(p, n * c->ref->storage_bytes);
    return p;
}

/* variant 1: dw_set, dw holding random data before the call (set must not read it) */
static void check_matmul(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], C = row->d[1], OC = row->d[2], bias = row->d[3], add = row->d[4];
    int set = row->variant;
    st_begin(c,
             set    ? (add ? "matmul (dinp +=, dw =)" : "matmul (dw =)")
             : add  ? "matmul (dinp +=)"
             : bias ? "matmul"
                    : "matmul (no bias)",
             "N=%d C=%d OC=%d", N, C, OC, 0);
    struct tpair inp = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair w = tp_random(c, T_STORAGE, (size_t)OC * C, -1, 1);
    struct tpair b = tp_random(c, T_STORAGE, OC, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)N * OC, NULL);
    c->ref->matmul_forward(out.r, inp.r, w.r, bias ? b.r : NULL, N, C, OC);
    c->dev->matmul_forward(out.d, inp.d, w.d, bias ? b.d : NULL, N, C, OC);
    CHECK(out, "out");
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)N * OC, -1, 1);
    struct tpair dinp = add ? tp_random(c, T_STORAGE, (size_t)N * C, -1, 1)
                            : tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair dw = tp_random(c, T_STORAGE, (size_t)OC * C, -1, 1);
    if (add) {
        c->ref->matmul_backward_add(dinp.r, dw.r, bias ? b.r : NULL, dout.r, inp.r, w.r, N, C, OC,
                                    set);
        c->dev->matmul_backward_add(dinp.d, dw.d, bias ? b.d : NULL, dout.d, inp.d, w.d, N, C, OC,
                                    set);
    } else {
        c->ref->matmul_backward(dinp.r, dw.r, bias ? b.r : NULL, dout.r, inp.r, w.r, N, C, OC, set);
        c->dev->matmul_backward(dinp.d, dw.d, bias ? b.d : NULL, dout.d, inp.d, w.d, N, C, OC, set);
    }
    CHECK(dinp, "dinp");
    CHECK(dw, "dw");
    CHECK(b, "db");
    if (set) { /* the same call in the add mode onto zeroes (dinp and db: scratch) */
        void *dw0 = ref_zeros(c, dw.n), *di = ref_zeros(c, dinp.n), *db = ref_zeros(c, b.n);
        c->ref->matmul_backward(di, dw0, bias ? db : NULL, dout.r, inp.r, w.r, N, C, OC, 0);
        check_set_is_add_onto_zero(c, &dw, dw0, dw.n, 1, dw.n);
        c->ref->free(dw0);
        c->ref->free(di);
        c->ref->free(db);
    }
    struct tpair *all[] = {&inp, &w, &b, &out, &dout, &dinp, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

/* matmul_*_batched (q, k, v at once): `batch` members whose weights and biases lie at one
 * stride in an arena (bias right after its weight, then pad elements), outputs at another */
static void check_qkv(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], C = row->d[1], OC = row->d[2], bias = row->d[3] & 1, batch = row->d[4];
    int set = (row->d[3] & 2) != 0; /* dw_set: the weights' gradients overwritten */
    size_t pad = (size_t)row->variant, ws = (size_t)OC * C + OC + pad, os = (size_t)N * OC + pad;
    st_begin(c, set ? "matmul (batched, dw =)" : "matmul (batched)", "N=%d C=%d OC=%d batch=%d", N,
             C, OC, batch);
    struct tpair inp = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair w = tp_random(c, T_STORAGE, ws * batch, -1, 1);
    struct tpair out = tp_random(c, T_STORAGE, os * batch, -1, 1); /* pads must stay */
    const void *br = bias ? ops_at(c->ref, w.r, (size_t)OC * C) : NULL;
    const void *bd = bias ? ops_at(c->dev, w.d, (size_t)OC * C) : NULL;
    c->ref->matmul_forward_batched(out.r, inp.r, w.r, br, N, C, OC, batch, ws, os);
    c->dev->matmul_forward_batched(out.d, inp.d, w.d, bd, N, C, OC, batch, ws, os);
    CHECK(out, "out");
    struct tpair dinp = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair dw = tp_random(c, T_STORAGE, ws * batch, -1, 1); /* the gradients' arena */
    void *dbr = bias ? ops_at(c->ref, dw.r, (size_t)OC * C) : NULL;
    void *dbd = bias ? ops_at(c->dev, dw.d, (size_t)OC * C) : NULL;
    c->ref->matmul_backward_add_batched(dinp.r, dw.r, dbr, out.r, inp.r, w.r, N, C, OC, batch, ws,
                                        os, set);
    c->dev->matmul_backward_add_batched(dinp.d, dw.d, dbd, out.d, inp.d, w.d, N, C, OC, batch, ws,
                                        os, set);
    CHECK(dinp, "dinp");
    CHECK(dw, "dw");
    if (set) { /* the members' weights only: the biases add, the pads stay */
        void *dw0 = ref_zeros(c, dw.n), *di = ref_zeros(c, dinp.n);
        c->ref->matmul_backward_add_batched(di, dw0, NULL, out.r, inp.r, w.r, N, C, OC, batch, ws,
                                            os, 0);
        check_set_is_add_onto_zero(c, &dw, dw0, (size_t)OC * C, batch, ws);
        c->ref->free(dw0);
        c->ref->free(di);
    }
    struct tpair *all[] = {&inp, &w, &out, &dinp, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct out_tol ATTENTION_TOL[] = {
    {"lse", {1e-5, 1e-5}, {1e-5, 1e-5}}, {"out", {1e-5, 1e-4}, {4e-3, 4e-3}},
    {"dq", {1e-5, 1e-4}, {2e-2, 1e-2}},  {"dk", {1e-5, 1e-4}, {2e-2, 1e-2}},
    {"dv", {1e-5, 1e-4}, {2e-2, 1e-2}},  {NULL}};

static void check_attention(struct st_ctx *c, const struct op_case *row) {
    int B = row->d[0], T = row->d[1], C = row->d[2], NH = row->d[3];
    float p = row->p;
    const char *what[2][2] = {{"attention", "attention (dropout)"},
                              {"attention (bidirectional)", "attention (bidirectional, dropout)"}};
    st_begin(c, what[row->variant != 0][p > 0], "B=%d T=%d C=%d NH=%d", B, T, C, NH);
    /* bidirectional: row lengths T, 0 and in between, in turn (every key, none, padding) */
    int32_t *lens = malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        lens[b] = b % 3 == 0 ? T : b % 3 == 1 ? 0 : T / 2 + 1;
    if (B >= 2) lens[1] = row->d[4] ? T - 3 : 0;
    struct tpair len = tp_new(c, T_I32, (size_t)B, lens);
    free(lens);
    const int32_t *lr = row->variant ? len.r : NULL, *ld = row->variant ? len.d : NULL;
    struct dropout_key key = {0x1234567890abcdefull, 3, 5, DROPOUT_TENSOR_ATTN_PROBS(1)};
    size_t n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    struct tpair q = tp_random(c, T_STORAGE, n, -1.5f, 1.5f);
    struct tpair k = tp_random(c, T_STORAGE, n, -1.5f, 1.5f), v = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, n, NULL), lse = tp_new(c, T_F32, nl, NULL);
    c->ref->attention_forward(out.r, lse.r, q.r, k.r, v.r, lr, B, T, C, NH, p, &key);
    c->dev->attention_forward(out.d, lse.d, q.d, k.d, v.d, ld, B, T, C, NH, p, &key);
    CHECK(lse, "lse");
    CHECK(out, "out");
    struct tpair dout = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair dq = tp_new(c, T_STORAGE, n, NULL), dk = tp_new(c, T_STORAGE, n, NULL);
    struct tpair dv = tp_new(c, T_STORAGE, n, NULL);
    c->ref->attention_backward(dq.r, dk.r, dv.r, dout.r, out.r, lse.r, q.r, k.r, v.r, lr, B, T, C,
                               NH, p, &key);
    c->dev->attention_backward(dq.d, dk.d, dv.d, dout.d, out.d, lse.d, q.d, k.d, v.d, ld, B, T, C,
                               NH, p, &key);
    CHECK(dq, "dq");
    CHECK(dk, "dk");
    CHECK(dv, "dv");
    struct tpair *all[] = {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv, &len};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct out_tol POINTWISE_TOL[] = {{"gelu", {1e-6, 1e-5}, {1e-3, 2e-3}},
                                               {"dgelu", {1e-6, 1e-5}, {1e-3, 2e-3}},
                                               {"residual", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                               {"res+=", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                               {"mask", {0, 0}, {0, 0}},
                                               {"x", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                               {"copy", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                               {"p=0", {1e-6, 1e-6}, {1e-3, 1e-3}},
                                               {NULL}};

static void check_pointwise(struct st_ctx *c, const struct op_case *row) {
    int B = row->d[0], T = row->d[1], C = row->d[2];
    size_t n = (size_t)B * T * C;
    st_begin(c, "gelu/residual/mask", "B=%d T=%d C=%d", B, T, C, 0);
    struct tpair x = tp_random(c, T_STORAGE, n, -4, 4), y = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, n, NULL), d = tp_new(c, T_STORAGE, n, NULL);
    c->ref->gelu_forward(out.r, x.r, n);
    c->dev->gelu_forward(out.d, x.d, n);
    CHECK(out, "gelu");
    c->ref->gelu_backward(d.r, x.r, y.r, n);
    c->dev->gelu_backward(d.d, x.d, y.d, n);
    CHECK(d, "dgelu");
    c->ref->residual_forward(out.r, x.r, y.r, n);
    c->dev->residual_forward(out.d, x.d, y.d, n);
    CHECK(out, "residual");
    c->ref->residual_forward(x.r, x.r, y.r, n); /* aliased output */
    c->dev->residual_forward(x.d, x.d, y.d, n);
    CHECK(x, "res+=");
    struct tpair len = tp_ints(c, B, 0, T);
    c->ref->mask_padding(y.r, len.r, B, T, C);
    c->dev->mask_padding(y.d, len.d, B, T, C);
    CHECK(y, "mask");
    st_begin(c, "dropout", "B=%d T=%d C=%d p=0.1", B, T, C, 0);
    struct dropout_key key = {987654321ull, 11, 7, DROPOUT_TENSOR_FFN_OUT(0)};
    c->ref->dropout(x.r, B, T, C, 0.1f, &key);
    c->dev->dropout(x.d, B, T, C, 0.1f, &key);
    CHECK(x, "x");
    st_begin(c, "dropout_residual", "B=%d T=%d C=%d p=0.1", B, T, C, 0);
    c->ref->dropout_residual(out.r, NULL, y.r, NULL, B, T, C, 0.1f, &key); /* out = dropout(y) */
    c->dev->dropout_residual(out.d, NULL, y.d, NULL, B, T, C, 0.1f, &key);
    CHECK(out, "copy");
    c->ref->dropout_residual(x.r, x.r, y.r, NULL, B, T, C, 0.1f, &key); /* x += dropout(y) */
    c->dev->dropout_residual(x.d, x.d, y.d, NULL, B, T, C, 0.1f, &key);
    CHECK(x, "res+=");
    /* a linear layer's bias (C) added in the same pass: x += dropout(y + b), out = y + b */
    struct tpair b = tp_random(c, T_STORAGE, (size_t)C, -1, 1);
    c->ref->dropout_residual(x.r, x.r, y.r, b.r, B, T, C, 0.1f, &key);
    c->dev->dropout_residual(x.d, x.d, y.d, b.d, B, T, C, 0.1f, &key);
    CHECK(x, "res+=");
    c->ref->dropout_residual(out.r, NULL, y.r, b.r, B, T, C, 0.f, &key);
    c->dev->dropout_residual(out.d, NULL, y.d, b.d, B, T, C, 0.f, &key);
    CHECK(out, "p=0");
    tp_free(c, &b);
    c->ref->dropout_residual(y.r, x.r, y.r, NULL, B, T, C, 0.f, &key); /* y = x + y */
    c->dev->dropout_residual(y.d, x.d, y.d, NULL, B, T, C, 0.f, &key);
    CHECK(y, "p=0");
    struct tpair *all[] = {&x, &y, &out, &d, &len};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct out_tol CLASSIFIER_TOL[] = {{"loss", {1e-5, 1e-5}, {1e-4, 1e-4}},
                                                {"logits", {0, 0}, {0, 0}},
                                                {"dlogits", {1e-7, 1e-4}, {1e-6, 4e-3}},
                                                {"loss (bias)", {1e-5, 1e-5}, {1e-4, 1e-4}},
                                                {"dlogits (bias)", {1e-7, 1e-4}, {1e-6, 4e-3}},
                                                {"dbias", {1e-6, 1e-4}, {1e-3, 4e-3}},
                                                /* evaluation: logits + bias, each rounded once */
                                                {"logits (bias)", {0, 0}, {0, 0}},
                                                {NULL}};

static void check_classifier(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], V = row->d[1], Vp = row->d[2];
    st_begin(c, "classifier", "N=%d V=%d Vp=%d", N, V, Vp, 0);
    int32_t *t = st_xmalloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        t[i] = i % 5 == 3 ? -1 : (int)(st_next(c) % (uint64_t)V);
    struct tpair tg = tp_new(c, T_I32, N, t);
    free(t);
    /* random values in the padding columns V..Vp-1 too: the op must leave them out */
    struct tpair logits = tp_random(c, T_STORAGE, (size_t)N * Vp, -4, 4);
    struct tpair loss = tp_new(c, T_F32, N, NULL);
    /* loss only: logits untouched */
    c->ref->classifier(loss.r, logits.r, NULL, NULL, tg.r, N, V, Vp, 0.f);
    c->dev->classifier(loss.d, logits.d, NULL, NULL, tg.d, N, V, Vp, 0.f);
    CHECK(loss, "loss");
    CHECK(logits, "logits");
    c->ref->classifier(loss.r, logits.r, NULL, NULL, tg.r, N, V, Vp, 1.f / N);
    c->dev->classifier(loss.d, logits.d, NULL, NULL, tg.d, N, V, Vp, 1.f / N);
    CHECK(loss, "loss");
    CHECK(logits, "dlogits");
    /* the training forward's form: output bias added here, its gradient summed here */
    struct tpair logits2 = tp_random(c, T_STORAGE, (size_t)N * Vp, -4, 4);
    struct tpair bias = tp_random(c, T_STORAGE, V, -1, 1);
    struct tpair dbias = tp_random(c, T_STORAGE, V, -1, 1);
    c->ref->classifier(loss.r, logits2.r, bias.r, dbias.r, tg.r, N, V, Vp, 1.f / N);
    c->dev->classifier(loss.d, logits2.d, bias.d, dbias.d, tg.d, N, V, Vp, 1.f / N);
    CHECK(loss, "loss (bias)");
    CHECK(logits2, "dlogits (bias)");
    CHECK(dbias, "dbias");
    /* evaluation's form (dscale 0): the bias is added into the logits, nothing else written */
    struct tpair logits3 = tp_random(c, T_STORAGE, (size_t)N * Vp, -4, 4);
    c->ref->classifier(loss.r, logits3.r, bias.r, NULL, tg.r, N, V, Vp, 0.f);
    c->dev->classifier(loss.d, logits3.d, bias.d, NULL, tg.d, N, V, Vp, 0.f);
    CHECK(loss, "loss (bias)");
    CHECK(logits3, "logits (bias)");
    tp_free(c, &logits3);
    tp_free(c, &tg);
    tp_free(c, &logits);
    tp_free(c, &logits2);
    tp_free(c, &bias);
    tp_free(c, &dbias);
    tp_free(c, &loss);
}

/* The MLM classifier's row gather and scatter are copies; argmax_correct counts exactly. */
static const struct out_tol GATHERED_TOL[] = {
    {"gathered", {0, 0}, {0, 0}}, {"scattered", {0, 0}, {0, 0}}, {NULL}};

static void check_gathered(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], C = row->d[1], V = row->d[2], Vp = row->d[3], M = 0;
    st_begin(c, "gathered classifier", "N=%d C=%d V=%d Vp=%d", N, C, V, Vp);
    int32_t *idx = st_xmalloc((size_t)N * sizeof(int32_t)), *tg = st_xmalloc((size_t)N * 4);
    for (int n = N - 1; n >= 0; n--) /* every third row, in descending order */
        if (n % 3 == 1) idx[M++] = n;
    struct tpair index = tp_new(c, T_I32, (size_t)M, idx);
    struct tpair x = tp_random(c, T_STORAGE, (size_t)N * C, -2, 2);
    struct tpair sel = tp_new(c, T_STORAGE, (size_t)M * C, NULL);
    struct tpair back = tp_random(c, T_STORAGE, (size_t)N * C, -2, 2); /* overwritten */
    c->ref->gather_rows(sel.r, x.r, index.r, M, C);
    c->dev->gather_rows(sel.d, x.d, index.d, M, C);
    CHECK(sel, "gathered");
    c->ref->scatter_rows(back.r, sel.r, index.r, N, M, C);
    c->dev->scatter_rows(back.d, sel.d, index.d, N, M, C);
    CHECK(back, "scattered");
    /* rows m: a planted maximum 10 at column j, and for m % 3 == 1 a tie at a later column;
     * targets j (correct), the tie (not: the first maximum counts) or -1 */
    float *lg = st_xmalloc((size_t)M * Vp * sizeof(float));
    for (size_t i = 0; i < (size_t)M * Vp; i++)
        lg[i] = st_uniform(c, -4, 4);
    for (int m = 0; m < M; m++) {
        int j = (m * 37) % (V - 1), tie = j + 1 + (m * 11) % (V - 1 - j);
        lg[(size_t)m * Vp + j] = 10.0f;
        if (m % 3 == 1) lg[(size_t)m * Vp + tie] = 10.0f;
        tg[m] = m % 3 == 2 ? -1 : m % 3 == 1 ? tie : j;
    }
    struct tpair logits = tp_new(c, T_STORAGE, (size_t)M * Vp, lg), t = tp_new(c, T_I32, M, tg);
    struct tpair ok = tp_new(c, T_I32, (size_t)M, NULL);
    c->ref->argmax_correct(ok.r, logits.r, t.r, M, V, Vp);
    c->dev->argmax_correct(ok.d, logits.d, t.d, M, V, Vp);
    /* int32 outputs: both backends against the planted answers */
    int32_t *got = st_xmalloc((size_t)M * sizeof(int32_t));
    for (int k = 0; k < 2; k++) {
        const struct ops *o = k ? c->dev : c->ref;
        o->synchronize();
        o->to_host(got, k ? ok.d : ok.r, (size_t)M * sizeof(int32_t));
        for (int m = 0; m < M; m++)
            if (got[m] != (m % 3 == 0))
                st_fail(c, "row %zu: %g, expected %g", k ? "correct (device)" : "correct (ref)",
                        got[m], m % 3 == 0, (size_t)m);
    }
    free(got);
    struct tpair *all[] = {&index, &x, &sel, &back, &logits, &t, &ok};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
    free(idx);
    free(tg);
    free(lg);
}

/* The norm alone over n - offset elements from element offset: odd lengths, a pointer that is
 * not 16-byte aligned (offset 1: element by element), and enough elements for every block of
 * the device's grid to loop. With d[1], the device must give the same bits twice (it is
 * reduced in a fixed order; not repeated on the largest row, slow in cudasim); against the
 * CPU's order, a relative 1e-9. */
static void check_norm(struct st_ctx *c, const struct op_case *row) {
    size_t n = (size_t)row->d[0], off = (size_t)row->variant, k = n - off;
    st_begin(c, "norm_squared", "n=%d offset %d", (int)k, (int)off, 0, 0);
    struct tpair g = tp_random(c, T_F32, n, -2, 2);
    const float *gr = (const float *)g.r + off, *gd = (const float *)g.d + off;
    double nr = c->ref->norm_squared(gr, k), nd = c->dev->norm_squared(gd, k);
    double again = row->d[1] ? c->dev->norm_squared(gd, k) : nd;
    if (memcmp(&nd, &again, sizeof nd)) {
        fprintf(c->log, "FAIL norm_squared n=%zu: %.17g, then %.17g on the same data\n", k, nd,
                again);
        c->failures++;
    } else if (!(fabs(nr - nd) <= 1e-9 * nr)) {
        fprintf(c->log, "FAIL norm_squared n=%zu: %.17g, reference %.17g\n", k, nd, nr);
        c->failures++;
    } else if (c->opts->verbose) {
        fprintf(c->log, "ok   %-20s %-32s norm^2 %.10g (reference %.10g)\n", c->op, c->shape, nd,
                nr);
    }
    tp_free(c, &g);
}

static const struct out_tol OPTIMIZER_TOL[] = {{"grad", {0, 0}, {0, 0}},
                                               {"master", {1e-6, 1e-5}, {1e-6, 1e-5}},
                                               {"m", {1e-7, 1e-5}, {1e-7, 1e-5}},
                                               {"v", {1e-9, 1e-5}, {1e-9, 1e-5}},
                                               {"copy", {1e-6, 1e-5}, {1e-6, 2e-3}},
                                               {NULL}};

static void check_optimizer(struct st_ctx *c, const struct op_case *row) {
    size_t n = (size_t)row->d[0];
    st_begin(c, "unscale/norm", "n=%d", (int)n, 0, 0, 0);
    struct tpair g = tp_random(c, T_F32, n, -2, 2);
    int fr = c->ref->unscale_check(g.r, n, 0.25f), fd = c->dev->unscale_check(g.d, n, 0.25f);
    CHECK(g, "grad");
    if (fr != 0 || fd != 0) {
        fprintf(c->log, "FAIL unscale_check: finite gradients flagged (cpu %d, dev %d)\n", fr, fd);
        c->failures++;
    }
    double nr = c->ref->norm_squared(g.r, n), nd = c->dev->norm_squared(g.d, n);
    if (fabs(nr - nd) > 1e-9 * nr) {
        fprintf(c->log, "FAIL norm_squared n=%zu: %.17g, reference %.17g\n", n, nd, nr);
        c->failures++;
    } else if (c->opts->verbose) {
        fprintf(c->log, "ok   %-20s %-32s norm^2 %.10g (reference %.10g)\n", c->op, c->shape, nd,
                nr);
    }
    float inf = INFINITY;
    c->ref->to_device((float *)g.r + n / 2, &inf, sizeof inf);
    c->dev->to_device((float *)g.d + n / 2, &inf, sizeof inf);
    fr = c->ref->unscale_check(g.r, n, 0.5f);
    fd = c->dev->unscale_check(g.d, n, 0.5f);
    if (fr != 1 || fd != 1) {
        fprintf(c->log, "FAIL unscale_check: an inf not flagged (cpu %d, dev %d)\n", fr, fd);
        c->failures++;
    }
    tp_free(c, &g);

    st_begin(c, "adam", "n=%d", (int)n, 0, 0, 0);
    struct tpair master = tp_random(c, T_F32, n, -1, 1), grad = tp_random(c, T_F32, n, -1, 1);
    struct tpair m = tp_random(c, T_F32, n, -0.1f, 0.1f), v = tp_random(c, T_F32, n, 0, 0.01f);
    struct tpair copy = tp_new(c, T_STORAGE, n, NULL);
    uint8_t *mask = st_xmalloc(n);
    for (size_t i = 0; i < n; i++)
        mask[i] = (uint8_t)(i % 3 != 0);
    struct tpair dm = tp_new(c, T_U8, n, mask);
    free(mask);
    for (int t = 1; t <= 3; t++) {
        c->ref->adam_update(master.r, copy.r, grad.r, m.r, v.r, n, 1e-3f, 0.9f, 0.98f, 1e-6f, 0.01f,
                            0.5f, t, dm.r);
        c->dev->adam_update(master.d, copy.d, grad.d, m.d, v.d, n, 1e-3f, 0.9f, 0.98f, 1e-6f, 0.01f,
                            0.5f, t, dm.d);
    }
    CHECK(master, "master");
    CHECK(m, "m");
    CHECK(v, "v");
    /* the fp16 copy: masters that differ in the last bits may round to neighbouring halves */
    CHECK(copy, "copy");
    struct tpair *all[] = {&master, &grad, &m, &v, &copy, &dm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct out_tol BIAS_GELU_TOL[] = {
    {"out", {1e-6, 1e-5}, {1e-3, 2e-3}},
    {"dinp", {1e-6, 1e-5}, {1e-3, 2e-3}},
    /* a column sum of N rounded products: the order of the sum differs between backends */
    {"dbias", {1e-4, 1e-5}, {5e-2, 1e-2}},
    {NULL}};

static void check_bias_gelu(struct st_ctx *c, const struct op_case *row) {
    int N = row->d[0], F = row->d[1];
    size_t n = (size_t)N * F;
    st_begin(c, "bias_gelu", "N=%d F=%d", N, F, 0, 0);
    struct tpair x = tp_random(c, T_STORAGE, n, -4, 4), b = tp_random(c, T_STORAGE, F, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, n, NULL);
    c->ref->bias_gelu_forward(out.r, x.r, b.r, N, F);
    c->dev->bias_gelu_forward(out.d, x.d, b.d, N, F);
    CHECK(out, "out");
    struct tpair dout = tp_random(c, T_STORAGE, n, -1, 1), dinp = tp_new(c, T_STORAGE, n, NULL);
    struct tpair db = tp_random(c, T_STORAGE, F, -1, 1);
    c->ref->bias_gelu_backward(dinp.r, db.r, dout.r, x.r, b.r, N, F);
    c->dev->bias_gelu_backward(dinp.d, db.d, dout.d, x.d, b.d, N, F);
    CHECK(dinp, "dinp");
    CHECK(db, "dbias");
    struct tpair *all[] = {&x, &b, &out, &dout, &dinp, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tp_free(c, all[i]);
}

static const struct op_case OP_CASES[] = {
    {check_conversions, CONVERSIONS_TOL, {1001}, 0, 0, 0},            /* n */
    {check_accumulate_list, CONVERSIONS_TOL, {0}, 0, 0, 0},           /* carved tensors */
    {check_embed, EMBED_TOL, {3, 37, 40, 101, 2}, 0, 0, 0},           /* B T C V NL */
    {check_embed, EMBED_TOL, {2, 5, 24, 7, 0}, 0, 0, 0},              /* no language embeddings */
    {check_embed, EMBED_TOL, {3, 37, 40, 101, 2}, 0, 0, 1},           /* position ids */
    {check_embed, EMBED_TOL, {3, 90, 72, 101, 37}, 0, 0, 0},          /* 37 languages, 2 chunks */
    {check_embed, EMBED_TOL, {2, 2100, 8, 50, 2}, 0, 0, 0},           /* sort past one tile */
    {check_embed, EMBED_TOL, {2, 9, 13, 11, 2}, 0, 0, 1},             /* C odd: scalar */
    {check_embed, EMBED_TOL, {2, 8200, 8, 50, 3}, 0, 0, 0},           /* 65 column-sum chunks */
    {st_check_layernorm, ST_LAYERNORM_TOL, {75, 72}, 0, 0, 0},        /* N C */
    {st_check_layernorm, ST_LAYERNORM_TOL, {3, 1000}, 0, 0, 0},       /* */
    {st_check_layernorm, ST_LAYERNORM_TOL, {260, 24}, 0, 0, 0},       /* more rows than one
                                                                       * column-sum chunk */
    {st_check_layernorm, ST_LAYERNORM_TOL, {9, 77}, 0, 0, 0},         /* C odd: scalar */
    {st_check_layernorm, ST_LAYERNORM_TOL, {5, 36}, 0, 0, 0},         /* 16-byte: fp32 only */
    {st_check_layernorm, ST_LAYERNORM_TOL, {2, 4104}, 0, 0, 0},       /* rows longer than the
                                                                       * CUDA registers hold */
    {st_check_layernorm, ST_LAYERNORM_TOL, {2, 601}, 0, 0, 0},        /* the same, scalar */
    {st_check_layernorm, ST_LAYERNORM_TOL, {260, 24, 13}, 0, 0, 1},   /* N C T, padded rows */
    {st_check_layernorm, ST_LAYERNORM_TOL, {6, 77, 3}, 0, 0, 1},      /* the same, scalar */
    {st_check_layernorm, ST_LAYERNORM_TOL, {45, 1600, 9}, 0, 0, 1},   /* CUDA: 4 cached pieces */
    {st_check_layernorm, ST_LAYERNORM_TOL, {29, 301}, 0, 0, 0},       /* the same, scalar */
    {st_check_residual_layernorm, ST_RESLN_TOL, {64, 1024}, 0, 0, 0}, /* N C: the model's rows */
    {st_check_residual_layernorm, ST_RESLN_TOL, {9, 77}, 0, 0, 0}, /* C odd: scalar, no 4-groups */
    {st_check_residual_layernorm, ST_RESLN_TOL, {2, 4104}, 0, 0, 0}, /* rows past the registers */
    {st_check_residual_layernorm, ST_RESLN_TOL, {2, 601}, 0, 0, 0},  /* the same, scalar */
    {st_check_residual_layernorm, ST_RESLN_TOL, {260, 24, 13}, 0, 0, 1}, /* N C T, padded rows */
    {check_matmul, MATMUL_TOL, {37, 48, 40, 1}, 0, 0, 0},                /* N C OC bias */
    {check_matmul, MATMUL_TOL, {5, 33, 17, 0}, 0, 0, 0},                 /* */
    {check_matmul, MATMUL_TOL, {260, 16, 24, 1}, 0, 0, 0},               /* */
    {check_matmul, MATMUL_TOL, {7, 16, 13, 1}, 0, 0, 0},                 /* rows of 13: the bias
                                                                          * element by element */
    {check_matmul, MATMUL_TOL, {37, 48, 40, 1, 1}, 0, 0, 0},             /* dinp += */
    {check_matmul, MATMUL_TOL, {5, 33, 17, 0, 1}, 0, 0, 0},              /* */
    {check_matmul, MATMUL_TOL, {301, 24, 112, 1}, 0, 0, 0},              /* a wide output: CUDA's
                                                                          * db in the dw GEMM
                                                                          * (matmul.cu wide_db),
                                                                          * its first OC here */
    {check_matmul, MATMUL_TOL, {301, 24, 112, 1, 1}, 0, 0, 0},           /* the same, dinp += */
    {check_matmul, MATMUL_TOL, {301, 24, 111, 1}, 0, 0, 0},              /* one OC below: GEMV */
    {check_matmul, MATMUL_TOL, {173, 20, 167, 1, 1}, 0, 0, 0},           /* wide, rows of 20 (fp16
                                                                          * element by element) */
    {check_matmul, MATMUL_TOL, {37, 48, 40, 1}, 0, 0, 1},                /* variant 1: dw_set */
    {check_matmul, MATMUL_TOL, {5, 33, 17, 0, 1}, 0, 0, 1},              /* */
    {check_matmul, MATMUL_TOL, {301, 24, 112, 1, 1}, 0, 0, 1},           /* wide: wide_finish's = */
    {check_matmul, MATMUL_TOL, {173, 20, 167, 1}, 0, 0, 1},              /* the same, fp16 scalar */
    {check_qkv, MATMUL_TOL, {37, 48, 48, 1, 3}, 0, 0, 0},                /* N C OC bias batch: */
    {check_qkv, MATMUL_TOL, {37, 48, 48, 3, 3}, 0, 0, 0},                /* bias 3: dw_set too */
    {check_qkv, MATMUL_TOL, {9, 16, 13, 3, 3}, 0, 0, 3},                 /* */
    {check_qkv, MATMUL_TOL, {9, 16, 13, 1, 3}, 0, 0, 3},                 /* pad (variant) between */
    {check_qkv, MATMUL_TOL, {5, 24, 16, 0, 2}, 0, 0, 8},                 /* members: odd strides */
    {check_attention, ATTENTION_TOL, {2, 37, 32, 4}, 0.f, 0, 0},         /* B T C NH, p */
    {check_attention, ATTENTION_TOL, {1, 33, 24, 2}, 0.1f, 0, 0},        /* */
    {check_attention, ATTENTION_TOL, {2, 70, 128, 2}, 0.1f, 0, 0},       /* HS 64, several tiles, a
                                                                          * partial last one */
    {check_attention, ATTENTION_TOL, {1, 40, 256, 2}, 0.f, 0, 0},        /* HS 128, the CUDA tiles'
                                                                          * limit */
    {check_attention, ATTENTION_TOL, {1, 35, 12, 2}, 0.f, 0, 0},         /* HS 6: CUDA tiles element
                                                                          * by element in fp32 too */
    /* bidirectional (MLM, TLM): B T C NH, d[4] 1: row 1 of length T-3, else of length 0 */
    {check_attention, ATTENTION_TOL, {3, 37, 32, 4, 0}, 0.f, 0, 1},
    {check_attention, ATTENTION_TOL, {2, 70, 128, 2, 1}, 0.1f, 0, 1},
    {check_attention, ATTENTION_TOL, {2, 40, 256, 2, 1}, 0.f, 0, 1},
    /* HS 5: the CUDA tiles element by element */
    {check_attention, ATTENTION_TOL, {2, 37, 20, 4, 1}, 0.1f, 0, 1},
    {check_pointwise, POINTWISE_TOL, {3, 37, 40}, 0, 0, 0},         /* B T C */
    {check_pointwise, POINTWISE_TOL, {2, 5, 37}, 0, 0, 0},          /* rows of 185 elements: dropout
                                                                     * words one by one */
    {check_bias_gelu, BIAS_GELU_TOL, {37, 72}, 0, 0, 0},            /* N F */
    {check_bias_gelu, BIAS_GELU_TOL, {300, 40}, 0, 0, 0},           /* more rows than one
                                                                     * column-sum chunk */
    {check_bias_gelu, BIAS_GELU_TOL, {9, 13}, 0, 0, 0},             /* rows of 13: no 16-byte
                                                                     * accesses, a partial tail */
    {check_classifier, CLASSIFIER_TOL, {13, 257, 257}, 0, 0, 0},    /* N V Vp */
    {check_classifier, CLASSIFIER_TOL, {13, 257, 384}, 0, 0, 0},    /* padded vocabulary */
    {check_classifier, CLASSIFIER_TOL, {3, 64699, 64768}, 0, 1, 0}, /* XLM's, padded */
    {check_classifier, CLASSIFIER_TOL, {2, 9001, 9001}, 0, 0, 0},   /* odd rows longer than
                                                                     * the CUDA registers hold */
    {check_classifier, CLASSIFIER_TOL, {2, 33001, 33024}, 0, 0, 0}, /* the same, 16-byte
                                                                     * pieces (fp32) */
    {check_classifier, CLASSIFIER_TOL, {1, 66001, 66048}, 0, 1, 0}, /* the same in fp16 */
    {check_classifier, CLASSIFIER_TOL, {300, 41, 48}, 0, 0, 0},     /* dbias: two column-sum
                                                                     * chunks */
    {check_gathered, GATHERED_TOL, {40, 24, 257, 384}, 0, 0, 0},    /* N C V Vp */
    {check_optimizer, OPTIMIZER_TOL, {3001}, 0, 0, 0},              /* n */
    {check_norm, NULL, {7, 1}, 0, 0, 0},                            /* n, repeat */
    {check_norm, NULL, {100003, 1}, 0, 0, 1},                       /* unaligned */
    {check_norm, NULL, {1100003, 0}, 0, 0, 0},                      /* > 1024 x 256 x 4 */
};

int selftest_optable(const struct ops *ref, const struct ops *dev,
                     const struct selftest_opts *opts) {
    struct st_ctx ctx = {ref, dev, opts, opts->log ? opts->log : stdout, opts->seed, 0,
                         "",  "",  NULL};
    struct st_ctx *c = &ctx;
    if (ref->precision != dev->precision) {
        fprintf(c->log, "FAIL the reference and the backend under test differ in precision\n");
        return 1;
    }
    for (size_t i = 0; i < XLMC_ARRAY_LEN(OP_CASES); i++) {
        const struct op_case *row = &OP_CASES[i];
        if (row->big_vocab && !opts->big_vocab) continue;
        c->tols = row->tols;
        row->check(c, row);
    }
    return c->failures;
}
