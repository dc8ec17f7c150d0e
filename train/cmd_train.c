/* cmd_train.c — `xlmc train`: data-parallel training with checkpoints, exact resume,
 * fine-tuning and stop-on-signal. One process per device under mpirun or srun.
 *
 * Every rank runs the same loop; ranks differ only in the blocks of each global step they
 * compute (data/loader.h) and in who writes files (rank 0). Decisions that end or branch the
 * loop (stop requested, overflow) are agreed by a reduction so no rank waits alone. */
#include "train/commands.h"

#include "core/checkpoint.h"
#include "core/comm.h"
#include "core/trainer.h"
#include "core/util.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/session.h"
#include "train/run_guard.h"
#include "train/train_run.h"
#include "train/watchdog.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    stop_signal = sig;
}

/* --debug-pause-checkpoint: the checkpoint of that step stops half written (weights, no
 * moments) for a minute, so that a test's `kill -9` lands inside the write. */
static void pause_midwrite(void *ctx, long step) {
    const struct train_args *a = ctx;
    if (step != a->pause_ckpt_step) return;
    fprintf(stderr,
            "xlmc: checkpoint of step %ld half written, pausing 60 s "
            "(--debug-pause-checkpoint)\n",
            step);
    sleep(60);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] xlmc train --data DIR --run-dir R [--config C] [options]\n"
            "\n"
            "Trains the model of config C on the shards of DIR (from `xlmc prep`), data\n"
            "parallel over the MPI ranks. R receives checkpoints/step-NNNNNNN.h5, metrics.jsonl\n"
            "and logs/. When R already holds checkpoints, training resumes from the newest\n"
            "valid one (bit-identical with the same number of ranks; the same global batch\n"
            "with another); --config may then be left out.\n"
            "\n"
            "options:\n"
            "  --config C        INI file (configs/tiny.ini); vocab_size 0 = the data's\n"
            "  --data DIR        shard directory (train split; valid split for evaluation)\n"
            "  --run-dir R       run directory (created)\n"
            "  --device D        cpu (default) or cuda (one GPU per rank, by local rank)\n"
            "  --init-from CKPT  fine-tune: start from CKPT's weights with a fresh optimizer,\n"
            "                    schedule and step; the data must use CKPT's vocabulary\n"
            "  --max-steps N     stop after step N (0: just write the initial weights); the\n"
            "                    learning-rate schedule still follows train.max_steps\n"
            "  --log-ranks       every rank also logs to R/logs/rank-K.log\n"
            "  --accept-changes  resume although --config changes settings of the run (seed,\n"
            "                    seq_len, batch_tokens, precision, dropout, ...): they take\n"
            "                    effect and metrics.jsonl records them; refused without it\n"
            "  --fresh-start     when every checkpoint of R is invalid, move them to\n"
            "                    R/checkpoints.invalid-N and start at step 0 (refused without it)\n"
            "\n"
            "debugging (the test suite uses these to cut a run at an exact point):\n"
            "  --debug-signal-at N         rank 0 sends itself SIGUSR1 after step N (the\n"
            "                              real stop path: the other ranks learn it by agreement)\n"
            "  --debug-pause-checkpoint N  the step-N checkpoint pauses 60 s half written\n"
            "\n"
            "exit status: 0 trained to max_steps (final checkpoint written); 1 error;\n"
            "  2 usage; %d stopped by SIGUSR1 or SIGTERM after writing a checkpoint:\n"
            "  \"checkpointed, please requeue\" — run the same command again to continue\n"
            "  (under a bare mpirun send SIGUSR1: mpirun answers SIGTERM by killing the ranks);\n"
            "  %d a rank made no progress within train.watchdog_seconds: the watchdog ended\n"
            "  the job on all ranks; run it again to resume from the last checkpoint.\n"
            "R/lock is held while a run lives: a second run on R is refused.\n"
            "environment: XLMC_PEAK_TFLOPS sets the peak FLOP/s per rank behind MFU.\n",
            XLMC_EXIT_REQUEUE, XLMC_EXIT_HUNG);
}

