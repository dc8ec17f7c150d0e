/* selftest_pairs.c — tensors on two backends for the op table (see selftest_pairs.h). */
#include "train/selftest_pairs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_BYTES 256
#define GUARD_BYTE 0xA5

uint64_t st_next(struct st_ctx *c) {
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
float st_uniform(struct st_ctx *c, float lo, float hi) {
    return lo + (hi - lo) * (float)((st_next(c) >> 40) * (1.0 / 16777216.0));
}

void *st_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "xlmc selftest: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

size_t elem_bytes(const struct ops *o, enum tkind k) {
    return k == T_STORAGE ? o->storage_bytes : k == T_U8 ? 1 : 4;
}

/* Upload host values (floats for storage/f32, int32 or uint8 as given) into a buffer of
 * backend o. Storage goes through an fp32 staging buffer and storage_from_f32. */
void st_upload(const struct ops *o, void *dst, enum tkind k, const void *host, size_t n) {
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
void st_download(const struct ops *o, float *host, const void *src, enum tkind k, size_t n) {
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
struct tpair tp_new(struct st_ctx *c, enum tkind k, size_t n, const void *init) {
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

struct tpair tp_random(struct st_ctx *c, enum tkind k, size_t n, float lo, float hi) {
    float *h = st_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = st_uniform(c, lo, hi);
    struct tpair t = tp_new(c, k, n, h);
    free(h);
    return t;
}

struct tpair tp_ints(struct st_ctx *c, size_t n, int lo, int hi) {
    int32_t *h = st_xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        h[i] = lo + (int)(st_next(c) % (uint64_t)(hi - lo + 1));
    struct tpair t = tp_new(c, T_I32, n, h);
    free(h);
    return t;
}

void tp_free(struct st_ctx *c, struct tpair *t) {
    c->ref->free(t->r);
    c->dev->free(t->dbase);
    memset(t, 0, sizeof *t);
}

void st_fail(struct st_ctx *c, const char *fmt, const char *what, double a, double b, size_t i) {
    fprintf(c->log, "FAIL %-20s %-32s %s: ", c->op, c->shape, what);
    fprintf(c->log, fmt, i, a, b);
    fputc('\n', c->log);
    c->failures++;
}

/* Compare tensor t (storage or fp32) of both backends; check the guards of dev's copy. */
void tp_check(struct st_ctx *c, const struct tpair *t, const char *what, double atol, double rtol) {
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
    if (!bad && worst > 1.0)
        st_fail(c, "element %zu is %.7g, reference %.7g", what, a[worst_i], b[worst_i], worst_i);
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

/* Compare output t, named `what` in the op's tolerance table, at the tolerance of the
 * precision under test. A name missing from the table is a failure, never a pass. */
void tp_check_named(struct st_ctx *c, const struct tpair *t, const char *what) {
    for (const struct out_tol *o = c->tols; o && o->what; o++)
        if (!strcmp(o->what, what)) {
            struct tol tol = c->dev->precision == OPS_FP16 ? o->fp16 : o->fp32;
            tp_check(c, t, what, tol.atol, tol.rtol);
            return;
        }
    fprintf(c->log, "FAIL %-20s %-32s %s: no tolerance in the op's table\n", c->op, c->shape, what);
    c->failures++;
}

void st_begin(struct st_ctx *c, const char *op, const char *fmt, int a, int b, int d, int e) {
    c->op = op;
    snprintf(c->shape, sizeof c->shape, fmt, a, b, d, e);
}
