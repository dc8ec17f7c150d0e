/* cmd_generate.c — `xlmc generate`: sample a continuation of a prompt from a checkpoint.
 *
 * The prompt is tokenized like training text and preceded by </s>, which starts every
 * sentence in XLM's streams; sampling stops at the next </s> or after --tokens tokens. Each
 * token re-runs the forward pass over the last max_positions tokens (no KV cache: the models
 * this serves on a CPU are small). */
#include "train/commands.h"

#include "core/checkpoint.h"
#include "core/util.h"
#include "data/tokenizer.h"
#include "train/run_guard.h"
#include "train/session.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: xlmc generate --ckpt CKPT --lang L --prompt TEXT [--tokens N]\n"
               "                     [--temperature T] [--top-k K] [--seed S]\n"
               "                     (--data DIR | --codes FILE --vocab FILE) [--device D]\n"
               "\n"
               "Samples up to N tokens (default 40) after TEXT in language L, at temperature\n"
               "T (default 1; 0 = greedy) among the K most likely tokens (default 40, 0 = all),\n"
               "with seed S (default 1). The codes and vocab come from DIR/codes and DIR/vocab\n"
               "or the given files, and must be the checkpoint's dictionary.\n");
}

/* splitmix64: a seeded, reproducible stream of doubles in [0,1) */
static double next_uniform(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

struct cand {
    float logit;
    int id;
};

static int cand_desc(const void *a, const void *b) {
    float x = ((const struct cand *)a)->logit, y = ((const struct cand *)b)->logit;
    if (x != y) return x < y ? 1 : -1;
    return ((const struct cand *)a)->id - ((const struct cand *)b)->id;
}

/* Draw the next id from logits (V) with temperature and top-k. Specials other than </s> are
 * never drawn: they carry no text. */
static int sample(const float *logits, int V, float temp, int top_k, uint64_t *rng,
                  struct cand *c) {
    int n = 0;
    for (int v = 0; v < V; v++)
        if (v == TOK_EOS || v >= TOK_NUM_SPECIAL) c[n++] = (struct cand){logits[v], v};
    qsort(c, (size_t)n, sizeof *c, cand_desc);
    if (temp <= 0) return c[0].id;
    if (top_k > 0 && top_k < n) n = top_k;
    double z = 0, *p = xmalloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++)
        z += p[i] = exp(((double)c[i].logit - c[0].logit) / temp);
    double u = next_uniform(rng) * z;
    int pick = n - 1;
    for (int i = 0; i < n; i++) {
        if (u < p[i]) {
            pick = i;
            break;
        }
        u -= p[i];
    }
    free(p);
    return c[pick].id;
}

