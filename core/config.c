/* config.c — INI configs via libinih: a table of keys, typed parsing, range checks, defaults. */
#include "core/config.h"
#include "core/util.h"

#include <ini.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

enum key_type {
    K_INT,
    K_LONG,
    K_ULONG,
    K_FLOAT,
    K_BOOL,
    K_SCHEDULE,
    K_PRECISION,
    K_LANGS,
    K_RATIO,
    K_TEXT,  /* a string of at most 255 characters, checked after the whole file is read */
    K_FLOAT3 /* three non-negative numbers that sum to 1 */
};

struct key_spec {
    const char *section, *key;
    enum key_type type;
    size_t offset; /* into struct xlmc_config */
    int required;
    double min, max;  /* inclusive range for numbers */
    const char *dflt; /* default text when not required */
};

#define M(f) offsetof(struct xlmc_config, model.f)
#define T(f) offsetof(struct xlmc_config, train.f)
static const struct key_spec KEYS[] = {
    {"model", "vocab_size", K_INT, M(vocab_size), 1, 0, 1 << 30, NULL},
    {"model", "dim", K_INT, M(dim), 1, 1, 1 << 16, NULL},
    {"model", "n_layers", K_INT, M(n_layers), 1, 1, 1024, NULL},
    {"model", "n_heads", K_INT, M(n_heads), 1, 1, 1024, NULL},
    {"model", "ffn_dim", K_INT, M(ffn_dim), 1, 1, 1 << 18, NULL},
    {"model", "max_positions", K_INT, M(max_positions), 1, 2, 1 << 20, NULL},
    {"model", "n_langs", K_INT, M(n_langs), 1, 1, XLMC_MAX_LANGS, NULL},
    {"model", "langs", K_LANGS, M(langs), 0, 0, 0, "de,en"},
    {"model", "dropout", K_FLOAT, M(dropout), 1, 0, 0.99, NULL},
    {"model", "attention_dropout", K_FLOAT, M(attention_dropout), 1, 0, 0.99, NULL},
    {"model", "layer_norm_eps", K_FLOAT, M(layer_norm_eps), 1, 1e-30, 1, NULL},
    {"model", "use_lang_emb", K_BOOL, M(use_lang_emb), 1, 0, 1, NULL},
    {"model", "pad_index", K_INT, M(pad_index), 0, 0, 1 << 30, "2"},

    {"train", "batch_tokens", K_LONG, T(batch_tokens), 1, 1, 1e12, NULL},
    {"train", "micro_batch", K_INT, T(micro_batch), 1, 1, 1 << 20, NULL},
    {"train", "seq_len", K_INT, T(seq_len), 1, 1, 1 << 20, NULL},
    {"train", "lr", K_FLOAT, T(lr), 1, 0, 10, NULL},
    {"train", "beta1", K_FLOAT, T(beta1), 0, 0, 0.999999, "0.9"},
    {"train", "beta2", K_FLOAT, T(beta2), 0, 0, 0.999999, "0.98"},
    {"train", "adam_eps", K_FLOAT, T(adam_eps), 0, 0, 1, "1e-8"},
    {"train", "weight_decay", K_FLOAT, T(weight_decay), 0, 0, 10, "0"},
    {"train", "schedule", K_SCHEDULE, T(schedule), 0, 0, 0, "inverse_sqrt"},
    {"train", "warmup", K_INT, T(warmup), 0, 0, 1 << 30, "4000"},
    {"train", "warmup_init_lr", K_FLOAT, T(warmup_init_lr), 0, 0, 10, "1e-7"},
    {"train", "min_lr", K_FLOAT, T(min_lr), 0, 0, 10, "0"},
    {"train", "max_steps", K_LONG, T(max_steps), 1, 1, 1e15, NULL},
    {"train", "clip_norm", K_FLOAT, T(clip_norm), 0, 0, 1e9, "5"},
    {"train", "precision", K_PRECISION, T(precision), 0, 0, 0, "fp32"},
    {"train", "loss_scale_init", K_FLOAT, T(loss_scale_init), 0, 1, 1e30, "65536"},
    {"train", "loss_scale_growth", K_INT, T(loss_scale_growth), 0, 1, 1 << 30, "2000"},
    {"train", "loss_scale_min", K_FLOAT, T(loss_scale_min), 0, 1e-30, 1e30, "1"},
    {"train", "seed", K_ULONG, T(seed), 0, 0, 1.8e19, "1"},
    {"train", "lang_ratio", K_RATIO, T(lang_ratio), 0, 0, 0, ""},
    {"train", "log_every", K_INT, T(log_every), 0, 1, 1 << 30, "10"},
    {"train", "eval_every", K_INT, T(eval_every), 0, 0, 1 << 30, "0"},
    {"train", "checkpoint_every", K_INT, T(checkpoint_every), 0, 0, 1 << 30, "0"},
    {"train", "keep_last", K_INT, T(keep_last), 0, 1, 1 << 20, "3"},
    {"train", "eval_batches", K_INT, T(eval_batches), 0, 0, 1 << 30, "0"},
    {"train", "overlap_allreduce", K_BOOL, T(overlap_allreduce), 0, 0, 1, "true"},
    {"train", "shard_optimizer", K_BOOL, T(shard_optimizer), 0, 0, 1, "false"},
    {"train", "cuda_graphs", K_BOOL, T(cuda_graphs), 0, 0, 1, "true"},
    {"train", "grad_buffers", K_INT, T(grad_buffers), 0, 0, 8, "0"},
    {"train", "watchdog_seconds", K_FLOAT, T(watchdog_seconds), 0, 0, 1e9, "300"},
    {"train", "objectives", K_TEXT, T(objectives_text), 0, 0, 0, "clm"},
    {"train", "word_pred", K_FLOAT, T(word_pred), 0, 1e-6, 1, "0.15"},
    {"train", "word_mask_keep_rand", K_FLOAT3, T(word_mask_keep_rand), 0, 0, 0, "0.8,0.1,0.1"},
};
#undef M
#undef T

