/* moses.c — sacremoses' MosesTokenizer.tokenize(escape=False) step by step. Every step is
 * one substitution pass with Python re.sub semantics (data/textrule.h), in the same order as
 * the reference, because later rules see the text earlier rules produced (including the
 * literal "DOT...MULTI" markers that protect runs of dots). */
#include "data/moses.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "data/textrule.h"

static size_t rule_collapse_space(const uint32_t *s, size_t n, size_t i,
                                  struct cpbuf *out) { /* DEDUPLICATE_SPACE: "\s+" -> " " */
    if (!cp_is(s[i], U_RE_SPACE)) return 0;
    size_t k = i + 1;
    while (k < n && cp_is(s[k], U_RE_SPACE))
        k++;
    cpbuf_push(out, ' ');
    return k - i;
}

static size_t rule_ascii_junk(const uint32_t *s, size_t n, size_t i,
                              struct cpbuf *out) { /* "[\000-\037]" -> "" */
    (void)n;
    (void)out;
    return s[i] < 32 ? 1 : 0;
}

static size_t
rule_pad_not_alnum(const uint32_t *s, size_t n, size_t i,
                   struct cpbuf *out) { /* PAD_NOT_ISALNUM: "([^IsAlnum\s\.'\`\,\-])" -> " \1 " */
    (void)n;
    if (!cp_is(s[i], U_PAD)) return 0;
    cpbuf_push(out, ' ');
    cpbuf_push(out, s[i]);
    cpbuf_push(out, ' ');
    return 1;
}

static size_t rule_multidots(const uint32_t *s, size_t n, size_t i,
                             struct cpbuf *out) { /* replace_multidots: a run of k >= 2 dots -> " "
                                                     + "DOT"*k + "MULTI" (+ " " unless last) */
    if (s[i] != '.' || i + 1 >= n || s[i + 1] != '.') return 0;
    size_t k = i;
    while (k < n && s[k] == '.')
        k++;
    cpbuf_push(out, ' ');
    for (size_t j = i; j < k; j++)
        cpbuf_push_ascii(out, "DOT");
    cpbuf_push_ascii(out, "MULTI");
    if (k < n) cpbuf_push(out, ' ');
    return k - i;
}

static size_t rule_comma_1(const uint32_t *s, size_t n, size_t i,
                           struct cpbuf *out) { /* "([^IsN])[,]" -> "\1 , " */
    if (i + 1 >= n || s[i + 1] != ',' || cp_is(s[i], U_N)) return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push_ascii(out, " , ");
    return 2;
}

static size_t rule_comma_2(const uint32_t *s, size_t n, size_t i,
                           struct cpbuf *out) { /* "[,]([^IsN])" -> " , \1" */
    if (s[i] != ',' || i + 1 >= n || cp_is(s[i + 1], U_N)) return 0;
    cpbuf_push_ascii(out, " , ");
    cpbuf_push(out, s[i + 1]);
    return 2;
}

static size_t rule_comma_3(const uint32_t *s, size_t n, size_t i,
                           struct cpbuf *out) { /* "([IsN])[,]$" -> "\1 , " */
    if (i + 2 != n || s[i + 1] != ',' || !cp_is(s[i], U_N)) return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push_ascii(out, " , ");
    return 2;
}

/* English apostrophes: X ' Y where X and Y are tested against IsAlpha / IsN. */
static size_t apostrophe(const uint32_t *s, size_t i, struct cpbuf *out, int left_ok, int right_ok,
                         const char *mid) {
    if (!left_ok || !right_ok) return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push_ascii(out, mid);
    cpbuf_push(out, s[i + 2]);
    return 3;
}
#define APOS_AT(s, n, i) ((i) + 2 < (n) && (s)[(i) + 1] == '\'')
static size_t rule_en_1(const uint32_t *s, size_t n, size_t i,
                        struct cpbuf *out) { /* "([^alpha])[']([^alpha])" -> "\1 ' \2" */
    if (!APOS_AT(s, n, i)) return 0;
    return apostrophe(s, i, out, !cp_is(s[i], U_ALPHA), !cp_is(s[i + 2], U_ALPHA), " ' ");
}
static size_t rule_en_2(const uint32_t *s, size_t n, size_t i,
                        struct cpbuf *out) { /* "([^alpha isn])[']([alpha])" -> "\1 ' \2" */
    if (!APOS_AT(s, n, i)) return 0;
    return apostrophe(s, i, out, !cp_is(s[i], U_ALPHA_N), cp_is(s[i + 2], U_ALPHA), " ' ");
}
static size_t rule_en_3(const uint32_t *s, size_t n, size_t i,
                        struct cpbuf *out) { /* "([alpha])[']([^alpha])" -> "\1 ' \2" */
    if (!APOS_AT(s, n, i)) return 0;
    return apostrophe(s, i, out, cp_is(s[i], U_ALPHA), !cp_is(s[i + 2], U_ALPHA), " ' ");
}
static size_t rule_en_4(const uint32_t *s, size_t n, size_t i,
                        struct cpbuf *out) { /* "([alpha])[']([alpha])" -> "\1 '\2" */
    if (!APOS_AT(s, n, i)) return 0;
    return apostrophe(s, i, out, cp_is(s[i], U_ALPHA), cp_is(s[i + 2], U_ALPHA), " '");
}
static size_t rule_en_5(const uint32_t *s, size_t n, size_t i,
                        struct cpbuf *out) { /* "([isn])[']([s])" -> "\1 '\2" */
    if (!APOS_AT(s, n, i)) return 0;
    return apostrophe(s, i, out, cp_is(s[i], U_N), s[i + 2] == 's', " '");
}

