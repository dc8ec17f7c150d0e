/* selftest.c — the op table (see selftest.h). Each check builds the same random inputs on
 * both backends, poisons the outputs with NaN bytes, surrounds every buffer of the backend
 * under test with guard bytes, runs the op on both and compares element by element:
 * |dev - ref| <= atol + rtol |ref|. */
#include "train/selftest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_BYTES 256
#define GUARD_BYTE 0xA5

enum tkind { T_STORAGE, T_F32, T_I32, T_U8 };

struct st_ctx {
    const struct ops *ref, *dev;
    const struct selftest_opts *opts;
    FILE *log;
    uint64_t rng;
    int failures;
    const char *op;      /* the op being checked, for messages */
    char shape[96];
};

/* One logical tensor on both backends. dev points GUARD_BYTES into its allocation. */
struct tpair {
    void *r, *d, *dbase;
    size_t n, dev_bytes;
    enum tkind kind;
};

static uint64_t st_next(struct st_ctx *c)
{
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float st_uniform(struct st_ctx *c, float lo, float hi)
{
    return lo + (hi - lo) * (float)((st_next(c) >> 40) * (1.0 / 16777216.0));
}

static void *st_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "xlmc selftest: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static size_t elem_bytes(const struct ops *o, enum tkind k)
{
    return k == T_STORAGE ? o->storage_bytes : k == T_U8 ? 1 : 4;
}

/* Upload host values (floats for storage/f32, int32 or uint8 as given) into a buffer of
 * backend o. Storage goes through an fp32 staging buffer and storage_from_f32. */
static void st_upload(const struct ops *o, void *dst, enum tkind k, const void *host, size_t n)
{
    if (k != T_STORAGE) {
        o->to_device(dst, host, n * elem_bytes(o, k));
        return;
    }
    float *tmp = o->alloc(n * sizeof(float));
    if (!tmp) {
        fprintf(stderr, "xlmc selftest: %s backend out of memory\n", o->name);
        exit(1);
    }
    o->to_device(tmp, host, n * sizeof(float));
    o->storage_from_f32(dst, tmp, n);
    o->synchronize();
    o->free(tmp);
}

/* Download a storage or fp32 tensor as floats. */
static void st_download(const struct ops *o, float *host, const void *src, enum tkind k, size_t n)
{
    if (k == T_F32) {
        o->to_host(host, src, n * sizeof(float));
        return;
    }
    float *tmp = o->alloc(n * sizeof(float));
    if (!tmp) {
        fprintf(stderr, "xlmc selftest: %s backend out of memory\n", o->name);
        exit(1);
    }
    o->storage_to_f32(tmp, src, n);
    o->to_host(host, tmp, n * sizeof(float));
    o->free(tmp);
}

/* A tensor with `init` values (n floats, or int32/uint8 for those kinds) on both backends,
 * or NaN-poisoned when init is NULL. */
static struct tpair tp_new(struct st_ctx *c, enum tkind k, size_t n, const void *init)
{
    struct tpair t = {0};
    t.n = n;
    t.kind = k;
    size_t rb = n * elem_bytes(c->ref, k), db = n * elem_bytes(c->dev, k);
    t.r = c->ref->alloc(rb);
    t.dbase = c->dev->alloc(db + 2 * GUARD_BYTES);
    if (!t.r || !t.dbase) {
        fprintf(stderr, "xlmc selftest: out of memory for a %zu-element tensor\n", n);
        exit(1);
    }
    t.d = (char *)t.dbase + GUARD_BYTES;
    t.dev_bytes = db;
    size_t big = (rb > db ? rb : db) + 2 * GUARD_BYTES;
    unsigned char *bytes = st_xmalloc(big);
    memset(bytes, GUARD_BYTE, big);
    /* 0xFF bytes are a NaN in fp32 and in fp16 alike */
    memset(bytes + GUARD_BYTES, 0xFF, db);
    c->dev->to_device(t.dbase, bytes, db + 2 * GUARD_BYTES);
    memset(bytes, 0xFF, rb);
    c->ref->to_device(t.r, bytes, rb);
    free(bytes);
    if (init) {
        st_upload(c->ref, t.r, k, init, n);
        st_upload(c->dev, t.d, k, init, n);
    }
    return t;
}

static struct tpair tp_random(struct st_ctx *c, enum tkind k, size_t n, float lo, float hi)
{
    float *h = st_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = st_uniform(c, lo, hi);
    struct tpair t = tp_new(c, k, n, h);
    free(h);
    return t;
}

static struct tpair tp_ints(struct st_ctx *c, size_t n, int lo, int hi)
{
    int32_t *h = st_xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) h[i] = lo + (int)(st_next(c) % (uint64_t)(hi - lo + 1));
    struct tpair t = tp_new(c, T_I32, n, h);
    free(h);
    return t;
}