int cmd_generate(int argc, char **argv) {
    static const struct option longopts[] = {
        {"ckpt", required_argument, 0, 'c'},
        {"lang", required_argument, 0, 'l'},
        {"prompt", required_argument, 0, 'p'},
        {"tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 's'},
        {"data", required_argument, 0, 'd'},
        {"codes", required_argument, 0, 'C'},
        {"vocab", required_argument, 0, 'V'},
        {"device", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *ckpt = NULL, *lang = NULL, *prompt = "", *data = NULL, *device = "cpu";
    const char *codes = NULL, *vocab = NULL;
    int ntok = 40, top_k = 40, opt;
    float temp = 1.0f;
    uint64_t seed = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            ckpt = optarg;
            break;
        case 'l':
            lang = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'n':
            if (xlmc_parse_int(optarg, 0, INT_MAX, &ntok)) {
                xlmc_error("--tokens %s: not a whole number >= 0", optarg);
                return 2;
            }
            break;
        case 't': {
            double t;
            if (xlmc_parse_double(optarg, 0, 1e6, &t)) {
                xlmc_error("--temperature %s: not a number from 0 to 1e6", optarg);
                return 2;
            }
            temp = (float)t;
            break;
        }
        case 'k':
            if (xlmc_parse_int(optarg, 0, INT_MAX, &top_k)) {
                xlmc_error("--top-k %s: not a whole number >= 0", optarg);
                return 2;
            }
            break;
        case 's':
            if (xlmc_parse_u64(optarg, &seed)) {
                xlmc_error("--seed %s: not a whole number from 0 to 2^64-1", optarg);
                return 2;
            }
            break;
        case 'd':
            data = optarg;
            break;
        case 'C':
            codes = optarg;
            break;
        case 'V':
            vocab = optarg;
            break;
        case 'D':
            device = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!ckpt || !lang || (!data && (!codes || !vocab)) || ntok < 0 || top_k < 0) {
        xlmc_error("generate: --ckpt, --lang and --data (or --codes and --vocab) are required "
                   "(xlmc generate --help)");
        return 2;
    }
    char cpath[XLMC_PATH_MAX], vpath[XLMC_PATH_MAX];
    if (!codes && xlmc_path(cpath, sizeof cpath, "%s/codes", data)) return 1;
    if (!vocab && xlmc_path(vpath, sizeof vpath, "%s/vocab", data)) return 1;
    codes = codes ? codes : cpath;
    vocab = vocab ? vocab : vpath;
    struct tokenizer *tok = tokenizer_load(codes, vocab);
    if (!tok) return 1;
    struct xlmc_config cfg;
    uint64_t ckpt_hash = 0;
    int lang_id = -1, rc = 1;
    struct model m;
    const struct ops *ops = NULL;
    if (ckpt_read_config(ckpt, &cfg, &ckpt_hash) || check_lang_ids(&cfg.model, ckpt)) goto out_tok;
    if (!config_has_clm(&cfg)) { /* a masked LM has never learnt to continue a text */
        xlmc_error("%s was trained with objectives = %s, no clm: a masked language model "
                   "cannot generate text (xlmc fill-mask predicts its masked words)",
                   ckpt, cfg.train.objectives_text);
        goto out_tok;
    }
    if (ckpt_hash != tokenizer_vocab_hash(tok)) {
        xlmc_error("%s is not the dictionary of checkpoint %s (vocabulary hash %016llx, the "
                   "checkpoint's %016llx)",
                   vocab, ckpt, (unsigned long long)tokenizer_vocab_hash(tok),
                   (unsigned long long)ckpt_hash);
        goto out_tok;
    }
    if ((lang_id = config_lang_id(&cfg.model, lang)) < 0) {
        xlmc_error("--lang %s: the checkpoint's languages are not this one", lang);
        goto out_tok;
    }
    if (!(ops = session_ops(device, cfg.train.precision, 0))) goto out_tok;
    if (session_model_from_ckpt(ckpt, ops, &m, NULL)) goto out_tok;

    char why[256] = "";
    struct id_buf ids = {0};
    id_buf_push(&ids, TOK_EOS);
    if (tokenizer_encode(tok, lang, prompt, strlen(prompt), &ids, why, sizeof why)) {
        xlmc_error("--prompt: %s", why);
        goto out_model;
    }
    int P = m.cfg.model.max_positions, V = m.cfg.model.vocab_size;
    float *logits = xmalloc((size_t)P * (size_t)V * sizeof(float));
    int32_t *langs = xmalloc((size_t)P * sizeof(int32_t)), len32;
    struct cand *cands = xmalloc((size_t)V * sizeof *cands);
    for (int i = 0; i < P; i++)
        langs[i] = lang_id;
    uint64_t rng = seed;
    int failed = 0;
    for (int i = 0; i < ntok; i++) {
        size_t T = ids.n < (size_t)P ? ids.n : (size_t)P;
        len32 = (int32_t)T;
        struct batch b = {.B = 1,
                          .T = (int)T,
                          .ids = ids.ids + ids.n - T,
                          .langs = langs,
                          .lengths = &len32,
                          .targets = NULL,
                          .row0 = 0};
        long count = 0;
        if (model_forward(&m, &b, 0, 0, 0, logits, &count) < 0) {
            failed = 1;
            break;
        }
        int next = sample(logits + (T - 1) * (size_t)V, V, temp, top_k, &rng, cands);
        if (next == TOK_EOS) break;
        id_buf_push(&ids, next);
    }
    if (!failed) {
        char *text = tokenizer_decode(tok, lang, ids.ids + 1, ids.n - 1);
        printf("%s\n", text);
        free(text);
        rc = 0;
    }
    free(cands);
    free(langs);
    free(logits);
out_model:
    id_buf_free(&ids);
    model_destroy(&m);
out_tok:
    tokenizer_free(tok);
    return rc;
}