struct parse_state {
    struct xlmc_config *cfg;
    const char *name;
    unsigned char seen[XLMC_ARRAY_LEN(KEYS)];
    char error[512];
    int line; /* counted by the handler to name lines in value errors */
};

static const struct key_spec *find_key(const char *section, const char *key) {
    for (size_t i = 0; i < XLMC_ARRAY_LEN(KEYS); i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].key, key)) return &KEYS[i];
    return NULL;
}

static int parse_number(const char *text, double *out) {
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == text || *end || errno || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

/* Returns NULL on success, else a description of what is wrong with the value. */
static const char *set_value(struct xlmc_config *cfg, const struct key_spec *k, const char *v,
                             char *why, size_t why_len) {
    char *base = (char *)cfg + k->offset;
    double d;
    switch (k->type) {
    case K_INT:
    case K_LONG:
    case K_ULONG:
    case K_FLOAT:
        if (parse_number(v, &d)) return "is not a number";
        if (k->type != K_FLOAT && d != floor(d)) return "must be a whole number";
        if (d < k->min || d > k->max) {
            snprintf(why, why_len, "is out of range [%g, %g]", k->min, k->max);
            return why;
        }
        if (k->type == K_INT)
            *(int *)base = (int)d;
        else if (k->type == K_LONG)
            *(long *)base = (long)d;
        else if (k->type == K_ULONG) {
            uint64_t u; /* d is only approximate above 2^53: the digits themselves */
            if (xlmc_parse_u64(v, &u)) return "must be a whole number written in digits";
            *(unsigned long *)base = (unsigned long)u;
        } else
            *(float *)base = (float)d;
        return NULL;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
            *(int *)base = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
            *(int *)base = 0;
        else
            return "must be true or false";
        return NULL;
    case K_SCHEDULE:
        if (!strcmp(v, "inverse_sqrt"))
            *(enum schedule_kind *)base = SCHEDULE_INVERSE_SQRT;
        else if (!strcmp(v, "cosine"))
            *(enum schedule_kind *)base = SCHEDULE_COSINE;
        else if (!strcmp(v, "constant"))
            *(enum schedule_kind *)base = SCHEDULE_CONSTANT;
        else
            return "must be inverse_sqrt, cosine or constant";
        return NULL;
    case K_PRECISION:
        if (!strcmp(v, "fp32"))
            *(enum precision_kind *)base = PRECISION_FP32;
        else if (!strcmp(v, "fp16"))
            *(enum precision_kind *)base = PRECISION_FP16;
        else
            return "must be fp32 or fp16";
        return NULL;
    case K_TEXT:
        if (strlen(v) >= sizeof cfg->train.objectives_text) return "is too long";
        snprintf(base, sizeof cfg->train.objectives_text, "%s", v);
        return NULL;
    case K_FLOAT3: {
        char buf[256], *save = NULL;
        snprintf(buf, sizeof buf, "%s", v);
        float *f = (float *)base;
        int n = 0;
        double sum = 0;
        for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
            if (n == 3 || parse_number(tok, &d) || d < 0 || d > 1)
                return "must be three numbers in [0, 1]";
            f[n++] = (float)d;
            sum += d;
        }
        if (n != 3 || fabs(sum - 1) > 1e-5) return "must be three numbers that sum to 1";
        return NULL;
    }
    case K_LANGS:
    case K_RATIO: {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", v);
        int n = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            if (n == XLMC_MAX_LANGS) return "lists more than 8 languages";
            if (k->type == K_LANGS) {
                if (strlen(tok) >= XLMC_LANG_LEN) return "has a language code that is too long";
                snprintf(cfg->model.langs[n], XLMC_LANG_LEN, "%s", tok);
            } else {
                if (parse_number(tok, &d) || d < 0) return "must be non-negative numbers";
                cfg->train.lang_ratio[n] = (float)d;
            }
            n++;
        }
        if (k->type == K_LANGS && n == 0) return "is empty";
        return NULL;
    }
    }
    return "has an unknown type";
}