static int parse_args(int argc, char **argv, struct train_args *a) {
    static const struct option longopts[] = {
        {"config", required_argument, 0, 'c'},
        {"data", required_argument, 0, 'd'},
        {"run-dir", required_argument, 0, 'r'},
        {"device", required_argument, 0, 'D'},
        {"init-from", required_argument, 0, 'i'},
        {"max-steps", required_argument, 0, 'm'},
        {"log-ranks", no_argument, 0, 'l'},
        {"debug-signal-at", required_argument, 0, 'S'},
        {"debug-pause-checkpoint", required_argument, 0, 'P'},
        {"accept-changes", no_argument, 0, 'A'},
        {"fresh-start", no_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->device = "cpu";
    a->max_steps = -1;
    a->signal_at_step = a->pause_ckpt_step = -1;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->config = optarg;
            break;
        case 'd':
            a->data = optarg;
            break;
        case 'r':
            a->run_dir = optarg;
            break;
        case 'D':
            a->device = optarg;
            break;
        case 'i':
            a->init_from = optarg;
            break;
        case 'm':
            if (xlmc_parse_long(optarg, 0, LONG_MAX, &a->max_steps)) {
                xlmc_error("--max-steps %s: not an integer from 0 to %ld", optarg, LONG_MAX);
                return 2;
            }
            break;
        case 'l':
            a->log_ranks = 1;
            break;
        case 'S':
        case 'P': {
            long *dst = opt == 'S' ? &a->signal_at_step : &a->pause_ckpt_step;
            if (xlmc_parse_long(optarg, 0, LONG_MAX, dst)) {
                xlmc_error("--%s %s: not a non-negative integer",
                           opt == 'S' ? "debug-signal-at" : "debug-pause-checkpoint", optarg);
                return 2;
            }
            break;
        }
        case 'A':
            a->accept_changes = 1;
            break;
        case 'F':
            a->fresh_start = 1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        xlmc_error("train: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!a->data || !a->run_dir) {
        xlmc_error("train: --data and --run-dir are required (xlmc train --help)");
        return 2;
    }
    return 0;
}

/* One progress line and one metrics.jsonl object (rank 0). */
static void log_step(struct train_run *r, const struct step_stats *st, int obj, double dt,
                     long tokens_since, double flops_since) {
    const struct train_config *tc = &r->cfg.train;
    double tok_s = dt > 0 ? (double)tokens_since / dt : 0;
    double mfu =
        r->peak_flops > 0 && dt > 0 ? flops_since / dt / (r->peak_flops * r->comm->world) : 0;
    long tokens = train_run_tokens(r);
    long last = r->args.max_steps >= 0 ? r->args.max_steps : tc->max_steps;
    printf("step %6ld/%ld | loss %.4f | ppl %9.2f | lr %.3e | scale %g | gnorm %.3f | "
           "%.0f tok/s | MFU %.2f%%",
           r->t.step, last, st->loss, exp(st->loss), (double)st->lr, st->loss_scale,
           (double)st->grad_norm, tok_s, 100 * mfu);
    if (r->obj.n > 1) { /* each objective's mean since the last line; the fields above are
                         * this step's (its objective named first) */
        printf(" | step's objective %s", r->obj.s[obj].name);
        for (int k = 0; k < r->obj.n; k++) {
            if (r->obj_tokens[k] <= 0) continue;
            printf(" | %s ppl %.2f", r->obj.s[k].name, exp(r->obj_loss[k] / r->obj_tokens[k]));
            r->obj_loss[k] = r->obj_tokens[k] = 0;
        }
    }
    printf("\n");
    fflush(stdout);
    json_t *o = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "type",
                          "train", "step", (json_int_t)r->t.step, "tokens", (json_int_t)tokens,
                          "loss", st->loss, "ppl", exp(st->loss), "lr", (double)st->lr,
                          "loss_scale", (double)st->loss_scale, "grad_norm", (double)st->grad_norm,
                          "tokens_per_s", tok_s, "mfu", mfu, "skipped", (json_int_t)r->t.skipped);
    if (o) { /* predicted: the step's loss denominator (every position for CLM) */
        json_object_set_new(o, "objective", json_string(r->obj.s[obj].name));
        json_object_set_new(o, "predicted", json_integer(st->tokens));
    }
    if (o && metrics_append(r->metrics, o))
        xlmc_warn("%s/metrics.jsonl: write failed", r->args.run_dir);
}

/* Evaluate objective k on the valid split (all ranks), log on rank 0: one line and one
 * metrics.jsonl record per objective (the plain "clm" of a one-objective run as before). */
static int run_eval_one(struct train_run *r, int k) {
    struct eval_result e;
    const struct train_config *tc = &r->cfg.train;
    const char *name = r->obj.s[k].name;
    const struct objective_stream *s = &r->obj.s[k];
    int rc = s->valid_pairs ? evaluate_pairs(&r->m, s->valid_pairs, &s->obj, r->comm,
                                             tc->eval_batches, tc->micro_batch, &e)
                            : evaluate_objective(&r->m, r->valid, r->comm, &s->obj,
                                                 tc->eval_batches, tc->micro_batch, &e);
    if (rc) return -1;
    if (r->comm->rank || e.all.tokens <= 0) return 0;
    double loss = e.all.loss_sum / e.all.tokens;
    if (r->obj.n > 1)
        printf("valid step %ld | %s loss %.4f | ppl %.2f | acc %.4f", r->t.step, name, loss,
               exp(loss), e.all.correct / e.all.tokens);
    else
        printf("valid step %ld | loss %.4f | ppl %.2f | acc %.4f", r->t.step, loss, exp(loss),
               e.all.correct / e.all.tokens);
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:s}", "type", "valid", "step",
                  (json_int_t)r->t.step, "tokens", (json_int_t)train_run_tokens(r), "loss", loss,
                  "ppl", exp(loss), "acc", e.all.correct / e.all.tokens, "objective", name);
    for (int j = 0; j < r->cfg.model.n_langs && o && (s->obj.lang < 0 || s->pairs); j++) {
        if (e.lang[j].tokens <= 0) continue;
        char key[32];
        double lk = e.lang[j].loss_sum / e.lang[j].tokens;
        snprintf(key, sizeof key, "loss_%s", r->cfg.model.langs[j]);
        json_object_set_new(o, key, json_real(lk));
        snprintf(key, sizeof key, "ppl_%s", r->cfg.model.langs[j]);
        json_object_set_new(o, key, json_real(exp(lk)));
        printf(" | %s ppl %.2f", r->cfg.model.langs[j], exp(lk));
    }
    printf("\n");
    fflush(stdout);
    if (o && metrics_append(r->metrics, o))
        xlmc_warn("%s/metrics.jsonl: write failed", r->args.run_dir);
    return 0;
}

