/* bpe_learn.c — fastBPE learnbpe/getvocab (fastBPE/fastBPE.hpp), reimplemented in C. */
#include "data/bpe_learn.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* ---- libstdc++'s unordered_map iteration order ---- */

/* std::hash<std::string> on 64-bit libstdc++: _Hash_bytes (a MurmurHash2 variant), seed
 * 0xc70f6907. */
static uint64_t stl_hash(const char *buf, size_t len) {
    const uint64_t mul = (0xc6a4a793ULL << 32) + 0x5bd1e995ULL;
    uint64_t hash = 0xc70f6907ULL ^ (len * mul);
    size_t aligned = len & ~(size_t)7;
    for (size_t i = 0; i < aligned; i += 8) {
        uint64_t d;
        memcpy(&d, buf + i, 8);
        d *= mul;
        d = (d ^ (d >> 47)) * mul;
        hash ^= d;
        hash *= mul;
    }
    if (len & 7) {
        uint64_t d = 0;
        for (size_t i = len; i-- > aligned;)
            d = (d << 8) + (unsigned char)buf[i];
        hash ^= d;
        hash *= mul;
    }
    hash = (hash ^ (hash >> 47)) * mul;
    return hash ^ (hash >> 47);
}

/* The bucket counts an insert-only libstdc++ (GCC 12) unordered_map goes through:
 * _Prime_rehash_policy::_M_next_bkt(2 * previous), printed by
 * tests/data/tokenizer/make_bpe_learn_reference.sh. */
static const uint64_t STL_BUCKETS[] = {
    13ULL,        29ULL,        59ULL,         127ULL,        257ULL,       541ULL,
    1109ULL,      2357ULL,      5087ULL,       10273ULL,      20753ULL,     42043ULL,
    85229ULL,     172933ULL,    351061ULL,     712697ULL,     1447153ULL,   2938679ULL,
    5967347ULL,   12117689ULL,  24607243ULL,   49969847ULL,   101473717ULL, 206062531ULL,
    418451333ULL, 849749479ULL, 1725587117ULL, 3504151727ULL, 8589934583ULL};

void word_counts_init(struct word_counts *wc) {
    memset(wc, 0, sizeof *wc);
    wc->cap = 1024;
    wc->word = xmalloc(wc->cap * sizeof *wc->word);
    wc->len = xmalloc(wc->cap * sizeof *wc->len);
    wc->count = xmalloc(wc->cap * sizeof *wc->count);
    wc->hash = xmalloc(wc->cap * sizeof *wc->hash);
    wc->next = xmalloc(wc->cap * sizeof *wc->next);
    wc->n_nodes = 1; /* the sentinel */
    wc->next[0] = -1;
    wc->n_bkt = 1;
    wc->bucket = xmalloc(sizeof *wc->bucket);
    wc->bucket[0] = -1;
}

/* _M_rehash_aux for unique keys: relink every node into the new buckets, in list order. */
static void stl_rehash(struct word_counts *wc, uint64_t n_bkt) {
    int64_t *nb = xmalloc(n_bkt * sizeof *nb);
    for (uint64_t i = 0; i < n_bkt; i++)
        nb[i] = -1;
    int64_t p = wc->next[0];
    wc->next[0] = -1;
    uint64_t bbegin = 0;
    while (p >= 0) {
        int64_t next = wc->next[p];
        uint64_t b = wc->hash[p] % n_bkt;
        if (nb[b] < 0) {
            wc->next[p] = wc->next[0];
            wc->next[0] = p;
            nb[b] = 0;
            if (wc->next[p] >= 0) nb[bbegin] = p;
            bbegin = b;
        } else {
            wc->next[p] = wc->next[nb[b]];
            wc->next[nb[b]] = p;
        }
        p = next;
    }
    free(wc->bucket);
    wc->bucket = nb;
    wc->n_bkt = n_bkt;
}

