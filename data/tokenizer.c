/* tokenizer.c — XLM's dictionary, fastBPE/Hugging Face loading and per-line encoding with a
 * per-word BPE cache. The text rules live in normalize.c and moses.c, BPE in bpe.c. */
#include "data/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/util.h"
#include "data/bpe.h"
#include "data/moses.h"
#include "data/textrule.h"

#define CACHE_STRIPES 64
#define CACHE_MAX_PER_STRIPE 16384 /* words; about 1M cached words in all */

/* A cached word: its ids and its pieces ("hel@@ lo"), in one allocation after the struct. */
struct cached {
    uint32_t n_ids, word_len;
    int32_t *ids;
    char *pieces;
    char *word;
};

struct cache_stripe {
    pthread_mutex_t lock;
    struct strmap map; /* word -> index into entries */
    struct cached **entries;
    size_t n;
};

struct tokenizer {
    struct bpe bpe;
    char **words; /* dictionary in id order, fastBPE form ("hel@@", "lo") */
    int n_words;
    struct strmap word_id;
    int32_t *sym_vocab; /* BPE symbol -> dictionary id of that piece */
    uint64_t vocab_hash, codes_hash;
    struct cache_stripe cache[CACHE_STRIPES];
};

static const char *const SPECIALS[TOK_NUM_SPECIAL] = {
    "<s>",        "</s>",       "<pad>",      "<unk>",      "<special0>",
    "<special1>", "<special2>", "<special3>", "<special4>", "<special5>",
    "<special6>", "<special7>", "<special8>", "<special9>"};

void id_buf_push(struct id_buf *b, int32_t id) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->ids = xrealloc(b->ids, b->cap * sizeof *b->ids);
    }
    b->ids[b->n++] = id;
}

void id_buf_free(struct id_buf *b) {
    free(b->ids);
    b->ids = NULL;
    b->n = b->cap = 0;
}

static struct tokenizer *tok_new(void) {
    struct tokenizer *t = xcalloc(1, sizeof *t);
    for (int i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&t->cache[i].lock, NULL);
    return t;
}

/* Add a dictionary word; -1 if it is already there. */
static int dict_add(struct tokenizer *t, const char *w, size_t len) {
    if (strmap_get(&t->word_id, w, len) >= 0) return -1;
    if ((t->n_words & (t->n_words - 1)) == 0)
        t->words = xrealloc(t->words, (size_t)(t->n_words ? 2 * t->n_words : 1) * sizeof *t->words);
    char *copy = xmalloc(len + 1);
    memcpy(copy, w, len);
    copy[len] = '\0';
    t->words[t->n_words] = copy;
    strmap_put(&t->word_id, copy, len, t->n_words);
    t->n_words++;
    return 0;
}

/* Dictionary id of a BPE piece: "x</w>" is the word "x", any other "x" is "x@@". */
static int32_t piece_id(const struct tokenizer *t, const char *s, size_t len, int last) {
    char buf[256];
    if (len + 3 > sizeof buf) return TOK_UNK;
    memcpy(buf, s, len);
    if (!last) {
        memcpy(buf + len, "@@", 2);
        len += 2;
    }
    int64_t id = strmap_get(&t->word_id, buf, len);
    return id >= 0 ? (int32_t)id : TOK_UNK;
}