static int on_key(void *user, const char *section, const char *key, const char *value) {
    struct parse_state *st = user;
    const struct key_spec *k = find_key(section, key);
    if (st->error[0]) return 0;
    if (!k) {
        snprintf(st->error, sizeof st->error, "unknown key '%s' in section [%s]", key, section);
        return 0;
    }
    if (st->seen[k - KEYS]) {
        /* last-wins would let a forgotten second [train] section override silently */
        snprintf(st->error, sizeof st->error, "[%s] %s is set a second time", section, key);
        return 0;
    }
    char why[128];
    const char *bad = set_value(st->cfg, k, value, why, sizeof why);
    if (bad) {
        snprintf(st->error, sizeof st->error, "[%s] %s = '%s' %s", section, key, value, bad);
        return 0;
    }
    st->seen[k - KEYS] = 1;
    return 1;
}

/* One "kind[:lang[-lang2]]" entry of [train] objectives into *o. NULL, or what is wrong. */
static const char *parse_objective(const struct model_config *m, char *tok, struct objective *o) {
    char *langs = strchr(tok, ':');
    if (langs) *langs++ = 0;
    o->lang = o->lang2 = -1;
    if (!strcmp(tok, "clm"))
        o->kind = OBJ_CLM;
    else if (!strcmp(tok, "mlm"))
        o->kind = OBJ_MLM;
    else if (!strcmp(tok, "tlm"))
        o->kind = OBJ_TLM;
    else
        return "names an objective other than clm, mlm or tlm";
    if (!langs)
        return o->kind == OBJ_TLM ? "has a tlm without its language pair (tlm:de-en)" : NULL;
    char *second = strchr(langs, '-');
    if (second) *second++ = 0;
    if ((o->kind == OBJ_TLM) != (second != NULL))
        return o->kind == OBJ_TLM ? "has a tlm without its language pair (tlm:de-en)"
                                  : "has a language pair on a clm or mlm objective";
    o->lang = config_lang_id(m, langs);
    if (o->lang < 0) return "names a language that is not in [model] langs";
    if (second) {
        o->lang2 = config_lang_id(m, second);
        if (o->lang2 < 0) return "names a language that is not in [model] langs";
        if (o->lang2 == o->lang) return "pairs a language with itself";
    }
    return NULL;
}

