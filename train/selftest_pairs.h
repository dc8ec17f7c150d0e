/* selftest_pairs.h — private to train/selftest*.c: a tensor on two backends (the reference
 * and the one under test), NaN-poisoned outputs, guard bytes around the copy under test, and
 * the element-wise comparison with per-output tolerances. */
#ifndef XLMC_SELFTEST_PAIRS_H
#define XLMC_SELFTEST_PAIRS_H

#include "kernels/ops.h"
#include "train/selftest.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum tkind { T_STORAGE, T_F32, T_I32, T_U8 };

/* Tolerance of one output: |dev - ref| <= atol + rtol |ref|, for fp32 and for fp16 storage. */
struct tol {
    double atol, rtol;
};
struct out_tol {
    const char *what; /* the output's name in messages */
    struct tol fp32, fp16;
};

struct st_ctx {
    const struct ops *ref, *dev;
    const struct selftest_opts *opts;
    FILE *log;
    uint64_t rng;
    int failures;
    const char *op; /* the op being checked, for messages */
    char shape[96];
    const struct out_tol *tols; /* the op's tolerances, ended by {NULL} */
};

/* One logical tensor on both backends. dev points GUARD_BYTES into its allocation. */
struct tpair {
    void *r, *d, *dbase;
    size_t n, dev_bytes;
    enum tkind kind;
};

uint64_t st_next(struct st_ctx *c);
float st_uniform(struct st_ctx *c, float lo, float hi);
void *st_xmalloc(size_t bytes);
void st_upload(const struct ops *o, void *dst, enum tkind k, const void *host, size_t n);
void st_download(const struct ops *o, float *host, const void *src, enum tkind k, size_t n);
struct tpair tp_new(struct st_ctx *c, enum tkind k, size_t n, const void *init);
struct tpair tp_random(struct st_ctx *c, enum tkind k, size_t n, float lo, float hi);
struct tpair tp_ints(struct st_ctx *c, size_t n, int lo, int hi);
void tp_free(struct st_ctx *c, struct tpair *t);
void st_fail(struct st_ctx *c, const char *fmt, const char *what, double a, double b, size_t i);
void tp_check(struct st_ctx *c, const struct tpair *t, const char *what, double atol, double rtol);
void tp_check_named(struct st_ctx *c, const struct tpair *t, const char *what);
void st_begin(struct st_ctx *c, const char *op, const char *fmt, int a, int b, int d, int e);

/* Compare output t of the op being checked, by its name in the op's tolerance table. */
#define CHECK(t, what) tp_check_named(c, &(t), what)

/* A row of selftest.c's table: one op and shape. d holds the shape in the order the row's comment
 * names; the tolerances of each output, per precision, are the op's *_TOL table. */
struct op_case {
    void (*check)(struct st_ctx *c, const struct op_case *row);
    const struct out_tol *tols;
    int d[5];
    float p;       /* dropout probability, where the op has one */
    int big_vocab; /* only with opts->big_vocab (slow in cudasim) */
    int variant;   /* embed: 1 with position ids (TLM's); attention: 1 bidirectional (MLM) */
};

/* the LayerNorm rows' checks and tolerances (selftest_norm.c) */
extern const struct out_tol ST_LAYERNORM_TOL[], ST_RESLN_TOL[];
void st_check_layernorm(struct st_ctx *c, const struct op_case *row);
void st_check_residual_layernorm(struct st_ctx *c, const struct op_case *row);

#endif
