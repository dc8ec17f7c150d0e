/* utf8.c — strict UTF-8 decoding (RFC 3629) and the code point buffer. */
#include "data/utf8.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void cpbuf_reserve(struct cpbuf *b, size_t cap) {
    if (cap <= b->cap) return;
    b->v = xrealloc(b->v, cap * sizeof *b->v);
    b->cap = cap;
}

void cpbuf_push_ascii(struct cpbuf *b, const char *s) {
    for (; *s; s++)
        cpbuf_push(b, (unsigned char)*s);
}

void cpbuf_free(struct cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

int utf8_decode(const char *s, size_t len, struct cpbuf *out, size_t *bad_at) {
    const unsigned char *p = (const unsigned char *)s;
    cpbuf_reserve(out, out->n + len);
    size_t start_n = out->n;
    for (size_t i = 0; i < len;) {
        uint32_t c = p[i];
        if (c < 0x80) {
            out->v[out->n++] = c;
            i++;
            continue;
        }
        size_t need;
        uint32_t min;
        if ((c & 0xE0) == 0xC0)
            need = 1, min = 0x80, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0)
            need = 2, min = 0x800, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0)
            need = 3, min = 0x10000, c &= 0x07;
        else
            goto bad;
        if (i + need >= len) goto bad; /* truncated */
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) goto bad;
            c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) goto bad;
        out->v[out->n++] = c;
        i += need + 1;
        continue;
    bad:
        out->n = start_n;
        if (bad_at) *bad_at = i;
        return -1;
    }
    return 0;
}

size_t utf8_put(char *dst, uint32_t cp) {
    unsigned char *d = (unsigned char *)dst;
    if (cp < 0x80) {
        d[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (unsigned char)(0xC0 | (cp >> 6));
        d[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (cp >> 12));
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (cp >> 18));
    d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_encode(const uint32_t *cps, size_t n, char **dst, size_t *cap) {
    if (*cap < 4 * n + 1) {
        *cap = 4 * n + 1;
        *dst = xrealloc(*dst, *cap);
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += utf8_put(*dst + len, cps[i]);
    (*dst)[len] = '\0';
    return len;
}