void word_counts_add(struct word_counts *wc, const char *w, size_t len) {
    int64_t at = strmap_get(&wc->index, w, len);
    if (at >= 0) {
        wc->count[at]++;
        return;
    }
    size_t elements = wc->n_nodes - 1;
    if (elements + 1 > wc->next_resize) { /* _Prime_rehash_policy::_M_need_rehash */
        uint64_t want = elements + 1 > 11 || wc->next_resize ? elements + 1 : 11;
        if (want >= wc->n_bkt) {
            uint64_t target = want + 1 > 2 * wc->n_bkt ? want + 1 : 2 * wc->n_bkt;
            size_t k = 0;
            while (k + 1 < XLMC_ARRAY_LEN(STL_BUCKETS) && STL_BUCKETS[k] < target)
                k++;
            wc->next_resize = STL_BUCKETS[k];
            stl_rehash(wc, STL_BUCKETS[k]);
        } else {
            wc->next_resize = wc->n_bkt;
        }
    }
    if (wc->n_nodes == wc->cap) {
        wc->cap *= 2;
        wc->word = xrealloc(wc->word, wc->cap * sizeof *wc->word);
        wc->len = xrealloc(wc->len, wc->cap * sizeof *wc->len);
        wc->count = xrealloc(wc->count, wc->cap * sizeof *wc->count);
        wc->hash = xrealloc(wc->hash, wc->cap * sizeof *wc->hash);
        wc->next = xrealloc(wc->next, wc->cap * sizeof *wc->next);
    }
    int64_t node = (int64_t)wc->n_nodes++;
    char *copy = xmalloc(len + 1);
    memcpy(copy, w, len);
    copy[len] = '\0';
    wc->word[node] = copy;
    wc->len[node] = (uint32_t)len;
    wc->count[node] = 1;
    wc->hash[node] = stl_hash(w, len);
    strmap_put(&wc->index, copy, len, node);
    /* _M_insert_bucket_begin */
    uint64_t b = wc->hash[node] % wc->n_bkt;
    if (wc->bucket[b] >= 0) {
        wc->next[node] = wc->next[wc->bucket[b]];
        wc->next[wc->bucket[b]] = node;
    } else {
        wc->next[node] = wc->next[0];
        wc->next[0] = node;
        if (wc->next[node] >= 0) wc->bucket[wc->hash[wc->next[node]] % wc->n_bkt] = node;
        wc->bucket[b] = 0;
    }
}

void word_counts_add_text(struct word_counts *wc, const char *text, size_t len) {
    size_t a = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == ' ' || text[i] == '\n') {
            if (i > a) word_counts_add(wc, text + a, i - a);
            a = i + 1;
        }
    }
}

void word_counts_free(struct word_counts *wc) {
    for (size_t i = 1; i < wc->n_nodes; i++)
        free(wc->word[i]);
    free(wc->word);
    free(wc->len);
    free(wc->count);
    free(wc->hash);
    free(wc->next);
    free(wc->bucket);
    strmap_free(&wc->index);
    memset(wc, 0, sizeof *wc);
}

/* ---- learnbpe ---- */

struct learn {
    struct u64map pair_at; /* pair -> index into pairs/counts */
    uint64_t *pairs;       /* (left << 32 | right), in creation order */
    int64_t *counts;
    size_t n_pairs, cap_pairs;
    uint32_t **where; /* per pair: words that may hold it */
    size_t *n_where, *cap_where;
};

static size_t pair_index(struct learn *L, uint64_t pair) {
    uint64_t at;
    if (u64map_get(&L->pair_at, pair, &at)) return (size_t)at;
    if (L->n_pairs == L->cap_pairs) {
        L->cap_pairs = L->cap_pairs ? 2 * L->cap_pairs : 4096;
        L->pairs = xrealloc(L->pairs, L->cap_pairs * sizeof *L->pairs);
        L->counts = xrealloc(L->counts, L->cap_pairs * sizeof *L->counts);
        L->where = xrealloc(L->where, L->cap_pairs * sizeof *L->where);
        L->n_where = xrealloc(L->n_where, L->cap_pairs * sizeof *L->n_where);
        L->cap_where = xrealloc(L->cap_where, L->cap_pairs * sizeof *L->cap_where);
    }
    size_t i = L->n_pairs++;
    L->pairs[i] = pair;
    L->counts[i] = 0;
    L->where[i] = NULL;
    L->n_where[i] = L->cap_where[i] = 0;
    u64map_put(&L->pair_at, pair, i);
    return i;
}

