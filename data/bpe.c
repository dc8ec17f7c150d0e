/* bpe.c — applying fastBPE codes (same result as fastBPE applybpe without a vocabulary
 * filter, and as Hugging Face's XLMTokenizer.bpe). */
#include "data/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

int32_t bpe_symbol(struct bpe *b, const char *s, size_t len) {
    int64_t id = strmap_get(&b->sym_id, s, len);
    if (id >= 0) return (int32_t)id;
    if (b->n_sym == b->cap_sym) {
        b->cap_sym = b->cap_sym ? 2 * b->cap_sym : 1024;
        b->sym = xrealloc(b->sym, b->cap_sym * sizeof *b->sym);
    }
    char *copy = xmalloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    b->sym[b->n_sym] = copy;
    strmap_put(&b->sym_id, copy, len, (int64_t)b->n_sym);
    return (int32_t)b->n_sym++;
}

int bpe_add_merge(struct bpe *b, const char *a, const char *bb) {
    size_t la = strlen(a), lb = strlen(bb);
    uint32_t ia = (uint32_t)bpe_symbol(b, a, la), ib = (uint32_t)bpe_symbol(b, bb, lb);
    uint64_t key = (uint64_t)ia << 32 | ib, old;
    if (u64map_get(&b->merge, key, &old)) return -1;
    char *joined = xmalloc(la + lb + 1);
    memcpy(joined, a, la);
    memcpy(joined + la, bb, lb + 1);
    uint32_t ij = (uint32_t)bpe_symbol(b, joined, la + lb);
    free(joined);
    u64map_put(&b->merge, key, (uint64_t)b->n_merges << 32 | ij);
    if (b->n_merges == b->cap_merges) {
        b->cap_merges = b->cap_merges ? 2 * b->cap_merges : 1024;
        b->pairs = xrealloc(b->pairs, b->cap_merges * sizeof *b->pairs);
    }
    b->pairs[b->n_merges][0] = ia;
    b->pairs[b->n_merges][1] = ib;
    b->n_merges++;
    return 0;
}

void bpe_free(struct bpe *b) {
    for (size_t i = 0; i < b->n_sym; i++)
        free(b->sym[i]);
    free(b->sym);
    free(b->pairs);
    strmap_free(&b->sym_id);
    u64map_free(&b->merge);
    memset(b, 0, sizeof *b);
}

static size_t utf8_char_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

#define NO_RANK UINT32_MAX

/* Rank of merge (l, r), NO_RANK if there is none; *merged receives the merged symbol. */
static uint32_t pair_rank(const struct bpe *b, int32_t l, int32_t r, int32_t *merged) {
    uint64_t v;
    if (l < 0 || r < 0 || !u64map_get(&b->merge, (uint64_t)(uint32_t)l << 32 | (uint32_t)r, &v))
        return NO_RANK;
    if (merged) *merged = (int32_t)(uint32_t)v;
    return (uint32_t)(v >> 32);
}

size_t bpe_apply(const struct bpe *b, const char *word, size_t len, struct bpe_piece **pieces,
                 size_t *cap) {
    if (*cap < len + 1) {
        *cap = len + 1;
        *pieces = xrealloc(*pieces, *cap * sizeof **pieces);
    }
    struct bpe_piece *p = *pieces;
    size_t n = 0;
    char last[8 + 4];
    for (size_t i = 0; i < len;) {
        size_t cl = utf8_char_len((unsigned char)word[i]);
        if (i + cl > len) cl = len - i;
        p[n].start = (uint32_t)i;
        p[n].end = (uint32_t)(i + cl);
        if (i + cl < len) {
            p[n].sym = (int32_t)strmap_get(&b->sym_id, word + i, cl);
        } else { /* the last character carries the end-of-word marker */
            memcpy(last, word + i, cl);
            memcpy(last + cl, "</w>", 4);
            p[n].sym = (int32_t)strmap_get(&b->sym_id, last, cl + 4);
        }
        n++;
        i += cl;
    }
    /* Each piece caches the rank of the pair it starts, so a long word costs one array scan
     * per merge instead of one hash lookup per pair per merge. */
    for (size_t i = 0; i < n; i++)
        p[i].rank = i + 1 < n ? pair_rank(b, p[i].sym, p[i + 1].sym, NULL) : NO_RANK;
    while (n > 1) {
        size_t at = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (p[i].rank < p[at].rank) at = i;
        if (p[at].rank == NO_RANK) break;
        int32_t bl = p[at].sym, br = p[at + 1].sym, merged = -1;
        pair_rank(b, bl, br, &merged);
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && p[i].sym == bl && p[i + 1].sym == br) {
                p[w].sym = merged;
                p[w].start = p[i].start;
                p[w].end = p[i + 1].end;
                p[w].fresh = 1;
                i += 2;
            } else {
                p[w] = p[i];
                p[w].fresh = 0;
                i++;
            }
            w++;
        }
        n = w;
        /* a cached rank stays valid unless the piece or its right neighbour is new */
        for (size_t i = 0; i < n; i++)
            if (i + 1 == n)
                p[i].rank = NO_RANK;
            else if (p[i].fresh || p[i + 1].fresh)
                p[i].rank = pair_rank(b, p[i].sym, p[i + 1].sym, NULL);
    }
    return n;
}
