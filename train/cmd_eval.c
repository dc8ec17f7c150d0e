/* cmd_eval.c — `xlmc eval`: per-language loss, perplexity and next-token accuracy of a
 * checkpoint over the windows of a split (one process; see train/evaluate.h). */
#include "train/commands.h"

#include "core/checkpoint.h"
#include "core/comm.h"
#include "core/util.h"
#include "train/evaluate.h"
#include "train/objective.h"
#include "train/run_guard.h"
#include "train/session.h"
#include "train/session_text.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: xlmc eval --ckpt CKPT --data DIR [--split valid|test] [--windows N]\n"
               "                 [--batch B] [--device cpu|cuda]\n"
               "\n"
               "Loss (nats per token), perplexity exp(mean token loss) and next-token accuracy\n"
               "per language over the split's windows 0..N-1 in stream order (N 0 = all,\n"
               "the default), B windows per forward pass (default 8). A checkpoint trained\n"
               "on other objectives than plain clm gets one more row per [train] objectives\n"
               "entry (clm:L, mlm, mlm:L, tlm:L1-L2): MLM and TLM score the masked positions\n"
               "only, masked with a fixed key (the same positions at every evaluation); for\n"
               "tlm, N counts pairs of the split's pair shards.\n");
}

static void print_row(const char *name, const struct eval_lang *e) {
    double loss = e->tokens > 0 ? e->loss_sum / e->tokens : NAN;
    printf("%-4s windows %6ld tokens %9.0f loss %.9f ppl %.6f acc %.6f\n", name, e->windows,
           e->tokens, loss, exp(loss), e->tokens > 0 ? e->correct / e->tokens : NAN);
}

/* A run of other objectives than the plain "clm" also gets one row per objective of its
 * [train] objectives (MLM and TLM masked with the fixed evaluation key, train/evaluate.h). */
static int eval_objectives(struct model *m, struct loader *l, struct comm *c, const char *data,
                           const char *split, uint64_t hash, long windows, int B) {
    const struct train_config *tc = &m->cfg.train;
    if (tc->n_objectives == 1 && tc->objectives[0].kind == OBJ_CLM && tc->objectives[0].lang < 0)
        return 0;
    for (int k = 0; k < tc->n_objectives; k++) {
        const struct objective *o = &tc->objectives[k];
        int seen = 0;
        for (int j = 0; j < k; j++)
            seen |= !memcmp(&tc->objectives[j], o, sizeof *o);
        if (seen) continue;
        char name[32];
        objective_name(o, &m->cfg.model, name, sizeof name);
        struct eval_result e;
        int rc;
        if (o->kind == OBJ_TLM) {
            struct pairs *p = evaluate_open_pairs(m, data, split, o, hash, B);
            if (!p) return xlmc_error("%s: no %s pairs to evaluate %s on", data, split, name);
            rc = evaluate_pairs(m, p, o, c, windows, B, &e);
            pairs_close(p);
        } else {
            rc = evaluate_objective(m, l, c, o, windows, B, &e);
        }
        if (rc) return -1;
        print_row(name, &e.all);
    }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    static const struct option longopts[] = {
        {"ckpt", required_argument, 0, SESSION_OPT_CKPT},
        {"data", required_argument, 0, SESSION_OPT_DATA},
        {"split", required_argument, 0, 's'},
        {"windows", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},
        {"device", required_argument, 0, SESSION_OPT_DEVICE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct session_args a = {.device = "cpu"};
    const char *split = "valid";
    long windows = 0;
    int B = 8, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            split = optarg;
            break;
        case 'n':
            if (xlmc_parse_long(optarg, 0, LONG_MAX, &windows)) {
                xlmc_error("--windows %s: not a whole number >= 0 (0: all)", optarg);
                return 2;
            }
            break;
        case 'b':
            if (xlmc_parse_int(optarg, 1, INT_MAX, &B)) {
                xlmc_error("--batch %s: not a whole number >= 1", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (session_take_opt(&a, opt, optarg)) break;
            usage(stderr);
            return 2;
        }
    }
    const char *ckpt = a.ckpt, *data = a.data, *device = a.device;
    if (!ckpt || !data) {
        xlmc_error("eval: --ckpt and --data are required (xlmc eval --help)");
        return 2;
    }
    if (strcmp(split, "valid") && strcmp(split, "test") && strcmp(split, "train")) {
        xlmc_error("--split %s: expected valid, test or train", split);
        return 2;
    }
    if (B < 1 || windows < 0) {
        xlmc_error("eval: --batch must be >= 1 and --windows >= 0");
        return 2;
    }
    int data_vocab = 0;
    uint64_t data_hash = 0, ckpt_hash = 0;
    if (session_data_vocab(data, &data_vocab, &data_hash)) return 1;
    struct xlmc_config cfg;
    if (ckpt_read_config(ckpt, &cfg, &ckpt_hash) || check_lang_ids(&cfg.model, ckpt)) return 1;
    if (ckpt_hash != data_hash) {
        xlmc_error("checkpoint %s was trained with vocabulary %016llx but %s uses %016llx", ckpt,
                   (unsigned long long)ckpt_hash, data, (unsigned long long)data_hash);
        return 1;
    }
    const struct ops *ops = session_ops(device, cfg.train.precision, 0);
    if (!ops) return 1;
    struct model m;
    if (session_model_from_ckpt(ckpt, ops, &m, NULL)) return 1;
    struct loader *l = evaluate_open(&m, data, split, data_hash, B);
    if (!l) {
        model_destroy(&m);
        return 1;
    }
    struct comm *c = comm_local_create();
    struct eval_result e;
    int rc = evaluate(&m, l, c, windows, B, &e);
    if (!rc) {
        printf("xlmc eval %s on %s/%s (seq_len %d)\n", ckpt, data, split, m.cfg.train.seq_len);
        for (int k = 0; k < m.cfg.model.n_langs; k++)
            if (e.lang[k].windows > 0) print_row(m.cfg.model.langs[k], &e.lang[k]);
        print_row("all", &e.all);
        if (e.all.tokens <= 0) rc = xlmc_error("%s: the %s split has no windows", data, split);
    }
    if (!rc) rc = eval_objectives(&m, l, c, data, split, data_hash, windows, B);
    comm_destroy(c);
    loader_close(l);
    model_destroy(&m);
    return rc ? 1 : 0;
}
