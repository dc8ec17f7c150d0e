/* hashmap.h — two open-addressing hash tables for the tokenizer: strings -> int64 (the
 * dictionary, BPE symbols, word counts) and uint64 -> uint64 (BPE merges keyed by a pair of
 * symbol ids). Linear probing, power-of-two capacity, grown at 1/2 load. */
#ifndef XLMC_HASHMAP_H
#define XLMC_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap {
    uint64_t *hash;   /* 0 = empty slot (real hashes are forced non-zero) */
    const char **key; /* not owned: the caller keeps the bytes alive */
    uint32_t *klen;
    int64_t *val;
    size_t cap, n;
};

uint64_t strmap_hash(const char *k, size_t len);
/* The value stored for k, or -1. */
int64_t strmap_get(const struct strmap *m, const char *k, size_t len);
/* Insert or overwrite; returns the slot's previous value or -1. */
int64_t strmap_put(struct strmap *m, const char *k, size_t len, int64_t val);
/* Pointer to the value of k, inserting `init` first when absent. */
int64_t *strmap_slot(struct strmap *m, const char *k, size_t len, int64_t init);
void strmap_free(struct strmap *m);

struct u64map {
    uint64_t *key; /* key + 1 stored, so 0 marks an empty slot */
    uint64_t *val;
    size_t cap, n;
};
/* 1 and *val filled if present, else 0. */
int u64map_get(const struct u64map *m, uint64_t key, uint64_t *val);
void u64map_put(struct u64map *m, uint64_t key, uint64_t val);
void u64map_free(struct u64map *m);

#endif
