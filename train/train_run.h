/* train_run.h — the state of one `xlmc train` process and its setup: config (fresh, resumed
 * or fine-tuning), batch geometry, backend, model, trainer, loaders and log files. */
#ifndef XLMC_TRAIN_RUN_H
#define XLMC_TRAIN_RUN_H

#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "data/loader.h"
#include "train/objective.h"

#include <stdint.h>
#include <stdio.h>

struct train_args {
    const char *config, *data, *run_dir, *device, *init_from;
    long max_steps; /* stop after this step; -1: train.max_steps (the schedule always
                     * follows train.max_steps, so a run cut short continues exactly) */
    int log_ranks;
    /* debugging knobs (listed by --help; the test suite uses them); -1: off */
    long signal_at_step;  /* rank 0 raises SIGUSR1 after this step */
    long pause_ckpt_step; /* the checkpoint of this step pauses 60 s half written */
    int accept_changes;   /* --accept-changes: resume with settings that change the run */
    int fresh_start;      /* --fresh-start: set invalid checkpoints aside and start at step 0 */
};

struct train_run {
    struct train_args args;
    struct comm *comm;     /* MPI: host-side agreement, files */
    struct comm *dev_comm; /* what the trainer reduces gradients with (MPI or NCCL) */
    struct xlmc_config cfg;
    const struct ops *ops;
    struct model m;
    struct trainer t;
    int have_model, have_trainer, resumed;
    struct objective_set obj; /* one train stream per [train] objectives entry */
    struct loader *valid;
    /* per objective since the last progress line: summed token loss and tokens */
    double obj_loss[XLMC_MAX_OBJECTIVES], obj_tokens[XLMC_MAX_OBJECTIVES];
    uint64_t vocab_hash; /* of the data = of the model */
    int global_rows;     /* rows per optimizer step over all ranks */
    int accum;           /* micro-batches per rank per step */
    FILE *metrics;       /* rank 0: R/metrics.jsonl */
    FILE *ranklog;       /* --log-ranks: R/logs/rank-K.log */
    double peak_flops, t_start;
    int lock_fd, created_run_dir, setup_done; /* rank 0: R/lock (run_guard.h), -1 elsewhere */
    struct json_t *changes;                   /* settings changed on resume (for metrics.jsonl) */
    struct watchdog *wd;                      /* train/watchdog.h */
};

/* Everything before the first step. 0 or -1 (printed). */
int train_run_setup(struct train_run *r);
void train_run_free(struct train_run *r);
/* Tokens of all steps served so far, skipped fp16 steps included (the x axis of plots). */
long train_run_tokens(const struct train_run *r);

#endif
