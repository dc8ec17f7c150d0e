/* hashmap.c — see hashmap.h. */
#include "data/hashmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/util.h"

uint64_t strmap_hash(const char *k, size_t len) {
    uint64_t h = XXH3_64bits(k, len);
    return h ? h : 1;
}

static size_t strmap_find(const struct strmap *m, const char *k, size_t len, uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (!m->hash[i]) return i;
        if (m->hash[i] == h && m->klen[i] == len && !memcmp(m->key[i], k, len)) return i;
    }
}

static void strmap_grow(struct strmap *m) {
    struct strmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->hash = xcalloc(m->cap, sizeof *m->hash);
    m->key = xmalloc(m->cap * sizeof *m->key);
    m->klen = xmalloc(m->cap * sizeof *m->klen);
    m->val = xmalloc(m->cap * sizeof *m->val);
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.hash[i]) continue;
        size_t j = strmap_find(m, old.key[i], old.klen[i], old.hash[i]);
        m->hash[j] = old.hash[i];
        m->key[j] = old.key[i];
        m->klen[j] = old.klen[i];
        m->val[j] = old.val[i];
    }
    free(old.hash);
    free(old.key);
    free(old.klen);
    free(old.val);
}

int64_t strmap_get(const struct strmap *m, const char *k, size_t len) {
    if (!m->cap) return -1;
    size_t i = strmap_find(m, k, len, strmap_hash(k, len));
    return m->hash[i] ? m->val[i] : -1;
}

int64_t *strmap_slot(struct strmap *m, const char *k, size_t len, int64_t init) {
    if (2 * (m->n + 1) > m->cap) strmap_grow(m);
    uint64_t h = strmap_hash(k, len);
    size_t i = strmap_find(m, k, len, h);
    if (!m->hash[i]) {
        m->hash[i] = h;
        m->key[i] = k;
        m->klen[i] = (uint32_t)len;
        m->val[i] = init;
        m->n++;
    }
    return &m->val[i];
}

int64_t strmap_put(struct strmap *m, const char *k, size_t len, int64_t val) {
    size_t before = m->n;
    int64_t *slot = strmap_slot(m, k, len, val);
    int64_t prev = m->n == before ? *slot : -1;
    *slot = val;
    return prev;
}

void strmap_free(struct strmap *m) {
    free(m->hash);
    free(m->key);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static uint64_t
mix64(uint64_t x) { /* splitmix64 finalizer: pair keys are small integers, spread them */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t u64map_find(const struct u64map *m, uint64_t key) {
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask)
        if (!m->key[i] || m->key[i] == key + 1) return i;
}

int u64map_get(const struct u64map *m, uint64_t key, uint64_t *val) {
    if (!m->cap) return 0;
    size_t i = u64map_find(m, key);
    if (!m->key[i]) return 0;
    *val = m->val[i];
    return 1;
}

void u64map_put(struct u64map *m, uint64_t key, uint64_t val) {
    if (2 * (m->n + 1) > m->cap) {
        struct u64map old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->key = xcalloc(m->cap, sizeof *m->key);
        m->val = xmalloc(m->cap * sizeof *m->val);
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.key[i]) continue;
            size_t j = u64map_find(m, old.key[i] - 1);
            m->key[j] = old.key[i];
            m->val[j] = old.val[i];
        }
        free(old.key);
        free(old.val);
    }
    size_t i = u64map_find(m, key);
    if (!m->key[i]) m->n++;
    m->key[i] = key + 1;
    m->val[i] = val;
}

void u64map_free(struct u64map *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}