/* Every objective once (an entry listed twice is evaluated at its first place). */
static int run_eval(struct train_run *r) {
    for (int k = 0; k < r->obj.n; k++) {
        int seen = 0;
        for (int j = 0; j < k; j++)
            seen |= !strcmp(r->obj.s[j].name, r->obj.s[k].name);
        if (!seen && run_eval_one(r, k)) return -1;
    }
    return 0;
}

/* Rank 0 writes, everyone waits for it: a rank must not exit before the checkpoint exists. */
static int run_checkpoint(struct train_run *r, char *path, size_t len) {
    int rc = 0;
    /* the sharded optimizer's state is whole on every rank only after this */
    if (trainer_gather_state(&r->t)) return -1;
    if (r->comm->rank == 0) {
        struct loader_state ls[XLMC_MAX_OBJECTIVES];
        objectives_get_state(&r->obj, ls);
        rc = ckpt_save_run_states(r->args.run_dir, &r->m, &r->t, ls, r->obj.n, r->vocab_hash,
                                  r->cfg.train.keep_last, path, len);
        if (!rc) {
            printf("checkpoint %s\n", path);
            fflush(stdout);
        }
    }
    int bad = rc != 0;
    if (r->comm->allreduce_max_int(r->comm, &bad, 1) || bad) return -1;
    return 0;
}

