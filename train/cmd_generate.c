/* cmd_generate.c — `xlmc generate`: sample a continuation of a prompt from a checkpoint.
 *
 * The prompt is tokenized like training text and preceded by </s>, which starts every
 * sentence in XLM's streams; sampling stops at the next </s> or after --tokens tokens. Each
 * token re-runs the forward pass over the last max_positions tokens (no KV cache: the models
 * this serves on a CPU are small). */
#include "train/commands.h"

#include "core/util.h"
#include "data/tokenizer.h"
#include "train/session_text.h"

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

/* A masked LM has never learnt to continue a text: refused before its weights are read. */
static int require_clm(const struct xlmc_config *cfg, const char *ckpt) {
    if (config_has_clm(cfg)) return 0;
    return xlmc_error("%s was trained with objectives = %s, no clm: a masked language model "
                      "cannot generate text (xlmc fill-mask predicts its masked words)",
                      ckpt, cfg->train.objectives_text);
}

int cmd_generate(int argc, char **argv) {
    static const struct option longopts[] = {
        {"ckpt", required_argument, 0, SESSION_OPT_CKPT},
        {"lang", required_argument, 0, SESSION_OPT_LANG},
        {"prompt", required_argument, 0, 'p'},
        {"tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 's'},
        {"data", required_argument, 0, SESSION_OPT_DATA},
        {"codes", required_argument, 0, SESSION_OPT_CODES},
        {"vocab", required_argument, 0, SESSION_OPT_VOCAB},
        {"device", required_argument, 0, SESSION_OPT_DEVICE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct session_args a = {.device = "cpu"};
    const char *prompt = "";
    int ntok = 40, top_k = 40, opt;
    float temp = 1.0f;
    uint64_t seed = 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
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
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (session_take_opt(&a, opt, optarg)) break;
            usage(stderr);
            return 2;
        }
    }
    if (!a.ckpt || !a.lang || (!a.data && (!a.codes || !a.vocab)) || ntok < 0 || top_k < 0) {
        xlmc_error("generate: --ckpt, --lang and --data (or --codes and --vocab) are required "
                   "(xlmc generate --help)");
        return 2;
    }
    struct session_text s;
    if (session_text_open(&a, &s, require_clm)) return 1;
    const struct tokenizer *tok = s.tok;
    const char *lang = a.lang;
    int rc = 1;

    char why[256] = "";
    struct id_buf ids = {0};
    id_buf_push(&ids, TOK_EOS);
    if (tokenizer_encode(tok, lang, prompt, strlen(prompt), &ids, why, sizeof why)) {
        xlmc_error("--prompt: %s", why);
        goto out;
    }
    int P = s.m.cfg.model.max_positions, V = s.m.cfg.model.vocab_size;
    float *logits = xmalloc((size_t)P * (size_t)V * sizeof(float));
    int32_t *langs = xmalloc((size_t)P * sizeof(int32_t)), len32;
    struct cand *cands = xmalloc((size_t)V * sizeof *cands);
    for (int i = 0; i < P; i++)
        langs[i] = s.lang_id;
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
        if (model_forward(&s.m, &b, 0, 0, 0, logits, &count) < 0) {
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
out:
    id_buf_free(&ids);
    session_text_close(&s);
    return rc;
}
