/* tok_tables.h — character classes and nonbreaking prefixes of XLM's text pipeline, generated
 * from the reference (sacremoses + Python re + unicodedata) by data/gen_tok_tables.py. */
#ifndef XLMC_TOK_TABLES_H
#define XLMC_TOK_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* One bit per class a Moses/normalizer rule tests; names say which rule uses it. */
enum {
    U_PAD = 1 << 0,       /* padded with spaces: not IsAlnum, \s, . ' ` , - */
    U_N = 1 << 1,         /* IsN */
    U_ALPHA = 1 << 2,     /* IsAlpha as a regex class */
    U_ALPHA_N = 1 << 3,   /* IsAlpha or IsN */
    U_LOWER_SET = 1 << 4, /* IsLower as a set (nonbreaking prefix rule) */
    U_ALPHA_SET = 1 << 5, /* IsAlpha as a set (nonbreaking prefix rule) */
    U_RE_SPACE = 1 << 6,  /* Python re \s */
    U_RE_DIGIT = 1 << 7,  /* Python re \d */
    U_CTRL = 1 << 8,      /* general category C* (removed as non-printing) */
    U_ISSPACE = 1 << 9,   /* str.isspace: what split()/strip() cut at */
};

struct tok_range {
    uint32_t first, last;
    uint16_t flags;
};

extern const uint16_t tok_ascii_flags[128];
extern const struct tok_range tok_ranges[];
extern const size_t tok_num_ranges;

/* Flags of one code point (ASCII by table, the rest by binary search over ranges). */
static inline uint16_t tok_uflags(uint32_t cp) {
    if (cp < 128) return tok_ascii_flags[cp];
    size_t lo = 0, hi = tok_num_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp > tok_ranges[mid].last)
            lo = mid + 1;
        else if (cp < tok_ranges[mid].first)
            hi = mid;
        else
            return tok_ranges[mid].flags;
    }
    return 0;
}

/* Moses nonbreaking prefixes of one language, sorted by strcmp. */
struct tok_prefixes {
    const char *const *plain; /* a word that does not end a sentence before "." */
    size_t n_plain;
    const char *const *numeric; /* only before a number */
    size_t n_numeric;
};
extern const struct tok_prefixes tok_prefixes_en, tok_prefixes_de;

#endif