static size_t rule_any_apostrophe(const uint32_t *s, size_t n, size_t i,
                                  struct cpbuf *out) { /* NON_SPECIFIC_APOSTROPHE: "'" -> " ' " */
    (void)n;
    if (s[i] != '\'') return 0;
    cpbuf_push_ascii(out, " ' ");
    return 1;
}

static int prefix_in(const char *const *list, size_t n, const char *w) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w, list[mid]);
        if (!c) return 1;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

/* handles_nonbreaking_prefixes: a token "X." keeps its dot unless X ends a sentence. */
static void nonbreaking(enum text_lang lang, struct cpbuf *t, struct cpbuf *tmp) {
    const struct tok_prefixes *nbp = lang == TEXT_DE ? &tok_prefixes_de : &tok_prefixes_en;
    const uint32_t *s = t->v;
    size_t n = t->n;
    tmp->n = 0;
    cpbuf_reserve(tmp, n + 16);
    char word[256];
    size_t i = 0;
    while (i < n && cp_is(s[i], U_ISSPACE))
        i++;
    int first = 1;
    while (i < n) {
        size_t a = i;
        while (i < n && !cp_is(s[i], U_ISSPACE))
            i++;
        size_t b = i; /* token s[a, b) */
        while (i < n && cp_is(s[i], U_ISSPACE))
            i++;
        size_t next = i; /* next token starts here, or i == n */
        if (!first) cpbuf_push(tmp, ' ');
        first = 0;
        int split = 0;
        if (b - a >= 2 && s[b - 1] == '.') {
            const uint32_t *p = s + a;
            size_t np = b - a - 1;
            int has_dot = 0, any_alpha = 0;
            for (size_t k = 0; k < np; k++) {
                has_dot |= p[k] == '.';
                any_alpha |= cp_is(p[k], U_ALPHA_SET);
            }
            int plain = 0, numeric = 0;
            if (np < sizeof word / 4) {
                size_t len = 0;
                for (size_t k = 0; k < np; k++)
                    len += utf8_put(word + len, p[k]);
                word[len] = '\0';
                plain = prefix_in(nbp->plain, nbp->n_plain, word);
                numeric = prefix_in(nbp->numeric, nbp->n_numeric, word);
            }
            int next_lower = next < n && cp_is(s[next], U_LOWER_SET);
            if ((has_dot && any_alpha) || (plain && !numeric) || next_lower)
                split = 0;
            else if (numeric && next < n && s[next] >= '0' && s[next] <= '9')
                split = 0;
            else
                split = 1;
        }
        for (size_t k = a; k < b - (size_t)split; k++)
            tmp->v[tmp->n++] = s[k];
        if (split) cpbuf_push_ascii(tmp, " .");
        cpbuf_reserve(tmp, tmp->n + (n - i) + 16);
    }
    struct cpbuf x = *t;
    *t = *tmp;
    *tmp = x;
}

static void trailing_dot_apostrophe(struct cpbuf *t) { /* "\.' ?$" -> " . ' " */
    size_t n = t->n;
    size_t at;
    if (n >= 2 && t->v[n - 2] == '.' && t->v[n - 1] == '\'')
        at = n - 2;
    else if (n >= 3 && t->v[n - 3] == '.' && t->v[n - 2] == '\'' && t->v[n - 1] == ' ')
        at = n - 3;
    else
        return;
    t->n = at;
    cpbuf_push_ascii(t, " . ' ");
}