static void tp_free(struct st_ctx *c, struct tpair *t)
{
    c->ref->free(t->r);
    c->dev->free(t->dbase);
    memset(t, 0, sizeof *t);
}

static void st_fail(struct st_ctx *c, const char *fmt, const char *what, double a, double b,
                    size_t i)
{
    fprintf(c->log, "FAIL %-20s %-32s %s: ", c->op, c->shape, what);
    fprintf(c->log, fmt, i, a, b);
    fputc('\n', c->log);
    c->failures++;
}

/* Compare tensor t (storage or fp32) of both backends; check the guards of dev's copy. */
static void tp_check(struct st_ctx *c, const struct tpair *t, const char *what, double atol,
                     double rtol)
{
    c->dev->synchronize();
    c->ref->synchronize();
    float *a = st_xmalloc(t->n * sizeof(float)), *b = st_xmalloc(t->n * sizeof(float));
    st_download(c->dev, a, t->d, t->kind, t->n);
    st_download(c->ref, b, t->r, t->kind, t->n);
    double worst = 0.0, max_abs = 0.0;
    size_t worst_i = 0;
    int bad = 0;
    for (size_t i = 0; i < t->n; i++) {
        double d = fabs((double)a[i] - b[i]), lim = atol + rtol * fabs((double)b[i]);
        if (isnan(a[i]) != isnan(b[i]) || isinf(a[i]) != isinf(b[i])) {
            st_fail(c, "element %zu is %g, reference %g", what, a[i], b[i], i);
            bad = 1;
            break;
        }
        if (isnan(b[i]) || isinf(b[i])) continue;
        if (d > max_abs) max_abs = d;
        if (d / lim > worst) {
            worst = d / lim;
            worst_i = i;
        }
    }
    if (!bad && worst > 1.0) st_fail(c, "element %zu is %.7g, reference %.7g", what,
                                     a[worst_i], b[worst_i], worst_i);
    else if (!bad && c->opts->verbose)
        fprintf(c->log, "ok   %-20s %-32s %-8s max |diff| %.3g (%.0f%% of tolerance)\n", c->op,
                c->shape, what, max_abs, 100.0 * worst);
    unsigned char *g = st_xmalloc(t->dev_bytes + 2 * GUARD_BYTES);
    c->dev->to_host(g, t->dbase, t->dev_bytes + 2 * GUARD_BYTES);
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (g[i] != GUARD_BYTE || g[GUARD_BYTES + t->dev_bytes + i] != GUARD_BYTE) {
            fprintf(c->log, "FAIL %-20s %-32s %s: guard bytes around the output overwritten\n",
                    c->op, c->shape, what);
            c->failures++;
            break;
        }
    free(g);
    free(a);
    free(b);
}

/* ---- tolerances: (atol, rtol) for fp32 and for fp16 storage ---- */
struct tol {
    double atol, rtol;
};
static struct tol tl(const struct st_ctx *c, double a32, double r32, double a16, double r16)
{
    struct tol t = {a32, r32};
    if (c->dev->precision == OPS_FP16) t = (struct tol){a16, r16};
    return t;
}
#define CHECK(t, what, tol) tp_check(c, &(t), what, (tol).atol, (tol).rtol)

static void st_begin(struct st_ctx *c, const char *op, const char *fmt, int a, int b, int d,
                     int e)
{
    c->op = op;
    snprintf(c->shape, sizeof c->shape, fmt, a, b, d, e);
}

/* ---- the checks ---- */
static void check_conversions(struct st_ctx *c, size_t n)
{
    st_begin(c, "convert+accumulate", "n=%d", (int)n, 0, 0, 0);
    struct tpair s = tp_random(c, T_STORAGE, n, -3, 3);   /* storage_from_f32 inside */
    struct tpair acc = tp_random(c, T_F32, n, -1, 1);
    c->ref->grad_accumulate(acc.r, s.r, n, 0.37f);
    c->dev->grad_accumulate(acc.d, s.d, n, 0.37f);
    CHECK(s, "storage", tl(c, 0, 0, 0, 0));   /* conversions must be exact */
    CHECK(acc, "acc", tl(c, 1e-6, 1e-6, 1e-6, 1e-6));
    tp_free(c, &s);
    tp_free(c, &acc);
}

