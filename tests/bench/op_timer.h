/* op_timer.h — wall-clock time per op of an op table, for the benchmarks' breakdown of a step
 * (bench_cpu_step with XLMC_BENCH_OPS=1). The backends run every op synchronously on the CPU,
 * so a call's wall time is the op's time. */
#ifndef XLMC_BENCH_OP_TIMER_H
#define XLMC_BENCH_OP_TIMER_H

#include "kernels/ops.h"

#include <stdio.h>

/* A table that forwards every op to inner and times it. One at a time per process. */
const struct ops *op_timer_wrap(const struct ops *inner);
/* forget the times so far (after the warm-up steps) */
void op_timer_reset(void);
/* per op: ms per step over `steps` steps, calls per step, share of the ops' total */
void op_timer_report(FILE *f, int steps);

#endif
