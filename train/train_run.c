/* train_run.c — setup of one training process (see train_run.h). */
#include "train/train_run.h"
#include "core/checkpoint.h"
#include "core/util.h"
#include "train/evaluate.h"
#include "train/metrics.h"
#include "train/run_guard.h"
#include "train/session.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef XLMC_HAVE_NCCL
#include "kernels/cuda/comm_nccl.h"
#endif

long train_run_tokens(const struct train_run *r) {
    return (r->t.step + r->t.skipped) * r->cfg.train.batch_tokens;
}

/* The model shapes two configs must share for weights to carry over. */
static int same_model_shape(const struct model_config *a, const struct model_config *b) {
    return a->vocab_size == b->vocab_size && a->dim == b->dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->ffn_dim == b->ffn_dim &&
           a->max_positions == b->max_positions && a->n_langs == b->n_langs &&
           a->use_lang_emb == b->use_lang_emb;
}

static int vocab_check(const char *ckpt, uint64_t ckpt_hash, const char *data, uint64_t data_hash) {
    if (ckpt_hash == data_hash) return 0;
    return xlmc_error("checkpoint %s was trained with vocabulary %016llx but the shards of %s "
                      "use %016llx: prepare the data with the checkpoint's codes and vocab "
                      "(xlmc prep --codes ... --vocab ...)",
                      ckpt, (unsigned long long)ckpt_hash, data, (unsigned long long)data_hash);
}

/* The config of this run: fresh (--config), resumed (the checkpoint's model, the --config's
 * training settings when given) or fine-tuning (the init checkpoint's model shape). */
static int setup_config(struct train_run *r, const char *resume, int data_vocab) {
    const struct train_args *a = &r->args;
    struct xlmc_config user, ck;
    int have_user = 0;
    if (a->config) {
        if (config_load(a->config, &user)) return -1;
        if (user.model.vocab_size == 0) user.model.vocab_size = data_vocab;
        if (user.model.vocab_size != data_vocab)
            return xlmc_error("%s: vocab_size = %d but the data in %s has %d words (set it to 0 "
                              "to take the data's)",
                              a->config, user.model.vocab_size, a->data, data_vocab);
        have_user = 1;
    }
    const char *from = resume ? resume : a->init_from;
    if (!from) {
        if (!have_user) return xlmc_error("train: --config is required for a new run");
        r->cfg = user;
        return check_lang_ids(&r->cfg.model, a->config);
    }
    uint64_t vh = 0;
    if (ckpt_read_config(from, &ck, &vh) || vocab_check(from, vh, a->data, r->vocab_hash) ||
        check_lang_ids(&ck.model, from))
        return -1;
    if (resume) {
        if (have_user && !same_model_shape(&user.model, &ck.model))
            return xlmc_error("%s describes another model than the checkpoint %s it would resume "
                              "(use a new --run-dir for a new model)",
                              a->config, resume);
        if (have_user &&
            resume_policy(&ck, &user, a->accept_changes, r->comm->rank == 0, r->changes))
            return -1;
        r->cfg = have_user ? user : ck;
        r->cfg.model = ck.model;
        /* an accepted change of these takes effect (and the next checkpoint records it) */
        if (have_user) {
            r->cfg.model.dropout = user.model.dropout;
            r->cfg.model.attention_dropout = user.model.attention_dropout;
            r->cfg.model.layer_norm_eps = user.model.layer_norm_eps;
        }
        return 0;
    }
    if (!have_user) return xlmc_error("train: --init-from needs --config for the fine-tuning run");
    r->cfg = user;
    r->cfg.model = ck.model;
    r->cfg.model.dropout = user.model.dropout;
    r->cfg.model.attention_dropout = user.model.attention_dropout;
    return 0;
}

static int setup_geometry(struct train_run *r) {
    const struct train_config *tc = &r->cfg.train;
    int world = r->comm->world;
    if (tc->batch_tokens % tc->seq_len)
        return xlmc_error("%s: batch_tokens = %ld is not a multiple of seq_len = %d", r->cfg.path,
                          tc->batch_tokens, tc->seq_len);
    long rows = tc->batch_tokens / tc->seq_len;
    if (rows % ((long)world * tc->micro_batch))
        return xlmc_error("%s: the global batch of %ld rows (batch_tokens / seq_len) does not "
                          "split over %d ranks x micro_batch %d: choose a world size or "
                          "micro_batch whose product divides it",
                          r->cfg.path, rows, world, tc->micro_batch);
    r->global_rows = (int)rows;
    r->accum = (int)(rows / ((long)world * tc->micro_batch));
    return 0;
}