static int parse_objectives(struct xlmc_config *cfg, const char *name) {
    struct train_config *t = &cfg->train;
    char buf[sizeof t->objectives_text];
    snprintf(buf, sizeof buf, "%s", t->objectives_text);
    t->n_objectives = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        if (t->n_objectives == XLMC_MAX_OBJECTIVES)
            return xlmc_error("%s: [train] objectives lists more than %d objectives", name,
                              XLMC_MAX_OBJECTIVES);
        char entry[64];
        snprintf(entry, sizeof entry, "%s", tok);
        const char *bad = parse_objective(&cfg->model, tok, &t->objectives[t->n_objectives++]);
        if (bad) return xlmc_error("%s: [train] objectives: '%s' %s", name, entry, bad);
    }
    if (!t->n_objectives) return xlmc_error("%s: [train] objectives is empty", name);
    return 0;
}

int config_has_clm(const struct xlmc_config *cfg) {
    for (int i = 0; i < cfg->train.n_objectives; i++)
        if (cfg->train.objectives[i].kind == OBJ_CLM) return 1;
    return 0;
}

static int finish(struct parse_state *st, int rc) {
    struct xlmc_config *cfg = st->cfg;
    if (rc < 0) return xlmc_error("%s: cannot open config file", st->name);
    if (rc > 0) {
        if (!st->error[0]) snprintf(st->error, sizeof st->error, "malformed line");
        return xlmc_error("%s:%d: %s", st->name, rc, st->error);
    }
    for (size_t i = 0; i < XLMC_ARRAY_LEN(KEYS); i++) {
        if (st->seen[i]) continue;
        if (KEYS[i].required)
            return xlmc_error("%s: missing required key '%s' in section [%s]", st->name,
                              KEYS[i].key, KEYS[i].section);
        char why[128];
        const char *bad = set_value(cfg, &KEYS[i], KEYS[i].dflt, why, sizeof why);
        if (bad) return xlmc_error("internal: default of %s %s", KEYS[i].key, bad);
    }
    struct model_config *m = &cfg->model;
    if (m->dim % m->n_heads)
        return xlmc_error("%s: [model] dim = %d is not divisible by n_heads = %d", st->name, m->dim,
                          m->n_heads);
    if (m->vocab_size && m->vocab_size < 15)
        return xlmc_error("%s: [model] vocab_size = %d is below the 14 special symbols + 1",
                          st->name, m->vocab_size);
    if (m->vocab_size && m->pad_index >= m->vocab_size)
        return xlmc_error("%s: [model] pad_index = %d is not below vocab_size = %d", st->name,
                          m->pad_index, m->vocab_size);
    int nl = 0;
    while (nl < XLMC_MAX_LANGS && m->langs[nl][0])
        nl++;
    if (nl != m->n_langs)
        return xlmc_error("%s: [model] langs lists %d language(s) but n_langs = %d", st->name, nl,
                          m->n_langs);
    struct train_config *t = &cfg->train;
    if (parse_objectives(cfg, st->name)) return -1;
    if (t->seq_len + 1 > m->max_positions)
        return xlmc_error("%s: [train] seq_len = %d needs seq_len + 1 <= [model] max_positions "
                          "= %d",
                          st->name, t->seq_len, m->max_positions);
    if (t->batch_tokens % ((long)t->micro_batch * t->seq_len))
        return xlmc_error("%s: [train] batch_tokens = %ld is not a multiple of micro_batch * "
                          "seq_len = %ld",
                          st->name, t->batch_tokens, (long)t->micro_batch * t->seq_len);
    return 0;
}

static void init_state(struct parse_state *st, struct xlmc_config *cfg, const char *name) {
    memset(st, 0, sizeof *st);
    memset(cfg, 0, sizeof *cfg);
    st->cfg = cfg;
    st->name = name;
    snprintf(cfg->path, sizeof cfg->path, "%s", name);
}

/* libinih cuts lines at INI_MAX_LINE - 2 characters and parses the rest as a continuation of
 * the line: its errors would name the next line and the wrong cause. Refuse them here. */