/* Add `v` occurrences of every adjacent pair of word w (v < 0 removes them). */
static void count_pairs(struct learn *L, const uint32_t *w, size_t n, int64_t v, uint32_t wi) {
    for (size_t k = 0; k + 1 < n; k++) {
        size_t p = pair_index(L, (uint64_t)w[k] << 32 | w[k + 1]);
        L->counts[p] += v;
        if (v > 0) {
            if (L->n_where[p] == L->cap_where[p]) {
                L->cap_where[p] = L->cap_where[p] ? 2 * L->cap_where[p] : 4;
                L->where[p] = xrealloc(L->where[p], L->cap_where[p] * sizeof **L->where);
            }
            L->where[p][L->n_where[p]++] = wi;
        }
    }
}

size_t bpe_learn(const struct word_counts *wc, size_t n_merges, struct bpe *out, FILE *codes) {
    /* fastBPE's tokenize(): words in map order, characters get ids on first sight */
    struct strmap tok_id = {0};
    char **tok = NULL; /* id -> string */
    size_t n_tok = 0, cap_tok = 0, n_words = wc->n_nodes - 1;
    uint32_t **words = xmalloc((n_words ? n_words : 1) * sizeof *words);
    size_t *wlen = xmalloc((n_words ? n_words : 1) * sizeof *wlen);
    uint32_t *wcount = xmalloc((n_words ? n_words : 1) * sizeof *wcount);
    size_t wi = 0;
    char buf[8 + 4];
    for (int64_t node = wc->next[0]; node >= 0; node = wc->next[node], wi++) {
        const char *w = wc->word[node];
        size_t len = wc->len[node];
        words[wi] = xmalloc((len ? len : 1) * sizeof **words);
        wlen[wi] = 0;
        wcount[wi] = wc->count[node];
        for (size_t i = 0; i < len;) {
            size_t e = i + 1;
            while (e < len && ((unsigned char)w[e] & 0xC0) == 0x80)
                e++;
            const char *s = w + i;
            size_t sl = e - i;
            char *heap = NULL;
            if (e == len) { /* last character: + "</w>" */
                heap = sl + 4 <= sizeof buf ? buf : xmalloc(sl + 4);
                memcpy(heap, w + i, sl);
                memcpy(heap + sl, "</w>", 4);
                s = heap;
                sl += 4;
            }
            int64_t id = strmap_get(&tok_id, s, sl);
            if (id < 0) {
                if (n_tok == cap_tok) {
                    cap_tok = cap_tok ? 2 * cap_tok : 1024;
                    tok = xrealloc(tok, cap_tok * sizeof *tok);
                }
                tok[n_tok] = xmalloc(sl + 1);
                memcpy(tok[n_tok], s, sl);
                tok[n_tok][sl] = '\0';
                strmap_put(&tok_id, tok[n_tok], sl, (int64_t)n_tok);
                id = (int64_t)n_tok++;
            }
            if (heap && heap != buf) free(heap);
            words[wi][wlen[wi]++] = (uint32_t)id;
            i = e;
        }
    }
    struct learn L = {0};
    for (size_t i = 0; i < n_words; i++)
        count_pairs(&L, words[i], wlen[i], wcount[i], (uint32_t)i);
    uint32_t *seen = xcalloc(n_words ? n_words : 1, sizeof *seen); /* last merge that saw it */
    size_t learned = 0;
    for (; learned < n_merges; learned++) {
        /* find_maxp: highest count, ties to the smallest (left, right) ids */
        int64_t best_c = 0;
        size_t best = 0;
        for (size_t p = 0; p < L.n_pairs; p++)
            if (L.counts[p] > best_c ||
                (L.counts[p] == best_c && best_c > 0 && L.pairs[p] < L.pairs[best]))
                best_c = L.counts[p], best = p;
        if (best_c <= 0) break;
        uint32_t left = (uint32_t)(L.pairs[best] >> 32), right = (uint32_t)L.pairs[best];
        if (codes) fprintf(codes, "%s %s %lld\n", tok[left], tok[right], (long long)best_c);
        bpe_add_merge(out, tok[left], tok[right]);
        size_t la = strlen(tok[left]), lb = strlen(tok[right]);
        if (n_tok == cap_tok) {
            cap_tok *= 2;
            tok = xrealloc(tok, cap_tok * sizeof *tok);
        }
        tok[n_tok] = xmalloc(la + lb + 1);
        memcpy(tok[n_tok], tok[left], la);
        memcpy(tok[n_tok] + la, tok[right], lb + 1);
        uint32_t new_id = (uint32_t)n_tok++;
        /* rewrite every word holding the pair; pair counts follow (remove old, add new) */
        size_t nw = L.n_where[best];
        uint32_t *where = L.where[best];
        L.where[best] = NULL;
        L.n_where[best] = L.cap_where[best] = 0;
        for (size_t k = 0; k < nw; k++) {
            uint32_t w = where[k];
            if (seen[w] == learned + 1) continue;
            seen[w] = (uint32_t)learned + 1;
            uint32_t *s = words[w];
            size_t n = wlen[w], m = 0;
            int has = 0;
            for (size_t i = 0; i + 1 < n && !has; i++)
                has = s[i] == left && s[i + 1] == right;
            if (!has) continue;
            count_pairs(&L, s, n, -(int64_t)wcount[w], w);
            for (size_t i = 0; i < n;) {
                if (i + 1 < n && s[i] == left && s[i + 1] == right) {
                    s[m++] = new_id;
                    i += 2;
                } else {
                    s[m++] = s[i++];
                }
            }
            wlen[w] = m;
            count_pairs(&L, s, m, wcount[w], w);
        }
        free(where);
        L.counts[best] = 0;
    }
    for (size_t i = 0; i < n_words; i++)
        free(words[i]);
    for (size_t i = 0; i < n_tok; i++)
        free(tok[i]);
    for (size_t p = 0; p < L.n_pairs; p++)
        free(L.where[p]);
    free(words);
    free(wlen);
    free(wcount);
    free(tok);
    free(seen);
    free(L.pairs);
    free(L.counts);
    free(L.where);
    free(L.n_where);
    free(L.cap_where);
    u64map_free(&L.pair_at);
    strmap_free(&tok_id);
    return learned;
}