static size_t
rule_restore_multidots(const uint32_t *s, size_t n, size_t i,
                       struct cpbuf *out) { /* "(?:DOT)+MULTI" -> "." * number of DOTs */
    size_t k = i, dots = 0;
    while (k + 3 <= n && s[k] == 'D' && s[k + 1] == 'O' && s[k + 2] == 'T')
        k += 3, dots++;
    if (!dots || k + 5 > n || s[k] != 'M' || s[k + 1] != 'U' || s[k + 2] != 'L' ||
        s[k + 3] != 'T' || s[k + 4] != 'I')
        return 0;
    for (size_t j = 0; j < dots; j++)
        cpbuf_push(out, '.');
    return k + 5 - i;
}

/* "\s+" -> " " changes only text with a whitespace other than a lone ' '. */
static void collapse_space(struct cpbuf *t, struct cpbuf *tmp) {
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        if (c == ' ' ? i + 1 < t->n && cp_is(t->v[i + 1], U_RE_SPACE) : cp_is(c, U_RE_SPACE)) {
            rule_pass(t, tmp, rule_collapse_space);
            return;
        }
    }
}

/* "[\000-\037]" -> "" changes only text with a control character. */
static void drop_ascii_junk(struct cpbuf *t, struct cpbuf *tmp) {
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] < 32) {
            rule_pass(t, tmp, rule_ascii_junk);
            return;
        }
}

void moses_tokenize(enum text_lang lang, struct cpbuf *t, struct cpbuf *tmp) {
    collapse_space(t, tmp);
    drop_ascii_junk(t, tmp);
    rule_strip(t);
    rule_pass(t, tmp, rule_pad_not_alnum);
    rule_pass_if(t, tmp, rule_multidots, '.');
    rule_pass_if(t, tmp, rule_comma_1, ',');
    rule_pass_if(t, tmp, rule_comma_2, ',');
    rule_pass_if(t, tmp, rule_comma_3, ',');
    if (lang == TEXT_EN) {
        rule_pass_if(t, tmp, rule_en_1, '\'');
        rule_pass_if(t, tmp, rule_en_2, '\'');
        rule_pass_if(t, tmp, rule_en_3, '\'');
        rule_pass_if(t, tmp, rule_en_4, '\'');
        rule_pass_if(t, tmp, rule_en_5, '\'');
    } else {
        rule_pass_if(t, tmp, rule_any_apostrophe, '\'');
    }
    nonbreaking(lang, t, tmp);
    collapse_space(t, tmp);
    rule_strip(t);
    trailing_dot_apostrophe(t);
    rule_pass_if(t, tmp, rule_restore_multidots, 'M');
}

int moses_pipeline(enum text_lang lang, const char *text, size_t len, struct cpbuf *t,
                   struct cpbuf *tmp, size_t *bad_at) {
    t->n = 0;
    if (utf8_decode(text, len, t, bad_at)) return -1;
    normalize_line(lang, t, tmp);
    moses_tokenize(lang, t, tmp);
    return 0;
}

/* Detokenization (Moses detokenizer.perl, the rules that matter for en/de output). */
static int all_in(const char *tok, const char *set) {
    if (!*tok) return 0;
    for (; *tok; tok++)
        if (!strchr(set, *tok)) return 0;
    return 1;
}

char *moses_detokenize(enum text_lang lang, const char *tokens) {
    size_t cap = strlen(tokens) + 2, len = 0;
    char *out = xmalloc(cap);
    char *copy = xstrdup(tokens), *save = NULL;
    int glue_next = 1; /* no space before the next token */
    int dquotes = 0, squotes = 0;
    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        int space = !glue_next;
        glue_next = 0;
        if (!strcmp(tok, "@-@") || !strcmp(tok, "@/@")) {
            tok[0] = tok[1];
            tok[1] = '\0';
            space = 0;
            glue_next = 1;
        } else if (all_in(tok, ",.?!:;%)]}")) {
            space = 0;
        } else if (all_in(tok, "([{") || !strcmp(tok, "$") || !strcmp(tok, "\xc2\xa3") ||
                   !strcmp(tok, "\xe2\x82\xac")) {
            glue_next = 1;
        } else if (!strcmp(tok, "\"")) { /* straight quotes alternate open / close */
            if (dquotes++ % 2 == 0)
                glue_next = 1;
            else
                space = 0;
        } else if (!strcmp(tok, "'")) {
            if (squotes++ % 2 == 0)
                glue_next = 1;
            else
                space = 0;
        } else if (lang == TEXT_EN && (tok[0] == '\'' || !strcmp(tok, "n't")) && len &&
                   tok[1] != '\0') {
            space = 0; /* it 's -> it's, do n't -> don't */
        }
        size_t tl = strlen(tok);
        if (len + tl + 2 > cap) {
            cap = 2 * (len + tl + 2);
            out = xrealloc(out, cap);
        }
        if (space && len) out[len++] = ' ';
        memcpy(out + len, tok, tl);
        len += tl;
    }
    out[len] = '\0';
    free(copy);
    return out;
}