/* After loading: symbol -> id table, hashes, and the check that codes and vocab agree. */
static int tok_finish(struct tokenizer *t, const char *codes_path, const char *vocab_path) {
    struct bpe *b = &t->bpe;
    t->sym_vocab = xmalloc((b->n_sym ? b->n_sym : 1) * sizeof *t->sym_vocab);
    for (size_t i = 0; i < b->n_sym; i++) {
        size_t len = strlen(b->sym[i]);
        int last = len >= 4 && !memcmp(b->sym[i] + len - 4, "</w>", 4);
        t->sym_vocab[i] = piece_id(t, b->sym[i], last ? len - 4 : len, last);
    }
    /* fastBPE's vocab counts the pieces of the BPE-applied corpus, so each of its words is a
     * single character or the result of a merge in the codes learned with it (all 64685 for
     * xlm-ende). Words no merge can produce mean the files do not belong together. (The
     * converse does not hold: on a small corpus many merge results are always merged further
     * and never appear in the vocab.) */
    size_t orphans = 0, checked = 0;
    char buf[512];
    for (int id = TOK_NUM_SPECIAL; id < t->n_words; id++) {
        const char *w = t->words[id];
        size_t len = strlen(w);
        int final = !(len >= 2 && !memcmp(w + len - 2, "@@", 2));
        size_t core = final ? len : len - 2;
        size_t first = core ? 1 : 0; /* bytes of the first UTF-8 character */
        while (first < core && ((unsigned char)w[first] & 0xC0) == 0x80)
            first++;
        if (first == core || core + 5 > sizeof buf) continue; /* one character */
        memcpy(buf, w, core);
        if (final) memcpy(buf + core, "</w>", 4);
        checked++;
        orphans += strmap_get(&b->sym_id, buf, core + (final ? 4 : 0)) < 0;
    }
    if (orphans > checked / 100) {
        xlmc_error("%s and %s do not match: %zu of %zu vocabulary words cannot come out of "
                   "these codes (use the vocab learned together with the codes)",
                   codes_path, vocab_path, orphans, checked);
        return -1;
    }
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    for (int i = 0; i < t->n_words; i++) {
        XXH64_update(h, t->words[i], strlen(t->words[i]));
        XXH64_update(h, "\n", 1);
    }
    t->vocab_hash = XXH64_digest(h);
    XXH64_reset(h, 0);
    for (size_t r = 0; r < b->n_merges; r++) {
        const char *a = b->sym[b->pairs[r][0]], *c = b->sym[b->pairs[r][1]];
        XXH64_update(h, a, strlen(a));
        XXH64_update(h, " ", 1);
        XXH64_update(h, c, strlen(c));
        XXH64_update(h, "\n", 1);
    }
    t->codes_hash = XXH64_digest(h);
    XXH64_freeState(h);
    return 0;
}

/* Split a line at single spaces into at most `max` fields; returns the count. */
static int split_fields(char *line, char **f, int max) {
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(line, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == max) return max + 1;
        f[n++] = p;
    }
    return n;
}