/* The loop from t.step to max_steps. Returns 0 (done), XLMC_EXIT_REQUEUE (stopped) or -1. */
static int train_loop(struct train_run *r) {
    const struct train_config *tc = &r->cfg.train;
    struct batch *batches = xcalloc((size_t)r->accum, sizeof *batches);
    struct batch_buf *bufs = xcalloc((size_t)r->accum, sizeof *bufs);
    char ckpt[4600] = "";
    double t_log = now_seconds();
    long tokens_since = 0;
    double flops_since = 0;
    int rc = 0, stop = 0;
    long last_ckpt = r->resumed ? r->t.step : -1; /* a fresh run always ends with one */
    long max_steps = r->args.max_steps >= 0 ? r->args.max_steps : tc->max_steps;
    while (r->t.step < max_steps) {
        double t_step = now_seconds();
        watchdog_mark(r->wd, "reading the step's batches", r->t.step + 1);
        /* batch index of the run: the objective it trains and its MLM mask key */
        uint64_t b = (uint64_t)(r->t.step + r->t.skipped);
        int obj = objective_of_batch(tc, (long)b);
        int n = objectives_next_step(&r->obj, obj, &r->cfg, b, bufs, batches, r->accum);
        if (n < 0) {
            rc = -1;
            break;
        }
        struct step_stats st;
        watchdog_mark(r->wd, "forward, backward and the gradient all-reduce", r->t.step + 1);
        if (trainer_step(&r->t, batches, n, &st)) {
            rc = -1;
            break;
        }
        tokens_since += tc->batch_tokens; /* positions computed (MLM predicts fewer) */
        /* MLM and TLM run the output layer on their predicted rows only */
        flops_since += metrics_step_flops(&r->m, (double)tc->batch_tokens, (double)st.classified);
        if (!st.skipped) {
            r->obj_loss[obj] += st.loss * (double)st.tokens;
            r->obj_tokens[obj] += (double)st.tokens;
        }
        if (r->comm->rank == 0 && r->t.step == r->args.signal_at_step) raise(SIGUSR1);
        if (r->ranklog) {
            fprintf(r->ranklog, "step %ld blocks %d loss %.9g skipped %d t %.3f\n", r->t.step, n,
                    st.loss, st.skipped, now_seconds() - r->t_start);
            fflush(r->ranklog);
        }
        int boundary = !st.skipped;
        if (boundary && r->comm->rank == 0 && tc->log_every > 0 && r->t.step % tc->log_every == 0) {
            double now = now_seconds();
            log_step(r, &st, obj, now - t_log, tokens_since, flops_since);
            t_log = now;
            tokens_since = 0;
            flops_since = 0;
        }
        watchdog_mark(r->wd, "evaluation", r->t.step);
        if (boundary && r->valid && tc->eval_every > 0 && r->t.step % tc->eval_every == 0 &&
            run_eval(r)) {
            rc = -1;
            break;
        }
        stop = stop_signal != 0;
        watchdog_mark(r->wd, "the stop agreement (all-reduce)", r->t.step);
        if (r->comm->allreduce_max_int(r->comm, &stop, 1)) {
            rc = -1;
            break;
        }
        int due = boundary && tc->checkpoint_every > 0 && r->t.step % tc->checkpoint_every == 0;
        if (due || stop) {
            watchdog_mark(r->wd, "the checkpoint write", r->t.step);
            if (run_checkpoint(r, ckpt, sizeof ckpt)) {
                rc = -1;
                break;
            }
            last_ckpt = r->t.step;
        }
        watchdog_step_time(r->wd, now_seconds() - t_step);
        if (stop) break;
    }
    watchdog_mark(r->wd, "the final checkpoint", r->t.step);
    if (stop && r->t.step >= max_steps) stop = 0; /* the signal came with the last step */
    if (!rc && !stop && last_ckpt != r->t.step) rc = run_checkpoint(r, ckpt, sizeof ckpt);
    if (!rc && stop && r->comm->rank == 0)
        fprintf(stderr,
                "xlmc: stopped by %s at step %ld; checkpoint %s written; exit %d "
                "(run the same command again to resume)\n",
                stop_signal == SIGTERM ? "SIGTERM"
                : stop_signal          ? "SIGUSR1"
                                       : "another rank's signal",
                r->t.step, ckpt, XLMC_EXIT_REQUEUE);
    for (int k = 0; k < r->accum; k++)
        batch_buf_free(&bufs[k]);
    free(bufs);
    free(batches);
    if (rc) return -1;
    return stop ? XLMC_EXIT_REQUEUE : 0;
}

int cmd_train(int argc, char **argv) {
    struct train_run *r = xcalloc(1, sizeof *r);
    int rc = parse_args(argc, argv, &r->args);
    if (rc) {
        free(r);
        return rc == 1 ? 0 : 2;
    }
    /* A stop signal can come while the job is still starting (a requeued job's time limit, a
     * preemption): held until the handlers below exist, it is acted on instead of killing the
     * rank inside MPI_Init. Threads MPI starts inherit the mask, so it reaches this thread. */
    sigset_t stop_signals, old_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGUSR1);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
    int inited = 0;
    MPI_Initialized(&inited);
    /* The GPU first: a CUDA-aware MPI sets up its transport on the current device at init.
     * A failure here is reported by session_ops later. */
    if (!inited && !strcmp(r->args.device, "cuda") && session_launcher_local_rank() >= 0)
        ops_cuda(OPS_FP32, session_launcher_local_rank(), NULL, 0);
    if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        free(r);
        return xlmc_error("MPI_Init failed"), 1;
    }
    r->comm = comm_mpi_create();
    /* After MPI_Init, so these handlers are ours and not the MPI library's. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

    if (r->args.pause_ckpt_step >= 0) ckpt_set_midwrite_hook(pause_midwrite, &r->args);
    rc = train_run_setup(r);
    if (!rc) {
        char hb[4200], fired[4200];
        snprintf(hb, sizeof hb, "%s/heartbeat", r->args.run_dir);
        snprintf(fired, sizeof fired, "%s/watchdog-fired", r->args.run_dir);
        /* dev_comm: on NCCL its abort also calls ncclCommAbort before ending the job */
        r->wd = watchdog_start(r->dev_comm, r->cfg.train.watchdog_seconds, hb, fired);
        rc = train_loop(r);
        watchdog_stop(r->wd);
    }
    ckpt_set_midwrite_hook(NULL, NULL);
    int status = rc == XLMC_EXIT_REQUEUE ? XLMC_EXIT_REQUEUE : rc ? 1 : 0;
    /* A failure on some ranks only would leave the others in a collective: end the job. */
    if (status == 1 && r->comm->world > 1) {
        if (r->lock_fd >= 0) /* MPI_Abort skips train_run_free */
            run_lock_release(r->lock_fd, r->args.run_dir, r->created_run_dir, !r->setup_done);
        r->comm->abort(r->comm, 1);
    }
    train_run_free(r);
    comm_destroy(r->comm);
    free(r);
    MPI_Finalize();
    return status;
}