static int setup_comm(struct train_run *r) {
    r->dev_comm = r->comm;
    if (strcmp(r->ops->name, "cuda") || r->comm->world == 1) return 0;
#ifdef XLMC_HAVE_NCCL
    char why[256] = "";
    r->dev_comm = comm_nccl_create(r->comm, why, sizeof why);
    if (!r->dev_comm) return xlmc_error("NCCL communicator: %s", why);
    return 0;
#else
    return xlmc_error("--device cuda with %d ranks needs NCCL, and this xlmc was built without "
                      "it",
                      r->comm->world);
#endif
}

static int setup_loaders(struct train_run *r, const struct loader_state *ls) {
    const struct train_config *tc = &r->cfg.train;
    int any_ratio = 0;
    for (int k = 0; k < r->cfg.model.n_langs; k++)
        any_ratio |= tc->lang_ratio[k] > 0;
    struct loader_opts o = {
        .dir = r->args.data,
        .split = "train",
        .seq_len = tc->seq_len,
        .block_rows = tc->micro_batch,
        .global_rows = r->global_rows,
        .rank = r->comm->rank,
        .world = r->comm->world,
        .seed = tc->seed,
        .lang_ratio = any_ratio ? tc->lang_ratio : NULL,
        .n_langs = r->cfg.model.n_langs,
        .vocab_hash = r->vocab_hash,
        .vocab_size = r->cfg.model.vocab_size,
        .shuffle = 1,
        .prefetch = 1,
    };
    if (objectives_open(&r->obj, &r->cfg, &o)) return -1;
    if (ls && objectives_set_state(&r->obj, ls)) return -1;
    if (tc->eval_every > 0) {
        r->valid = evaluate_open(&r->m, r->args.data, "valid", r->vocab_hash, tc->micro_batch);
        if (!r->valid)
            return xlmc_error("%s: no usable valid split for eval_every = %d (set "
                              "eval_every = 0 to train without evaluation)",
                              r->args.data, tc->eval_every);
        for (int k = 0; k < r->obj.n; k++) {
            struct objective_stream *s = &r->obj.s[k];
            if (s->obj.kind != OBJ_TLM) continue;
            s->valid_pairs = evaluate_open_pairs(&r->m, r->args.data, "valid", &s->obj,
                                                 r->vocab_hash, tc->micro_batch);
            if (!s->valid_pairs)
                return xlmc_error("%s: no usable valid pairs for %s with eval_every = %d (set "
                                  "eval_every = 0 to train without evaluation)",
                                  r->args.data, s->name, tc->eval_every);
        }
    }
    return 0;
}

/* After a resume, lines logged past the checkpoint's step by the interrupted process are
 * dropped so that every step appears once. */
static int metrics_truncate_after(const char *path, long step) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(f);
        return xlmc_error("cannot write %s: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *s = o ? json_object_get(o, "step") : NULL;
        int keep = !s || !json_is_integer(s) || json_integer_value(s) <= step;
        json_decref(o);
        if (keep) fputs(line, out);
    }
    free(line);
    fclose(f);
    if (fclose(out) || rename(tmp, path)) return xlmc_error("cannot rewrite %s", path);
    return 0;
}

static int setup_logs(struct train_run *r, const char *resume) {
    char path[4300];
    if (r->comm->rank == 0) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", r->args.run_dir);
        if (resume && metrics_truncate_after(path, r->t.step)) return -1;
        if (!(r->metrics = fopen(path, "a")))
            return xlmc_error("cannot open %s: %s", path, strerror(errno));
    }
    if (r->args.log_ranks) {
        snprintf(path, sizeof path, "%s/logs", r->args.run_dir);
        if (session_mkdir(path)) return -1;
        snprintf(path, sizeof path, "%s/logs/rank-%d.log", r->args.run_dir, r->comm->rank);
        if (!(r->ranklog = fopen(path, "a")))
            return xlmc_error("cannot open %s: %s", path, strerror(errno));
        fprintf(r->ranklog, "rank %d of %d, local rank %d, %d micro-batches per step\n",
                r->comm->rank, r->comm->world, r->comm->local_rank, r->accum);
    }
    return 0;
}