static void check_embed(struct st_ctx *c, int B, int T, int C, int V, int NL)
{
    int P = T + 3;
    st_begin(c, "embed", "B=%d T=%d C=%d V=%d", B, T, C, V);
    struct tpair ids = tp_ints(c, (size_t)B * T, 0, V - 1);
    struct tpair langs = tp_ints(c, (size_t)B * T, 0, NL > 0 ? NL - 1 : 0);
    struct tpair wte = tp_random(c, T_STORAGE, (size_t)V * C, -1, 1);
    struct tpair wpe = tp_random(c, T_STORAGE, (size_t)P * C, -1, 1);
    struct tpair wl = tp_random(c, T_STORAGE, (size_t)(NL ? NL : 1) * C, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)B * T * C, NULL);
    c->ref->embed_forward(out.r, ids.r, langs.r, wte.r, wpe.r, NL ? wl.r : NULL, B, T, C);
    c->dev->embed_forward(out.d, ids.d, langs.d, wte.d, wpe.d, NL ? wl.d : NULL, B, T, C);
    CHECK(out, "out", tl(c, 1e-6, 1e-6, 2e-3, 2e-3));
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)B * T * C, -1, 1);
    c->ref->embed_backward(wte.r, wpe.r, NL ? wl.r : NULL, dout.r, ids.r, langs.r, B, T, C, V, NL);
    c->dev->embed_backward(wte.d, wpe.d, NL ? wl.d : NULL, dout.d, ids.d, langs.d, B, T, C, V, NL);
    /* both backends sum every gradient element in fp32 in the same order (by position) and
     * round it to storage once: the same bits */
    CHECK(wte, "dwte", tl(c, 0, 0, 0, 0));
    CHECK(wpe, "dwpe", tl(c, 0, 0, 0, 0));
    if (NL) CHECK(wl, "dwlang", tl(c, 0, 0, 0, 0));
    struct tpair *all[] = {&ids, &langs, &wte, &wpe, &wl, &out, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

static void check_layernorm(struct st_ctx *c, int N, int C)
{
    st_begin(c, "layernorm", "N=%d C=%d", N, C, 0, 0);
    struct tpair inp = tp_random(c, T_STORAGE, (size_t)N * C, -2, 3);
    struct tpair w = tp_random(c, T_STORAGE, C, 0.5f, 1.5f), b = tp_random(c, T_STORAGE, C, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair mean = tp_new(c, T_F32, N, NULL), rstd = tp_new(c, T_F32, N, NULL);
    c->ref->layernorm_forward(out.r, mean.r, rstd.r, inp.r, w.r, b.r, N, C, 1e-5f);
    c->dev->layernorm_forward(out.d, mean.d, rstd.d, inp.d, w.d, b.d, N, C, 1e-5f);
    CHECK(out, "out", tl(c, 1e-5, 1e-5, 4e-3, 4e-3));
    CHECK(mean, "mean", tl(c, 1e-6, 1e-5, 1e-6, 1e-5));
    CHECK(rstd, "rstd", tl(c, 1e-6, 1e-5, 1e-6, 1e-5));
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair dinp = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair dw = tp_random(c, T_STORAGE, C, -1, 1), db = tp_random(c, T_STORAGE, C, -1, 1);
    c->ref->layernorm_backward(dinp.r, dw.r, db.r, dout.r, inp.r, w.r, mean.r, rstd.r, N, C);
    c->dev->layernorm_backward(dinp.d, dw.d, db.d, dout.d, inp.d, w.d, mean.d, rstd.d, N, C);
    CHECK(dinp, "dinp", tl(c, 1e-5, 1e-4, 1e-2, 1e-2));
    CHECK(dw, "dw", tl(c, 1e-4, 1e-5, 5e-2, 1e-2));
    CHECK(db, "db", tl(c, 1e-4, 1e-5, 5e-2, 1e-2));
    struct tpair *all[] = {&inp, &w, &b, &out, &mean, &rstd, &dout, &dinp, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

static void check_matmul(struct st_ctx *c, int N, int C, int OC, int bias)
{
    st_begin(c, bias ? "matmul" : "matmul (no bias)", "N=%d C=%d OC=%d", N, C, OC, 0);
    struct tpair inp = tp_random(c, T_STORAGE, (size_t)N * C, -1, 1);
    struct tpair w = tp_random(c, T_STORAGE, (size_t)OC * C, -1, 1);
    struct tpair b = tp_random(c, T_STORAGE, OC, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, (size_t)N * OC, NULL);
    c->ref->matmul_forward(out.r, inp.r, w.r, bias ? b.r : NULL, N, C, OC);
    c->dev->matmul_forward(out.d, inp.d, w.d, bias ? b.d : NULL, N, C, OC);
    CHECK(out, "out", tl(c, 1e-4, 1e-4, 2e-2, 4e-3));
    struct tpair dout = tp_random(c, T_STORAGE, (size_t)N * OC, -1, 1);
    struct tpair dinp = tp_new(c, T_STORAGE, (size_t)N * C, NULL);
    struct tpair dw = tp_random(c, T_STORAGE, (size_t)OC * C, -1, 1);
    c->ref->matmul_backward(dinp.r, dw.r, bias ? b.r : NULL, dout.r, inp.r, w.r, N, C, OC);
    c->dev->matmul_backward(dinp.d, dw.d, bias ? b.d : NULL, dout.d, inp.d, w.d, N, C, OC);
    CHECK(dinp, "dinp", tl(c, 1e-4, 1e-4, 2e-2, 4e-3));
    CHECK(dw, "dw", tl(c, 1e-4, 1e-4, 2e-2, 4e-3));
    CHECK(b, "db", tl(c, 1e-4, 1e-4, 2e-2, 4e-3));
    struct tpair *all[] = {&inp, &w, &b, &out, &dout, &dinp, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

static void check_attention(struct st_ctx *c, int B, int T, int C, int NH, float p)
{
    st_begin(c, p > 0 ? "attention (dropout)" : "attention", "B=%d T=%d C=%d NH=%d", B, T, C, NH);
    struct dropout_key key = {0x1234567890abcdefull, 3, 5, DROPOUT_TENSOR_ATTN_PROBS(1)};
    size_t n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    struct tpair q = tp_random(c, T_STORAGE, n, -1.5f, 1.5f);
    struct tpair k = tp_random(c, T_STORAGE, n, -1.5f, 1.5f), v = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, n, NULL), lse = tp_new(c, T_F32, nl, NULL);
    c->ref->attention_forward(out.r, lse.r, q.r, k.r, v.r, B, T, C, NH, p, &key);
    c->dev->attention_forward(out.d, lse.d, q.d, k.d, v.d, B, T, C, NH, p, &key);
    CHECK(lse, "lse", tl(c, 1e-5, 1e-5, 1e-5, 1e-5));
    CHECK(out, "out", tl(c, 1e-5, 1e-4, 4e-3, 4e-3));
    struct tpair dout = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair dq = tp_new(c, T_STORAGE, n, NULL), dk = tp_new(c, T_STORAGE, n, NULL);
    struct tpair dv = tp_new(c, T_STORAGE, n, NULL);
    c->ref->attention_backward(dq.r, dk.r, dv.r, dout.r, out.r, lse.r, q.r, k.r, v.r, B, T, C,
                               NH, p, &key);
    c->dev->attention_backward(dq.d, dk.d, dv.d, dout.d, out.d, lse.d, q.d, k.d, v.d, B, T, C,
                               NH, p, &key);
    CHECK(dq, "dq", tl(c, 1e-5, 1e-4, 2e-2, 1e-2));
    CHECK(dk, "dk", tl(c, 1e-5, 1e-4, 2e-2, 1e-2));
    CHECK(dv, "dv", tl(c, 1e-5, 1e-4, 2e-2, 1e-2));
    struct tpair *all[] = {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

static void check_pointwise(struct st_ctx *c, int B, int T, int C)
{
    size_t n = (size_t)B * T * C;
    st_begin(c, "gelu/residual/mask", "B=%d T=%d C=%d", B, T, C, 0);
    struct tpair x = tp_random(c, T_STORAGE, n, -4, 4), y = tp_random(c, T_STORAGE, n, -1, 1);
    struct tpair out = tp_new(c, T_STORAGE, n, NULL), d = tp_new(c, T_STORAGE, n, NULL);
    c->ref->gelu_forward(out.r, x.r, n);
    c->dev->gelu_forward(out.d, x.d, n);
    CHECK(out, "gelu", tl(c, 1e-6, 1e-5, 1e-3, 2e-3));
    c->ref->gelu_backward(d.r, x.r, y.r, n);
    c->dev->gelu_backward(d.d, x.d, y.d, n);
    CHECK(d, "dgelu", tl(c, 1e-6, 1e-5, 1e-3, 2e-3));
    c->ref->residual_forward(out.r, x.r, y.r, n);
    c->dev->residual_forward(out.d, x.d, y.d, n);
    CHECK(out, "residual", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    c->ref->residual_forward(x.r, x.r, y.r, n);   /* aliased output */
    c->dev->residual_forward(x.d, x.d, y.d, n);
    CHECK(x, "res+=", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    struct tpair len = tp_ints(c, B, 0, T);
    c->ref->mask_padding(y.r, len.r, B, T, C);
    c->dev->mask_padding(y.d, len.d, B, T, C);
    CHECK(y, "mask", tl(c, 0, 0, 0, 0));
    st_begin(c, "dropout", "B=%d T=%d C=%d p=0.1", B, T, C, 0);
    struct dropout_key key = {987654321ull, 11, 7, DROPOUT_TENSOR_FFN_OUT(0)};
    c->ref->dropout(x.r, B, T, C, 0.1f, &key);
    c->dev->dropout(x.d, B, T, C, 0.1f, &key);
    CHECK(x, "x", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    st_begin(c, "dropout_residual", "B=%d T=%d C=%d p=0.1", B, T, C, 0);
    c->ref->dropout_residual(out.r, NULL, y.r, B, T, C, 0.1f, &key);   /* out = dropout(y) */
    c->dev->dropout_residual(out.d, NULL, y.d, B, T, C, 0.1f, &key);
    CHECK(out, "copy", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    c->ref->dropout_residual(x.r, x.r, y.r, B, T, C, 0.1f, &key);   /* x += dropout(y) */
    c->dev->dropout_residual(x.d, x.d, y.d, B, T, C, 0.1f, &key);
    CHECK(x, "res+=", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    c->ref->dropout_residual(y.r, x.r, y.r, B, T, C, 0.f, &key);   /* y = x + y */
    c->dev->dropout_residual(y.d, x.d, y.d, B, T, C, 0.f, &key);
    CHECK(y, "p=0", tl(c, 1e-6, 1e-6, 1e-3, 1e-3));
    struct tpair *all[] = {&x, &y, &out, &d, &len};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

static void check_classifier(struct st_ctx *c, int N, int V)
{
    st_begin(c, "classifier", "N=%d V=%d", N, V, 0, 0);
    int32_t *t = st_xmalloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) t[i] = i % 5 == 3 ? -1 : (int)(st_next(c) % (uint64_t)V);
    struct tpair tg = tp_new(c, T_I32, N, t);
    free(t);
    struct tpair logits = tp_random(c, T_STORAGE, (size_t)N * V, -4, 4);
    struct tpair loss = tp_new(c, T_F32, N, NULL);
    /* loss only: logits untouched */
    c->ref->classifier(loss.r, logits.r, NULL, NULL, tg.r, N, V, 0.f);
    c->dev->classifier(loss.d, logits.d, NULL, NULL, tg.d, N, V, 0.f);
    CHECK(loss, "loss", tl(c, 1e-5, 1e-5, 1e-4, 1e-4));
    CHECK(logits, "logits", tl(c, 0, 0, 0, 0));
    c->ref->classifier(loss.r, logits.r, NULL, NULL, tg.r, N, V, 1.f / N);
    c->dev->classifier(loss.d, logits.d, NULL, NULL, tg.d, N, V, 1.f / N);
    CHECK(loss, "loss", tl(c, 1e-5, 1e-5, 1e-4, 1e-4));
    CHECK(logits, "dlogits", tl(c, 1e-7, 1e-4, 1e-6, 4e-3));
    /* the training forward's form: output bias added here, its gradient summed here */
    struct tpair logits2 = tp_random(c, T_STORAGE, (size_t)N * V, -4, 4);
    struct tpair bias = tp_random(c, T_STORAGE, V, -1, 1);
    struct tpair dbias = tp_random(c, T_STORAGE, V, -1, 1);
    c->ref->classifier(loss.r, logits2.r, bias.r, dbias.r, tg.r, N, V, 1.f / N);
    c->dev->classifier(loss.d, logits2.d, bias.d, dbias.d, tg.d, N, V, 1.f / N);
    CHECK(loss, "loss (bias)", tl(c, 1e-5, 1e-5, 1e-4, 1e-4));
    CHECK(logits2, "dlogits (bias)", tl(c, 1e-7, 1e-4, 1e-6, 4e-3));
    CHECK(dbias, "dbias", tl(c, 1e-6, 1e-4, 1e-3, 4e-3));
    tp_free(c, &tg);
    tp_free(c, &logits);
    tp_free(c, &logits2);
    tp_free(c, &bias);
    tp_free(c, &dbias);
    tp_free(c, &loss);
}

static void check_optimizer(struct st_ctx *c, size_t n)
{
    st_begin(c, "unscale/norm", "n=%d", (int)n, 0, 0, 0);
    struct tpair g = tp_random(c, T_F32, n, -2, 2);
    int fr = c->ref->unscale_check(g.r, n, 0.25f), fd = c->dev->unscale_check(g.d, n, 0.25f);
    CHECK(g, "grad", tl(c, 0, 0, 0, 0));
    if (fr != 0 || fd != 0) {
        fprintf(c->log, "FAIL unscale_check: finite gradients flagged (cpu %d, dev %d)\n", fr, fd);
        c->failures++;
    }
    double nr = c->ref->norm_squared(g.r, n), nd = c->dev->norm_squared(g.d, n);
    if (fabs(nr - nd) > 1e-9 * nr) {
        fprintf(c->log, "FAIL norm_squared n=%zu: %.17g, reference %.17g\n", n, nd, nr);
        c->failures++;
    } else if (c->opts->verbose) {
        fprintf(c->log, "ok   %-20s %-32s norm^2 %.10g (reference %.10g)\n", c->op, c->shape, nd, nr);
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
    for (size_t i = 0; i < n; i++) mask[i] = (uint8_t)(i % 3 != 0);
    struct tpair dm = tp_new(c, T_U8, n, mask);
    free(mask);
    for (int t = 1; t <= 3; t++) {
        c->ref->adam_update(master.r, copy.r, grad.r, m.r, v.r, n, 1e-3f, 0.9f, 0.98f, 1e-6f,
                            0.01f, 0.5f, t, dm.r);
        c->dev->adam_update(master.d, copy.d, grad.d, m.d, v.d, n, 1e-3f, 0.9f, 0.98f, 1e-6f,
                            0.01f, 0.5f, t, dm.d);
    }
    CHECK(master, "master", tl(c, 1e-6, 1e-5, 1e-6, 1e-5));
    CHECK(m, "m", tl(c, 1e-7, 1e-5, 1e-7, 1e-5));
    CHECK(v, "v", tl(c, 1e-9, 1e-5, 1e-9, 1e-5));
    /* the fp16 copy: masters that differ in the last bits may round to neighbouring halves */
    CHECK(copy, "copy", tl(c, 1e-6, 1e-5, 1e-6, 2e-3));
    struct tpair *all[] = {&master, &grad, &m, &v, &copy, &dm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tp_free(c, all[i]);
}

int selftest_optable(const struct ops *ref, const struct ops *dev,
                     const struct selftest_opts *opts)
{
    struct st_ctx ctx = {ref, dev, opts, opts->log ? opts->log : stdout, opts->seed, 0, "", ""};
    struct st_ctx *c = &ctx;
    if (ref->precision != dev->precision) {
        fprintf(c->log, "FAIL the reference and the backend under test differ in precision\n");
        return 1;
    }
    check_conversions(c, 1001);
    check_embed(c, 3, 37, 40, 101, 2);
    check_embed(c, 2, 5, 24, 7, 0);
    check_layernorm(c, 75, 72);
    check_layernorm(c, 3, 1000);
    check_layernorm(c, 260, 24);          /* more rows than one column-sum chunk */
    check_matmul(c, 37, 48, 40, 1);
    check_matmul(c, 5, 33, 17, 0);
    check_matmul(c, 260, 16, 24, 1);
    check_attention(c, 2, 37, 32, 4, 0.f);
    check_attention(c, 1, 33, 24, 2, 0.1f);
    check_attention(c, 2, 70, 128, 2, 0.1f);   /* HS 64, several tiles, a partial last one */
    check_attention(c, 1, 40, 256, 2, 0.f);    /* HS 128, the CUDA tiles' limit */
    check_pointwise(c, 3, 37, 40);
    check_pointwise(c, 2, 5, 37);         /* rows of 185 elements: dropout words one by one */
    check_classifier(c, 13, 257);
    if (opts->big_vocab) check_classifier(c, 3, 64699);
    check_optimizer(c, 3001);
    return c->failures;
}
