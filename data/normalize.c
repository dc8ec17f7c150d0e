/* normalize.c — replace-unicode-punct, normalize-punctuation, remove-non-printing-char.
 * Each rule is one pass in the reference's order; the comments quote the reference regex. */
#include "data/normalize.h"

#include <string.h>

#include "core/util.h"
#include "data/textrule.h"

int text_lang_parse(const char *lang) {
    if (!strcmp(lang, "en")) return TEXT_EN;
    if (!strcmp(lang, "de")) return TEXT_DE;
    return -1;
}

/* replace_unicode_punct: every pattern is one code point mapped to ASCII; "。\s*" and
 * "．\s*" also eat the whitespace after them. The replacements are ASCII without spaces, so
 * the reference's sequence of passes equals this single pass. */
static size_t rule_unicode_punct(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    const char *rep;
    switch (s[i]) {
    case 0xFF0C:
        rep = ",";
        break; /* ， */
    case 0x3001:
        rep = ",";
        break; /* 、 */
    case 0x201D:
    case 0x201C:
    case 0x300A:
    case 0x300B:
    case 0x300D:
    case 0x300C:
        rep = "\"";
        break; /* ” “ 《 》 」 「 */
    case 0x2236:
    case 0xFF1A:
        rep = ":";
        break;
    case 0xFF1F:
        rep = "?";
        break;
    case 0xFF09:
        rep = ")";
        break;
    case 0xFF01:
        rep = "!";
        break;
    case 0xFF08:
        rep = "(";
        break;
    case 0xFF1B:
        rep = ";";
        break;
    case 0xFF5E:
        rep = "~";
        break;
    case 0x2019:
        rep = "'";
        break; /* ’ */
    case 0x2026:
        rep = "...";
        break; /* … */
    case 0x2501:
        rep = "-";
        break; /* ━ */
    case 0x3008:
        rep = "<";
        break;
    case 0x3009:
        rep = ">";
        break;
    case 0x3010:
        rep = "[";
        break;
    case 0x3011:
        rep = "]";
        break;
    case 0xFF05:
        rep = "%";
        break;
    case 0x3002:
    case 0xFF0E: { /* 。\s* and ．\s* -> ". " */
        size_t k = i + 1;
        while (k < n && cp_is(s[k], U_RE_SPACE))
            k++;
        cpbuf_push_ascii(out, ". ");
        return k - i;
    }
    default:
        if (s[i] >= 0xFF10 && s[i] <= 0xFF19) { /* full-width digits */
            cpbuf_push(out, '0' + (s[i] - 0xFF10));
            return 1;
        }
        return 0;
    }
    cpbuf_push_ascii(out, rep);
    return 1;
}

static size_t rule_spaces(const uint32_t *s, size_t n, size_t i,
                          struct cpbuf *out) { /* " +" -> " " */
    if (s[i] != ' ') return 0;
    size_t k = i + 1;
    while (k < n && s[k] == ' ')
        k++;
    cpbuf_push(out, ' ');
    return k - i;
}

/* " +" -> " " only changes text with two adjacent spaces. */
static void collapse_spaces(struct cpbuf *t, struct cpbuf *tmp) {
    for (size_t i = 0; i + 1 < t->n; i++)
        if (t->v[i] == ' ' && t->v[i + 1] == ' ') {
            rule_pass(t, tmp, rule_spaces);
            return;
        }
}

static size_t rule_close_paren_punct(const uint32_t *s, size_t n, size_t i,
                                     struct cpbuf *out) { /* "\) ([.!:?;,])" -> ")\1" */
    if (s[i] != ')' || i + 2 >= n || s[i + 1] != ' ' || s[i + 2] >= 0x80 || s[i + 2] == 0 ||
        !strchr(".!:?;,", (int)s[i + 2]))
        return 0;
    cpbuf_push(out, ')');
    cpbuf_push(out, s[i + 2]);
    return 3;
}

static size_t rule_digit_percent(const uint32_t *s, size_t n, size_t i,
                                 struct cpbuf *out) { /* "(\d) %" -> "\1%" */
    if (i + 2 >= n || !cp_is(s[i], U_RE_DIGIT) || s[i + 1] != ' ' || s[i + 2] != '%') return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push(out, '%');
    return 3;
}