/* Every checkpoint of R is corrupt: training from step 0 would overwrite them one by one and
 * look like a resumed run. Only --fresh-start does it, after setting the old files aside. */
static int setup_fresh_start(const struct train_args *a) {
    char from[4200], to[4300];
    if (!a->fresh_start)
        return xlmc_error("%s/checkpoints holds checkpoints but none is valid (reported above): "
                          "refusing a silent fresh start from step 0. Restore a good "
                          "checkpoint, or pass --fresh-start to set them aside and train from "
                          "scratch",
                          a->run_dir);
    snprintf(from, sizeof from, "%s/checkpoints", a->run_dir);
    for (int i = 1; i < 1000; i++) {
        snprintf(to, sizeof to, "%s/checkpoints.invalid-%d", a->run_dir, i);
        if (access(to, F_OK)) break;
    }
    if (rename(from, to))
        return xlmc_error("cannot rename %s to %s: %s", from, to, strerror(errno));
    snprintf(from, sizeof from, "%s/metrics.jsonl", a->run_dir);
    snprintf(to + strlen(to), sizeof to - strlen(to), ".metrics.jsonl");
    if (rename(from, to) && errno != ENOENT)
        return xlmc_error("cannot rename %s to %s: %s", from, to, strerror(errno));
    fprintf(stderr, "xlmc: --fresh-start: the invalid checkpoints were moved aside; training "
                    "starts at step 0\n");
    return 0;
}

