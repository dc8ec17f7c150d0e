/* utf8.h — UTF-8 validation/decoding and a growable buffer of code points, the working form
 * of every text rule in data/ (rules are written over code points, bytes only at the ends). */
#ifndef XLMC_UTF8_H
#define XLMC_UTF8_H

#include <stddef.h>
#include <stdint.h>

struct cpbuf {
    uint32_t *v;
    size_t n, cap;
};

void cpbuf_reserve(struct cpbuf *b, size_t cap);
static inline void cpbuf_push(struct cpbuf *b, uint32_t cp) {
    if (b->n == b->cap) cpbuf_reserve(b, b->cap ? 2 * b->cap : 64);
    b->v[b->n++] = cp;
}
void cpbuf_push_ascii(struct cpbuf *b, const char *s);
void cpbuf_free(struct cpbuf *b);

/* Decode `len` bytes into out (appended). Returns 0, or -1 with *bad_at the byte offset of
 * the first invalid sequence (overlong, surrogate, > U+10FFFF, truncated: strict UTF-8). */
int utf8_decode(const char *s, size_t len, struct cpbuf *out, size_t *bad_at);
/* Encode one code point into dst (>= 4 bytes); returns the number of bytes. */
size_t utf8_put(char *dst, uint32_t cp);
/* Encode n code points as a NUL-terminated string into *dst (grown with xrealloc as needed,
 * *cap its size in bytes); returns the length in bytes. */
size_t utf8_encode(const uint32_t *cps, size_t n, char **dst, size_t *cap);

#endif
