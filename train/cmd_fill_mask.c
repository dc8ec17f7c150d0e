/* cmd_fill_mask.c — `xlmc fill-mask`: the words a masked LM (MLM/TLM) predicts for the masked
 * positions of a text.
 *
 * The text is tokenized like training text, each `<mask>` becoming one position holding the
 * mask word (XLM's <special1>), and framed by </s> as sentences are in XLM's streams; one
 * bidirectional forward pass gives, per mask, the softmax over the vocabulary, of which the
 * top-k words (specials left out) are printed with their probabilities. */
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

#define FILL_MASK_MARK "<mask>"

static void usage(FILE *f) {
    fprintf(f, "usage: xlmc fill-mask --ckpt CKPT --lang L [--top-k K]\n"
               "                      (--data DIR | --codes FILE --vocab FILE) [--device D]\n"
               "                      [TEXT...]\n"
               "\n"
               "Prints the K (default 5) most probable words, with their probabilities, for\n"
               "every " FILL_MASK_MARK " in TEXT (the arguments joined by spaces, or else each\n"
               "line of stdin), as the masked LM in CKPT predicts them in language L. Each\n"
               "mask stands for one BPE token. The codes and vocab come from DIR/codes and\n"
               "DIR/vocab or the given files, and must be the checkpoint's dictionary.\n");
}

struct cand {
    double p;
    int id;
};

static int cand_desc(const void *a, const void *b) {
    double x = ((const struct cand *)a)->p, y = ((const struct cand *)b)->p;
    if (x != y) return x < y ? 1 : -1;
    return ((const struct cand *)a)->id - ((const struct cand *)b)->id;
}

/* ids := </s> text </s>, each FILL_MASK_MARK one XLMC_MASK_INDEX; 0 or -1 (message printed) */
static int encode_masked(const struct tokenizer *tok, const char *lang, const char *text,
                         struct id_buf *ids, int *masks) {
    char why[256] = "";
    *masks = 0;
    id_buf_push(ids, TOK_EOS);
    for (const char *p = text;;) {
        const char *m = strstr(p, FILL_MASK_MARK);
        size_t len = m ? (size_t)(m - p) : strlen(p);
        if (tokenizer_encode(tok, lang, p, len, ids, why, sizeof why))
            return xlmc_error("fill-mask: text: %s", why);
        if (!m) break;
        id_buf_push(ids, XLMC_MASK_INDEX);
        ++*masks;
        p = m + strlen(FILL_MASK_MARK);
    }
    id_buf_push(ids, TOK_EOS);
    return 0;
}

/* Predictions for one text; 0, or -1 after a message. */
static int fill_one(struct model *m, const struct tokenizer *tok, const char *lang, int lang_id,
                    const char *text, int top_k) {
    struct id_buf ids = {0};
    int masks = 0, rc = -1, V = m->cfg.model.vocab_size;
    if (encode_masked(tok, lang, text, &ids, &masks)) goto out;
    if (!masks) {
        xlmc_error("fill-mask: no %s in \"%s\"", FILL_MASK_MARK, text);
        goto out;
    }
    if (ids.n > (size_t)m->cfg.model.max_positions) {
        xlmc_error("fill-mask: the text is %zu tokens, more than the model's max_positions = %d",
                   ids.n, m->cfg.model.max_positions);
        goto out;
    }
    int T = (int)ids.n, len = T;
    int32_t *langs = xmalloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++)
        langs[t] = lang_id;
    struct batch b = {.B = 1, .T = T, .ids = ids.ids, .langs = langs, .lengths = &len};
    b.bidirectional = 1;
    float *logits = xmalloc((size_t)T * (size_t)V * sizeof(float));
    struct cand *c = xmalloc((size_t)V * sizeof *c);
    long count = 0;
    if (model_forward(m, &b, 0, 0, 0, logits, &count) >= 0) {
        printf("%s\n", text);
        for (int t = 0, k = 0; t < T; t++) {
            if (ids.ids[t] != XLMC_MASK_INDEX) continue;
            const float *row = logits + (size_t)t * V;
            float mx = row[0];
            for (int v = 1; v < V; v++)
                mx = row[v] > mx ? row[v] : mx;
            double z = 0;
            for (int v = 0; v < V; v++)
                z += exp((double)row[v] - mx);
            int n = 0;
            for (int v = TOK_NUM_SPECIAL; v < V; v++) /* softmax over all, words listed */
                c[n++] = (struct cand){exp((double)row[v] - mx) / z, v};
            qsort(c, (size_t)n, sizeof *c, cand_desc);
            printf("  mask %d:", ++k);
            for (int i = 0; i < top_k && i < n; i++)
                printf(" %s %.4f", tokenizer_word(tok, c[i].id), c[i].p);
            printf("\n");
        }
        rc = 0;
    }
    free(c);
    free(logits);
    free(langs);
out:
    id_buf_free(&ids);
    return rc;
}

/* A causal LM run bidirectionally still predicts masked words, if poorly: said, not refused. */
static int note_clm_only(const struct xlmc_config *cfg, const char *ckpt) {
    if (config_has_clm(cfg) && cfg->train.n_objectives == 1)
        printf("note: %s was trained with objectives = %s only: its predictions for masked "
               "words are those of a causal LM run bidirectionally\n",
               ckpt, cfg->train.objectives_text);
    return 0;
}

int cmd_fill_mask(int argc, char **argv) {
    static const struct option longopts[] = {
        {"ckpt", required_argument, 0, SESSION_OPT_CKPT},
        {"lang", required_argument, 0, SESSION_OPT_LANG},
        {"top-k", required_argument, 0, 'k'},
        {"data", required_argument, 0, SESSION_OPT_DATA},
        {"codes", required_argument, 0, SESSION_OPT_CODES},
        {"vocab", required_argument, 0, SESSION_OPT_VOCAB},
        {"device", required_argument, 0, SESSION_OPT_DEVICE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct session_args a = {.device = "cpu"};
    int top_k = 5, opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            if (xlmc_parse_int(optarg, 1, INT_MAX, &top_k)) {
                xlmc_error("--top-k %s: not a whole number >= 1", optarg);
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
    if (!a.ckpt || !a.lang || (!a.data && (!a.codes || !a.vocab))) {
        xlmc_error("fill-mask: --ckpt, --lang and --data (or --codes and --vocab) are required "
                   "(xlmc fill-mask --help)");
        return 2;
    }
    struct session_text s;
    if (session_text_open(&a, &s, note_clm_only)) return 1;
    rc = 0;
    if (optind < argc) { /* the arguments, joined */
        size_t n = 1;
        for (int i = optind; i < argc; i++)
            n += strlen(argv[i]) + 1;
        char *text = xmalloc(n);
        text[0] = 0;
        for (int i = optind; i < argc; i++) {
            if (i > optind) strcat(text, " ");
            strcat(text, argv[i]);
        }
        rc = fill_one(&s.m, s.tok, a.lang, s.lang_id, text, top_k) ? 1 : 0;
        free(text);
    } else { /* one text per line of stdin */
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
                line[--got] = 0;
            if (got) rc = fill_one(&s.m, s.tok, a.lang, s.lang_id, line, top_k) ? 1 : 0;
        }
        free(line);
    }
    session_text_close(&s);
    return rc;
}