int train_run_setup(struct train_run *r) {
    struct train_args *a = &r->args;
    r->t_start = now_seconds();
    r->lock_fd = -1;
    r->changes = json_array();
    int data_vocab = 0;
    if (session_data_vocab(a->data, &data_vocab, &r->vocab_hash)) return -1;

    /* Rank 0 locks the run directory, picks the checkpoint (and reports bad ones once); the
     * others follow. */
    char resume[4096] = "";
    if (r->comm->rank == 0) {
        if ((r->lock_fd = run_lock_acquire(a->run_dir, &r->created_run_dir)) < 0) return -1;
        int found = ckpt_find_latest(a->run_dir, resume, sizeof resume);
        if (found < 0) return -1;
        if (found == 2 && setup_fresh_start(a)) return -1;
        if (found) resume[0] = 0;
    }
    if (r->comm->broadcast(r->comm, resume, sizeof resume, 0)) return -1;
    r->resumed = resume[0] != 0;

    if (setup_config(r, r->resumed ? resume : NULL, data_vocab)) return -1;
    if (setup_geometry(r)) return -1;
    if (!(r->ops = session_ops(a->device, r->cfg.train.precision, r->comm->local_rank))) return -1;
    if (setup_comm(r)) return -1;
    if (model_create(&r->m, &r->cfg, r->ops)) return -1;
    r->have_model = 1;
    if (model_init_weights(&r->m, r->cfg.train.seed)) return -1;
    if (trainer_init(&r->t, &r->m, r->dev_comm)) return -1;
    r->have_trainer = 1;
    if (trainer_reserve(&r->t, r->accum)) return -1;
    struct loader_state ls[XLMC_MAX_OBJECTIVES];
    int n_obj = r->cfg.train.n_objectives, n_found = 0;
    if (r->resumed && ckpt_load_states(resume, &r->m, &r->t, ls, n_obj, &n_found)) return -1;
    if (r->resumed && n_found != n_obj && r->comm->rank == 0)
        fprintf(stderr,
                "xlmc: resume: %s holds the data positions of %d objective stream(s), "
                "[train] objectives lists %d: streams are matched by their place in the list%s\n",
                resume, n_found, n_obj, n_found < n_obj ? ", the new ones start afresh" : "");
    if (!r->resumed && a->init_from && ckpt_load(a->init_from, &r->m, NULL, NULL)) return -1;
    if (setup_loaders(r, r->resumed ? ls : NULL)) return -1;
    if (r->comm->barrier(r->comm)) return -1; /* R exists before the ranks open R/logs */
    if (setup_logs(r, r->resumed ? resume : NULL)) return -1;

    if (r->comm->rank == 0) {
        const char *src = "";
        r->peak_flops = metrics_peak_flops(r->ops, r->comm->local_rank, &src);
        printf("xlmc train: %d rank(s) on %s (%s), %zu parameters, global batch %d rows x %d "
               "tokens = %d micro-batches of %d rows per rank\n",
               r->comm->world, r->ops->name,
               r->cfg.train.precision == PRECISION_FP16 ? "fp16" : "fp32", r->m.num_weights,
               r->global_rows, r->cfg.train.seq_len, r->accum, r->cfg.train.micro_batch);
        if (r->resumed)
            printf("resuming from %s at step %ld%s\n", resume, r->t.step,
                   a->init_from ? " (the run directory has checkpoints: --init-from ignored)" : "");
        else if (a->init_from)
            printf("fine-tuning from the weights of %s\n", a->init_from);
        int masked = 0;
        for (int i = 0; i < r->cfg.train.n_objectives; i++)
            masked |= r->cfg.train.objectives[i].kind != OBJ_CLM;
        printf("MFU against %.3g TFLOP/s per rank (%s)%s\n", r->peak_flops / 1e12, src,
               masked ? "; MLM and TLM steps count the output layer on their predicted "
                        "positions only"
                      : "");
        if (r->m.grad_buffers > 1)
            printf("gradient buffers: %d (%.0f MB each), the accumulator read and written once "
                   "per %d micro-batch%s (train.grad_buffers)\n",
                   r->m.grad_buffers, (double)r->m.grad_stride / 1e6, r->m.grad_buffers,
                   r->m.grad_buffers > 1 ? "es" : "");
        if (r->t.shard_lo)
            printf("optimizer sharded over %d ranks (train.shard_optimizer): this rank updates "
                   "%zu of %zu parameters; the updated weights %s%s\n",
                   r->comm->world, r->t.shard_lo[1] - r->t.shard_lo[0], r->m.num_params,
                   r->m.weights_wait ? "arrive layer by layer during the next forward"
                                     : "are gathered after the update",
                   r->t.rank_weight && r->ops->precision == OPS_FP16 && r->accum == 1 &&
                           r->cfg.train.overlap_allreduce && r->t.comm->gather_to_owner_start
                       ? "; the fp16 gradients go to their owners, who add them in fp32"
                       : "");
        if (r->ops->graph_begin)
            printf("CUDA graphs: %s\n",
                   r->cfg.train.cuda_graphs
                       ? "on: each CLM micro-batch replays its recorded kernels in one graph per "
                         "layer (train.cuda_graphs = false launches them one by one)"
                       : "off (train.cuda_graphs = false)");
        fflush(stdout);
        json_t *o = json_pack("{s:s, s:i, s:s, s:I, s:s, s:f, s:I}", "type", "start", "world",
                              r->comm->world, "device", r->ops->name, "num_params",
                              (json_int_t)r->m.num_weights, "resumed_from", resume, "peak_flops",
                              r->peak_flops, "start_step", (json_int_t)r->t.step);
        if (o && json_array_size(r->changes))
            json_object_set(o, "changes", r->changes); /* what --config changed on resume */
        if (o) metrics_append(r->metrics, o);
    }
    r->setup_done = 1;
    return 0;
}

void train_run_free(struct train_run *r) {
    objectives_close(&r->obj);
    if (r->valid) loader_close(r->valid);
    if (r->have_trainer) trainer_free(&r->t);
    if (r->have_model) model_destroy(&r->m);
#ifdef XLMC_HAVE_NCCL
    if (r->dev_comm && r->dev_comm != r->comm) comm_nccl_destroy(r->dev_comm);
#endif
    if (r->metrics) fclose(r->metrics);
    if (r->ranklog) fclose(r->ranklog);
    json_decref(r->changes);
    /* the lock goes last: nothing of this run writes to R after it */
    if (r->lock_fd >= 0)
        run_lock_release(r->lock_fd, r->args.run_dir, r->created_run_dir, !r->setup_done);
}