/* ---- getvocab of the BPE-applied corpus ---- */

struct piece_count {
    char *s;
    size_t len;
    uint64_t count;
};

static int piece_cmp(const void *a, const void *b) {
    const struct piece_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    size_t l = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, l);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

int bpe_write_vocab(const struct word_counts *wc, const struct bpe *codes, FILE *vocab) {
    struct strmap at = {0};
    struct piece_count *pc = NULL;
    size_t n = 0, cap = 0, pcap = 0;
    struct bpe_piece *pieces = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    for (int64_t node = wc->next[0]; node >= 0; node = wc->next[node]) {
        const char *w = wc->word[node];
        size_t np = bpe_apply(codes, w, wc->len[node], &pieces, &pcap);
        for (size_t i = 0; i < np; i++) {
            size_t len = pieces[i].end - pieces[i].start, full = len + (i + 1 < np ? 2 : 0);
            if (bufcap < full + 1) {
                bufcap = 2 * (full + 1);
                buf = xrealloc(buf, bufcap);
            }
            memcpy(buf, w + pieces[i].start, len);
            memcpy(buf + len, "@@", full - len);
            int64_t k = strmap_get(&at, buf, full);
            if (k < 0) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 1024;
                    pc = xrealloc(pc, cap * sizeof *pc);
                }
                pc[n].s = xmalloc(full + 1);
                memcpy(pc[n].s, buf, full);
                pc[n].s[full] = '\0';
                pc[n].len = full;
                pc[n].count = 0;
                strmap_put(&at, pc[n].s, full, (int64_t)n);
                k = (int64_t)n++;
            }
            pc[k].count += wc->count[node];
        }
    }
    strmap_free(&at); /* keys point into pc[], which qsort moves */
    if (n) qsort(pc, n, sizeof *pc, piece_cmp);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (fprintf(vocab, "%s %llu\n", pc[i].s, (unsigned long long)pc[i].count) < 0) rc = -1;
        free(pc[i].s);
    }
    free(pc);
    free(pieces);
    free(buf);
    return rc;
}
