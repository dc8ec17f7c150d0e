/* selftest.h — the op table: every op of kernels/ops.h on a backend under test against the
 * CPU reference, over a table of shapes (odd sizes, T not a multiple of 32, V = 64699) with
 * per-op tolerances, fresh random inputs, guard bytes around every output of the backend
 * under test and NaN-poisoned outputs before each run. Used by `xlmc selftest` and by
 * tests/kernels (with the backend run in cudasim). */
#ifndef XLMC_SELFTEST_H
#define XLMC_SELFTEST_H

#include "kernels/ops.h"

#include <stdint.h>
#include <stdio.h>

struct selftest_opts {
    uint64_t seed; /* inputs are drawn from this seed */
    int big_vocab; /* also run the classifier with V = 64699 (slow in cudasim) */
    int verbose;   /* one line per op and shape, not only failures */
    FILE *log;     /* where lines go (stdout if NULL) */
};

/* Runs the table for the precision of `dev` (ref must be ops_cpu of the same precision).
 * Returns the number of failed checks (0: every op within tolerance, no guard touched). */
int selftest_optable(const struct ops *ref, const struct ops *dev,
                     const struct selftest_opts *opts);

/* One fp16 training step of a tiny model (train/selftest_step.c), dev against ref (both
 * OPS_FP16), plus an injected overflow that must skip the step on both. Returns the number of
 * failed checks. */
int selftest_train_step(const struct ops *ref, const struct ops *dev, FILE *log);

/* Training steps replayed from recorded graphs against the same steps launched one by one on
 * dev (train/selftest_graphs.c): bit-identical, and a moved buffer refuses a replay. 0 checks
 * on a backend without graphs. Returns the number of failed checks. */
int selftest_graphs(const struct ops *dev, FILE *log);

#endif