static int check_line_lengths(const char *text, size_t len, const char *name) {
    const size_t max = INI_MAX_LINE - 2; /* characters before the newline */
    int line = 1;
    for (size_t start = 0, i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n') continue;
        if (i - start > max)
            return xlmc_error("%s:%d: the line is %zu characters long, more than the %zu a "
                              "config line may have",
                              name, line, i - start, max);
        start = i + 1;
        line++;
    }
    return 0;
}

int config_load(const char *path, struct xlmc_config *cfg) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return xlmc_error("%s: is a directory, not a config file (e.g. configs/tiny.ini)", path);
    FILE *f = fopen(path, "r");
    if (f) {
        char *text = NULL;
        size_t cap = 0;
        ssize_t n = getdelim(&text, &cap, 0, f); /* the whole file: configs have no NUL */
        fclose(f);
        int bad = n > 0 && check_line_lengths(text, (size_t)n, path);
        free(text);
        if (bad) return -1;
    }
    struct parse_state st;
    init_state(&st, cfg, path);
    return finish(&st, ini_parse(path, on_key, &st));
}

int config_parse_string(const char *text, const char *name, struct xlmc_config *cfg) {
    struct parse_state st;
    if (check_line_lengths(text, strlen(text), name)) return -1;
    init_state(&st, cfg, name);
    return finish(&st, ini_parse_string(text, on_key, &st));
}

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap = 2 * *cap + (size_t)n;
        *buf = xrealloc(*buf, *cap);
    }
}

char *config_to_string(const struct xlmc_config *cfg) {
    size_t len = 0, cap = 1024;
    char *buf = xmalloc(cap);
    buf[0] = 0;
    const char *section = "";
    for (size_t i = 0; i < XLMC_ARRAY_LEN(KEYS); i++) {
        const struct key_spec *k = &KEYS[i];
        const char *base = (const char *)cfg + k->offset;
        if (strcmp(section, k->section)) {
            append(&buf, &len, &cap, "%s[%s]\n", len ? "\n" : "", k->section);
            section = k->section;
        }
        append(&buf, &len, &cap, "%s = ", k->key);
        switch (k->type) {
        case K_INT:
            append(&buf, &len, &cap, "%d\n", *(const int *)base);
            break;
        case K_LONG:
            append(&buf, &len, &cap, "%ld\n", *(const long *)base);
            break;
        case K_ULONG:
            append(&buf, &len, &cap, "%lu\n", *(const unsigned long *)base);
            break;
        case K_FLOAT:
            append(&buf, &len, &cap, "%.9g\n", *(const float *)base);
            break;
        case K_BOOL:
            append(&buf, &len, &cap, "%s\n", *(const int *)base ? "true" : "false");
            break;
        case K_SCHEDULE: {
            static const char *names[] = {"inverse_sqrt", "cosine", "constant"};
            append(&buf, &len, &cap, "%s\n", names[*(const enum schedule_kind *)base]);
            break;
        }
        case K_PRECISION:
            append(&buf, &len, &cap, "%s\n",
                   *(const enum precision_kind *)base == PRECISION_FP16 ? "fp16" : "fp32");
            break;
        case K_LANGS:
            for (int l = 0; l < cfg->model.n_langs; l++)
                append(&buf, &len, &cap, "%s%s", l ? "," : "", cfg->model.langs[l]);
            append(&buf, &len, &cap, "\n");
            break;
        case K_TEXT:
            append(&buf, &len, &cap, "%s\n", base);
            break;
        case K_FLOAT3: {
            const float *f = (const float *)base;
            append(&buf, &len, &cap, "%.9g,%.9g,%.9g\n", f[0], f[1], f[2]);
            break;
        }
        case K_RATIO: {
            int any = 0;
            for (int l = 0; l < XLMC_MAX_LANGS; l++)
                any |= cfg->train.lang_ratio[l] != 0;
            for (int l = 0; any && l < cfg->model.n_langs; l++)
                append(&buf, &len, &cap, "%s%.9g", l ? "," : "", cfg->train.lang_ratio[l]);
            append(&buf, &len, &cap, "\n");
            break;
        }
        }
    }
    return buf;
}

int config_lang_id(const struct model_config *m, const char *code) {
    for (int l = 0; l < m->n_langs; l++)
        if (!strcmp(m->langs[l], code)) return l;
    return -1;
}
