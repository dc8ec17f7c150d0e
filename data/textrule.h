/* textrule.h — the one mechanism behind every normalizer and Moses step: a left-to-right
 * substitution pass with Python re.sub semantics (try a match at each position; on a match
 * emit the replacement and continue after it, else copy one code point). Each step of the
 * reference is one pass, in the reference's order, so the C reads like the Perl/Python. */
#ifndef XLMC_TEXTRULE_H
#define XLMC_TEXTRULE_H

#include "data/tok_tables.h"
#include "data/utf8.h"

/* Try to match at s[i]; on a match append the replacement to out and return the number of
 * code points consumed (> 0), else return 0 and append nothing. */
typedef size_t (*rule_fn)(const uint32_t *s, size_t n, size_t i, struct cpbuf *out);

/* A pass from *text into *tmp, then swap, so *text holds the result. */
static inline void rule_pass(struct cpbuf *text, struct cpbuf *tmp, rule_fn match) {
    tmp->n = 0;
    cpbuf_reserve(tmp, text->n + 16);
    for (size_t i = 0; i < text->n;) {
        size_t m = match(text->v, text->n, i, tmp);
        if (m) {
            i += m;
        } else {
            cpbuf_push(tmp, text->v[i]);
            i++;
        }
    }
    struct cpbuf t = *text;
    *text = *tmp;
    *tmp = t;
}

/* rule_pass, skipped when the code point every match of the rule contains is absent (most
 * rules need one rare character; scanning for it is much cheaper than a pass). */
static inline void rule_pass_if(struct cpbuf *text, struct cpbuf *tmp, rule_fn match,
                                uint32_t needed) {
    for (size_t i = 0; i < text->n; i++)
        if (text->v[i] == needed) {
            rule_pass(text, tmp, match);
            return;
        }
}

/* Replace every occurrence of `pat` (np code points) by the ASCII string `rep`. */
static inline void rule_literal(struct cpbuf *text, struct cpbuf *tmp, const uint32_t *pat,
                                size_t np, const char *rep) {
    size_t i = 0;
    for (; i + np <= text->n; i++)
        if (text->v[i] == pat[0]) break;
    if (i + np > text->n) return; /* first code point absent: nothing to do */
    tmp->n = 0;
    cpbuf_reserve(tmp, text->n + 16);
    for (size_t k = 0; k < i; k++)
        tmp->v[tmp->n++] = text->v[k];
    while (i < text->n) {
        size_t k = 0;
        if (i + np <= text->n)
            while (k < np && text->v[i + k] == pat[k])
                k++;
        if (k == np) {
            cpbuf_push_ascii(tmp, rep);
            i += np;
        } else {
            cpbuf_push(tmp, text->v[i++]);
        }
    }
    struct cpbuf t = *text;
    *text = *tmp;
    *tmp = t;
}

static inline int cp_is(uint32_t cp, uint16_t flag) {
    return (tok_uflags(cp) & flag) != 0;
}

/* Python str.strip(): drop leading and trailing str.isspace() code points. */
static inline void rule_strip(struct cpbuf *text) {
    size_t a = 0, b = text->n;
    while (a < b && cp_is(text->v[a], U_ISSPACE))
        a++;
    while (b > a && cp_is(text->v[b - 1], U_ISSPACE))
        b--;
    if (a)
        for (size_t k = a; k < b; k++)
            text->v[k - a] = text->v[k];
    text->n = b - a;
}

#endif