static int is_count(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

struct tokenizer *tokenizer_load(const char *codes_path, const char *vocab_path) {
    FILE *fc = fopen(codes_path, "r");
    if (!fc) {
        xlmc_error("cannot open codes file %s: %s", codes_path, strerror(errno));
        return NULL;
    }
    FILE *fv = fopen(vocab_path, "r");
    if (!fv) {
        xlmc_error("cannot open vocab file %s: %s", vocab_path, strerror(errno));
        fclose(fc);
        return NULL;
    }
    struct tokenizer *t = tok_new();
    for (int i = 0; i < TOK_NUM_SPECIAL; i++)
        dict_add(t, SPECIALS[i], strlen(SPECIALS[i]));
    char *line = NULL, *f[4];
    size_t cap = 0;
    long lineno = 0;
    int ok = 1;
    while (ok && getline(&line, &cap, fv) > 0) {
        lineno++;
        if (split_fields(line, f, 2) != 2 || !is_count(f[1])) {
            xlmc_error("%s:%ld: expected \"word count\" (a fastBPE vocab file)", vocab_path,
                       lineno);
            ok = 0;
        } else if (dict_add(t, f[0], strlen(f[0]))) {
            xlmc_error("%s:%ld: word '%s' appears twice", vocab_path, lineno, f[0]);
            ok = 0;
        }
    }
    lineno = 0;
    while (ok && getline(&line, &cap, fc) > 0) {
        lineno++;
        if (split_fields(line, f, 3) != 3 || !is_count(f[2])) {
            xlmc_error("%s:%ld: expected \"a b count\" (a fastBPE codes file)", codes_path, lineno);
            ok = 0;
        } else if (bpe_add_merge(&t->bpe, f[0], f[1])) {
            xlmc_error("%s:%ld: merge '%s %s' appears twice", codes_path, lineno, f[0], f[1]);
            ok = 0;
        }
    }
    if (ok && (ferror(fc) || ferror(fv))) {
        xlmc_error("read error in %s or %s", codes_path, vocab_path);
        ok = 0;
    }
    if (ok && lineno == 0) {
        xlmc_error("codes file %s is empty", codes_path);
        ok = 0;
    }
    free(line);
    fclose(fc);
    fclose(fv);
    if (!ok || tok_finish(t, codes_path, vocab_path)) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

struct tokenizer *tokenizer_load_hf(const char *vocab_json_path, const char *merges_path) {
    json_error_t err;
    json_t *root = json_load_file(vocab_json_path, 0, &err);
    if (!root || !json_is_object(root)) {
        xlmc_error("%s:%d: not a JSON object of word -> id: %s", vocab_json_path, err.line,
                   root ? "wrong type" : err.text);
        json_decref(root);
        return NULL;
    }
    size_t n = json_object_size(root);
    const char **by_id = xcalloc(n ? n : 1, sizeof *by_id);
    const char *key;
    json_t *val;
    int ok = 1;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || (size_t)id >= n || by_id[id]) {
            xlmc_error("%s: id of '%s' is not a unique integer below %zu", vocab_json_path, key, n);
            ok = 0;
            break;
        }
        by_id[id] = key;
    }
    struct tokenizer *t = tok_new();
    for (size_t i = 0; ok && i < n; i++) {
        /* back to fastBPE's form, so hashes agree with the codes/vocab pair */
        const char *w = by_id[i];
        size_t len = strlen(w);
        char *conv = xmalloc(len + 3);
        if (i < TOK_NUM_SPECIAL) {
            memcpy(conv, w, len + 1);
        } else if (len >= 4 && !strcmp(w + len - 4, "</w>")) {
            memcpy(conv, w, len - 4);
            conv[len - 4] = '\0';
        } else {
            memcpy(conv, w, len);
            memcpy(conv + len, "@@", 3);
        }
        if (dict_add(t, conv, strlen(conv))) {
            xlmc_error("%s: '%s' maps to a word that appears twice", vocab_json_path, w);
            ok = 0;
        }
        free(conv);
    }
    free(by_id);
    json_decref(root);
    FILE *fm = ok ? fopen(merges_path, "r") : NULL;
    if (ok && !fm) {
        xlmc_error("cannot open merges file %s: %s", merges_path, strerror(errno));
        ok = 0;
    }
    char *line = NULL, *f[3];
    size_t cap = 0;
    long lineno = 0;
    while (ok && getline(&line, &cap, fm) > 0) {
        lineno++;
        if (!strncmp(line, "#version", 8)) continue;
        int nf = split_fields(line, f, 2);
        if (nf < 2) {
            xlmc_error("%s:%ld: expected \"a b\" (a merges.txt line)", merges_path, lineno);
            ok = 0;
        } else if (bpe_add_merge(&t->bpe, f[0], f[1])) {
            xlmc_error("%s:%ld: merge '%s %s' appears twice", merges_path, lineno, f[0], f[1]);
            ok = 0;
        }
    }
    free(line);
    if (fm) fclose(fm);
    if (!ok || tok_finish(t, merges_path, vocab_json_path)) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(struct tokenizer *t) {
    if (!t) return;
    for (int s = 0; s < CACHE_STRIPES; s++) {
        struct cache_stripe *c = &t->cache[s];
        for (size_t i = 0; i < c->n; i++)
            free(c->entries[i]);
        free(c->entries);
        strmap_free(&c->map);
        pthread_mutex_destroy(&c->lock);
    }
    for (int i = 0; i < t->n_words; i++)
        free(t->words[i]);
    free(t->words);
    strmap_free(&t->word_id);
    free(t->sym_vocab);
    bpe_free(&t->bpe);
    free(t);
}

int tokenizer_vocab_size(const struct tokenizer *t) {
    return t->n_words;
}
const char *tokenizer_word(const struct tokenizer *t, int id) {
    return id >= 0 && id < t->n_words ? t->words[id] : NULL;
}
int tokenizer_id(const struct tokenizer *t, const char *w) {
    int64_t id = strmap_get(&t->word_id, w, strlen(w));
    return id >= 0 ? (int)id : TOK_UNK;
}
uint64_t tokenizer_vocab_hash(const struct tokenizer *t) {
    return t->vocab_hash;
}
uint64_t tokenizer_codes_hash(const struct tokenizer *t) {
    return t->codes_hash;
}

/* BPE of one word, built fresh (the cache stores these). */
static struct cached *word_bpe(const struct tokenizer *t, const char *w, size_t len,
                               struct bpe_piece **pieces, size_t *cap) {
    size_t n = bpe_apply(&t->bpe, w, len, pieces, cap);
    size_t text = len + 3 * n + 1; /* pieces, "@@ " between them, NUL */
    struct cached *c = xmalloc(sizeof *c + n * sizeof(int32_t) + text + len + 1);
    c->n_ids = (uint32_t)n;
    c->word_len = (uint32_t)len;
    c->ids = (int32_t *)(c + 1);
    c->pieces = (char *)(c->ids + n);
    c->word = c->pieces + text;
    memcpy(c->word, w, len);
    c->word[len] = '\0';
    char *p = c->pieces;
    for (size_t i = 0; i < n; i++) {
        const struct bpe_piece *q = &(*pieces)[i];
        int last = i + 1 == n;
        c->ids[i] =
            q->sym >= 0 ? t->sym_vocab[q->sym] : piece_id(t, w + q->start, q->end - q->start, last);
        memcpy(p, w + q->start, q->end - q->start);
        p += q->end - q->start;
        if (!last) {
            memcpy(p, "@@ ", 3);
            p += 3;
        }
    }
    *p = '\0';
    return c;
}

/* Look a word up in the cache, computing and inserting it when absent. The returned entry
 * lives until tokenizer_free; `*owned` says the caller must free it (cache full). */
static const struct cached *word_lookup(const struct tokenizer *tc, const char *w, size_t len,
                                        struct bpe_piece **pieces, size_t *cap, int *owned) {
    struct tokenizer *t = (struct tokenizer *)tc; /* the cache is the only mutable part */
    struct cache_stripe *s = &t->cache[strmap_hash(w, len) % CACHE_STRIPES];
    *owned = 0;
    pthread_mutex_lock(&s->lock);
    int64_t at = strmap_get(&s->map, w, len);
    struct cached *hit = at >= 0 ? s->entries[at] : NULL;
    pthread_mutex_unlock(&s->lock);
    if (hit) return hit;
    struct cached *c = word_bpe(t, w, len, pieces, cap);
    pthread_mutex_lock(&s->lock);
    at = strmap_get(&s->map, w, len);
    if (at >= 0) { /* another thread won the race */
        hit = s->entries[at];
    } else if (s->n < CACHE_MAX_PER_STRIPE) {
        if ((s->n & (s->n - 1)) == 0)
            s->entries = xrealloc(s->entries, (s->n ? 2 * s->n : 1) * sizeof *s->entries);
        s->entries[s->n] = c;
        strmap_put(&s->map, c->word, len, (int64_t)s->n);
        s->n++;
        hit = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (hit) {
        free(c);
        return hit;
    }
    *owned = 1;
    return c;
}

/* The shared body of encode and encode_pieces: ids into `ids` and/or text into *txt. */
static int encode_line(const struct tokenizer *t, const char *lang, const char *text, size_t len,
                       struct id_buf *ids, char **txt, char *why, size_t why_len) {
    int l = text_lang_parse(lang);
    if (l < 0) {
        snprintf(why, why_len, "language '%s' has no tokenizer rules (en, de)", lang);
        return -1;
    }
    /* A line is text: a NUL means a binary file or a broken export, and C string readers
     * (xlmc prep's) would cut the line there. The same refusal everywhere. */
    const char *nul = memchr(text, 0, len);
    if (nul) {
        snprintf(why, why_len, "NUL byte at byte %zu of the line (not a text file?)",
                 (size_t)(nul - text));
        return -1;
    }
    struct cpbuf cp = {0}, tmp = {0};
    size_t bad_at = 0;
    if (moses_pipeline((enum text_lang)l, text, len, &cp, &tmp, &bad_at)) {
        snprintf(why, why_len, "invalid UTF-8 at byte %zu", bad_at);
        cpbuf_free(&cp);
        cpbuf_free(&tmp);
        return -1;
    }
    char *word = NULL;
    size_t word_cap = 0, piece_cap = 0, out_len = 0, out_cap = 0;
    struct bpe_piece *pieces = NULL;
    char *out = NULL;
    if (txt) {
        out_cap = 4 * cp.n + 16;
        out = xmalloc(out_cap);
        out[0] = '\0';
    }
    for (size_t i = 0; i < cp.n;) {
        while (i < cp.n && cp_is(cp.v[i], U_ISSPACE))
            i++;
        size_t a = i;
        while (i < cp.n && !cp_is(cp.v[i], U_ISSPACE))
            i++;
        if (i == a) break;
        size_t wl = utf8_encode(cp.v + a, i - a, &word, &word_cap);
        int owned;
        const struct cached *c = word_lookup(t, word, wl, &pieces, &piece_cap, &owned);
        if (ids)
            for (uint32_t k = 0; k < c->n_ids; k++)
                id_buf_push(ids, c->ids[k]);
        if (txt) {
            size_t pl = strlen(c->pieces);
            if (out_len + pl + 2 > out_cap) {
                out_cap = 2 * (out_len + pl + 2);
                out = xrealloc(out, out_cap);
            }
            if (out_len) out[out_len++] = ' ';
            memcpy(out + out_len, c->pieces, pl + 1);
            out_len += pl;
        }
        if (owned) free((void *)c);
    }
    free(word);
    free(pieces);
    cpbuf_free(&cp);
    cpbuf_free(&tmp);
    if (txt) *txt = out;
    return 0;
}

int tokenizer_encode(const struct tokenizer *t, const char *lang, const char *text, size_t len,
                     struct id_buf *out, char *why, size_t why_len) {
    size_t before = out->n;
    int rc = encode_line(t, lang, text, len, out, NULL, why, why_len);
    if (rc) out->n = before;
    return rc;
}

char *tokenizer_encode_pieces(const struct tokenizer *t, const char *lang, const char *text,
                              size_t len, char *why, size_t why_len) {
    char *out = NULL;
    if (encode_line(t, lang, text, len, NULL, &out, why, why_len)) return NULL;
    return out;
}

char *tokenizer_decode(const struct tokenizer *t, const char *lang, const int32_t *ids, size_t n) {
    size_t cap = 64, len = 0;
    char *s = xmalloc(cap);
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_words || (ids[i] < TOK_NUM_SPECIAL && ids[i] != TOK_UNK))
            continue;
        const char *w = t->words[ids[i]];
        size_t wl = strlen(w);
        if (len + wl + 2 > cap) {
            cap = 2 * (len + wl + 2);
            s = xrealloc(s, cap);
        }
        /* "hel@@" + "lo": a continuation joins without a space */
        if (len >= 2 && s[len - 1] == '@' && s[len - 2] == '@')
            len -= 2;
        else if (len)
            s[len++] = ' ';
        memcpy(s + len, w, wl + 1);
        len += wl;
    }
    if (len >= 2 && s[len - 1] == '@' && s[len - 2] == '@') s[len -= 2] = '\0';
    int l = text_lang_parse(lang);
    char *text = moses_detokenize(l < 0 ? TEXT_EN : (enum text_lang)l, s);
    free(s);
    return text;
}