static int is_ascii_letter(uint32_t c) {
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static size_t rule_letter_quote_letter(
    const uint32_t *s, size_t n, size_t i, struct cpbuf *out,
    uint32_t quote) { /* "([a-zA-Z])‘([a-zA-Z])" -> "\1'\2" (and the same with ’) */
    if (i + 2 >= n || !is_ascii_letter(s[i]) || s[i + 1] != quote || !is_ascii_letter(s[i + 2]))
        return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push(out, '\'');
    cpbuf_push(out, s[i + 2]);
    return 3;
}
static size_t rule_lql_2018(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    return rule_letter_quote_letter(s, n, i, out, 0x2018);
}
static size_t rule_lql_2019(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    return rule_letter_quote_letter(s, n, i, out, 0x2019);
}

static size_t rule_en_quote_comma(const uint32_t *s, size_t n, size_t i,
                                  struct cpbuf *out) { /* en: '"([,.]+)' -> '\1"' */
    if (s[i] != '"') return 0;
    size_t k = i + 1;
    while (k < n && (s[k] == ',' || s[k] == '.'))
        k++;
    if (k == i + 1) return 0;
    for (size_t j = i + 1; j < k; j++)
        cpbuf_push(out, s[j]);
    cpbuf_push(out, '"');
    return k - i;
}

static size_t
rule_de_dots_quote(const uint32_t *s, size_t n, size_t i,
                   struct cpbuf *out) { /* de: '(\.+)"(\s*[^<])' -> '"\1\2' (\s* backtracks one step
                                           when [^<] has nothing else) */
    if (s[i] != '.') return 0;
    size_t q = i;
    while (q < n && s[q] == '.')
        q++;
    if (q >= n || s[q] != '"') return 0;
    size_t k = q + 1;
    while (k < n && cp_is(s[k], U_RE_SPACE))
        k++;
    size_t end;
    if (k < n && s[k] != '<')
        end = k + 1;
    else if (k > q + 1)
        end = k;
    else
        return 0;
    cpbuf_push(out, '"');
    for (size_t j = i; j < end; j++)
        if (j != q) cpbuf_push(out, s[j]);
    return end - i;
}

static size_t
rule_number_nbsp(const uint32_t *s, size_t n, size_t i, struct cpbuf *out,
                 uint32_t sep) { /* "(\d)\u00A0(\d)" -> "\1,\2" (de) or "\1.\2" (en) */
    if (i + 2 >= n || !cp_is(s[i], U_RE_DIGIT) || s[i + 1] != 0xA0 || !cp_is(s[i + 2], U_RE_DIGIT))
        return 0;
    cpbuf_push(out, s[i]);
    cpbuf_push(out, sep);
    cpbuf_push(out, s[i + 2]);
    return 3;
}
static size_t rule_number_nbsp_de(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    return rule_number_nbsp(s, n, i, out, ',');
}
static size_t rule_number_nbsp_en(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    return rule_number_nbsp(s, n, i, out, '.');
}

/* The literal substitutions of normalize-punctuation, in order, as code points. Those that
 * start with a non-ASCII code point are skipped wholesale for pure-ASCII lines. */
struct literal {
    uint32_t pat[4];
    size_t np;
    const char *rep;
};
#define NBSP 0xA0
static const struct literal UNICODE_QUOTES[] = {
    /* NORMALIZE_UNICODE up to " +" */
    {{0x201E}, 1, "\""}, {{0x201C}, 1, "\""},  {{0x201D}, 1, "\""},
    {{0x2013}, 1, "-"},  {{0x2014}, 1, " - "},
};
static const struct literal FRENCH_AND_PSEUDO[] = {
    {{NBSP, 0xAB, NBSP}, 3, "\""}, {{0xAB, NBSP}, 2, "\""}, {{0xAB}, 1, "\""},
    {{NBSP, 0xBB, NBSP}, 3, "\""}, {{NBSP, 0xBB}, 2, "\""}, {{0xBB}, 1, "\""},
    {{NBSP, '%'}, 2, "%"},         {{NBSP, ':'}, 2, ":"},   {{NBSP, '?'}, 2, "?"},
    {{NBSP, '!'}, 2, "!"},         {{NBSP, ';'}, 2, ";"},
};

static void literals(struct cpbuf *t, struct cpbuf *tmp, const struct literal *l, size_t n) {
    for (size_t k = 0; k < n; k++)
        rule_literal(t, tmp, l[k].pat, l[k].np, l[k].rep);
}

/* A literal whose replacement is not ASCII ("nº\u00A0" -> "nº "), done by hand. */
static void replace_cp_seq(struct cpbuf *t, struct cpbuf *tmp, const uint32_t *pat, size_t np,
                           const uint32_t *rep, size_t nr) {
    tmp->n = 0;
    for (size_t i = 0; i < t->n;) {
        if (i + np <= t->n && !memcmp(t->v + i, pat, np * sizeof *pat)) {
            for (size_t k = 0; k < nr; k++)
                cpbuf_push(tmp, rep[k]);
            i += np;
        } else {
            cpbuf_push(tmp, t->v[i++]);
        }
    }
    struct cpbuf x = *t;
    *t = *tmp;
    *tmp = x;
}

static size_t rule_drop_ctrl(const uint32_t *s, size_t n, size_t i, struct cpbuf *out) {
    (void)n;
    (void)out;
    return cp_is(s[i], U_CTRL) ? 1 : 0;
}

void normalize_line(enum text_lang lang, struct cpbuf *t, struct cpbuf *tmp) {
    int ascii = 1;
    for (size_t i = 0; i < t->n && ascii; i++)
        ascii = t->v[i] < 0x80;
    if (!ascii) rule_pass(t, tmp, rule_unicode_punct);

    /* MosesPunctNormalizer: EXTRA_WHITESPACE */
    static const uint32_t CR[] = {'\r'}, LP[] = {'('}, RP[] = {')'}, LPS[] = {'(', ' '},
                          SRP[] = {' ', ')'}, SC[] = {' ', ':'}, SS[] = {' ', ';'}, BT[] = {'`'},
                          QQ[] = {'\'', '\''};
    rule_literal(t, tmp, CR, 1, "");
    rule_literal(t, tmp, LP, 1, " (");
    rule_literal(t, tmp, RP, 1, ") ");
    collapse_spaces(t, tmp);
    rule_pass_if(t, tmp, rule_close_paren_punct, ')');
    rule_literal(t, tmp, LPS, 2, "(");
    rule_literal(t, tmp, SRP, 2, ")");
    rule_pass_if(t, tmp, rule_digit_percent, '%');
    rule_literal(t, tmp, SC, 2, ":");
    rule_literal(t, tmp, SS, 2, ";");
    /* NORMALIZE_UNICODE_IF_NOT_PENN (sacremoses adds it when penn=True, its default) */
    rule_literal(t, tmp, BT, 1, "'");
    rule_literal(t, tmp, QQ, 2, " \" ");
    /* NORMALIZE_UNICODE */
    if (!ascii) literals(t, tmp, UNICODE_QUOTES, XLMC_ARRAY_LEN(UNICODE_QUOTES));
    collapse_spaces(t, tmp);
    static const uint32_t ACUTE[] = {0xB4}, Q1[] = {0x2018}, Q2[] = {0x201A}, Q3[] = {0x2019},
                          ACUTE2[] = {0xB4, 0xB4}, ELL[] = {0x2026};
    if (!ascii) {
        rule_literal(t, tmp, ACUTE, 1, "'");
        rule_pass_if(t, tmp, rule_lql_2018, 0x2018);
        rule_pass_if(t, tmp, rule_lql_2019, 0x2019);
        rule_literal(t, tmp, Q1, 1, "'");
        rule_literal(t, tmp, Q2, 1, "'");
        rule_literal(t, tmp, Q3, 1, "'");
    }
    rule_literal(t, tmp, QQ, 2, "\"");
    if (!ascii) {
        static const uint32_t NO[] = {'n', 0xBA, NBSP}, NO_R[] = {'n', 0xBA, ' '};
        static const uint32_t DEG[] = {NBSP, 0xBA, 'C'}, DEG_R[] = {' ', 0xBA, 'C'};
        static const uint32_t CM[] = {NBSP, 'c', 'm'}, CMA[] = {',', NBSP};
        rule_literal(t, tmp, ACUTE2, 2, "\"");
        rule_literal(t, tmp, ELL, 1, "...");
        /* FRENCH_QUOTES, then HANDLE_PSEUDO_SPACES in the reference's order */
        literals(t, tmp, FRENCH_AND_PSEUDO, 7);     /* «» and "\u00A0%" */
        replace_cp_seq(t, tmp, NO, 3, NO_R, 3);     /* "nº\u00A0" */
        literals(t, tmp, FRENCH_AND_PSEUDO + 7, 1); /* "\u00A0:" */
        replace_cp_seq(t, tmp, DEG, 3, DEG_R, 3);   /* "\u00A0ºC" */
        rule_literal(t, tmp, CM, 3, " cm");
        literals(t, tmp, FRENCH_AND_PSEUDO + 8, 3); /* "\u00A0" before ? ! ; */
        rule_literal(t, tmp, CMA, 2, ", ");
    }
    collapse_spaces(t, tmp);
    if (lang == TEXT_EN) {
        rule_pass_if(t, tmp, rule_en_quote_comma, '"');
        rule_pass_if(t, tmp, rule_number_nbsp_en, NBSP);
    } else {
        static const uint32_t CQ[] = {',', '"'};
        rule_literal(t, tmp, CQ, 2, "\",");
        rule_pass_if(t, tmp, rule_de_dots_quote, '"');
        rule_pass_if(t, tmp, rule_number_nbsp_de, NBSP);
    }
    rule_strip(t);
    /* remove_non_printing_char */
    int any_ctrl = 0;
    for (size_t i = 0; i < t->n && !any_ctrl; i++)
        any_ctrl = cp_is(t->v[i], U_CTRL);
    if (any_ctrl) rule_pass(t, tmp, rule_drop_ctrl);
}
