/* cmd_bpe.c — `xlmc encode` (text -> BPE pieces or ids) and `xlmc bpe-learn` (fastBPE
 * learnbpe + getvocab). */
#include "train/commands.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "data/bpe_learn.h"
#include "data/moses.h"
#include "data/tokenizer.h"

/* One line of ids, without printf's per-number cost (it was a tenth of encode's time). */
static void print_ids(const int32_t *ids, size_t n) {
    char num[16];
    for (size_t k = 0; k < n; k++) {
        int p = (int)sizeof num;
        uint32_t v = (uint32_t)ids[k];
        do
            num[--p] = (char)('0' + v % 10);
        while (v /= 10);
        if (k) putchar(' ');
        fwrite(num + p, 1, sizeof num - (size_t)p, stdout);
    }
    putchar('\n');
}

static void encode_usage(FILE *f) {
    fprintf(
        f,
        "usage: xlmc encode --codes CODES --vocab VOCAB --lang L [--ids] [FILE]\n"
        "       xlmc encode --vocab-json VOCAB.json --merges MERGES.txt --lang L [--ids] [FILE]\n\n"
        "Runs XLM's pipeline on each line of FILE (default: standard input): Unicode\n"
        "punctuation, Moses normalization and tokenization for L (en or de), BPE.\n"
        "Prints the BPE pieces (\"Hel@@ lo\"), or with --ids the dictionary ids.\n");
}

int cmd_encode(int argc, char **argv) {
    const char *codes = NULL, *vocab = NULL, *vjson = NULL, *merges = NULL, *lang = NULL;
    const char *path = NULL;
    int ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            encode_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ids")) {
            ids = 1;
        } else if (i + 1 < argc && !strcmp(a, "--codes")) {
            codes = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--vocab")) {
            vocab = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--vocab-json")) {
            vjson = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--merges")) {
            merges = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--lang")) {
            lang = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            xlmc_error("encode: unknown or incomplete option '%s' (xlmc encode --help)", a);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            xlmc_error("encode: one input file at most ('%s' is a second one)", a);
            return 2;
        }
    }
    if (!lang || text_lang_parse(lang) < 0) {
        xlmc_error("encode: --lang must be en or de%s%s", lang ? ", not " : "", lang ? lang : "");
        return 2;
    }
    int fast = codes && vocab, hf = vjson && merges;
    if (fast == hf) {
        xlmc_error("encode: give --codes and --vocab, or --vocab-json and --merges");
        return 2;
    }
    FILE *in = path ? fopen(path, "rb") : stdin;
    if (!in) {
        xlmc_error("cannot open %s: %s", path, strerror(errno));
        return 1;
    }
    struct tokenizer *tok = fast ? tokenizer_load(codes, vocab) : tokenizer_load_hf(vjson, merges);
    if (!tok) {
        if (path) fclose(in);
        return 1;
    }
    const char *name = path ? path : "<stdin>";
    char *line = NULL, why[256];
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    struct id_buf buf = {0};
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (ids) {
            buf.n = 0;
            if (tokenizer_encode(tok, lang, line, (size_t)len, &buf, why, sizeof why)) {
                rc = xlmc_error("%s:%ld: %s", name, lineno, why);
                break;
            }
            print_ids(buf.ids, buf.n);
        } else {
            char *p = tokenizer_encode_pieces(tok, lang, line, (size_t)len, why, sizeof why);
            if (!p) {
                rc = xlmc_error("%s:%ld: %s", name, lineno, why);
                break;
            }
            puts(p);
            free(p);
        }
    }
    if (!rc && ferror(in)) rc = xlmc_error("read error in %s", name);
    if (fflush(stdout) || ferror(stdout)) rc = xlmc_error("encode: cannot write the output");
    id_buf_free(&buf);
    free(line);
    tokenizer_free(tok);
    if (path) fclose(in);
    return rc ? 1 : 0;
}

static void learn_usage(FILE *f) {
    fprintf(f, "usage: xlmc bpe-learn --codes N --out DIR [--lang L] FILE...\n\n"
               "Learns N BPE merges with fastBPE's learnbpe semantics from already tokenized\n"
               "text (words split at spaces and newlines), or, with --lang en|de, from raw text\n"
               "run through XLM's normalization and Moses tokenizer first. Writes DIR/codes\n"
               "(\"a b count\") and DIR/vocab (\"word count\" of the BPE-split corpus).\n");
}

/* Read FILE line by line into the word counts; -1 after an error naming file and line. */
static int learn_read(const char *path, int lang, struct word_counts *wc) {
    FILE *f = fopen(path, "rb");
    if (!f) return xlmc_error("cannot open %s: %s", path, strerror(errno));
    char *line = NULL, *joined = NULL;
    size_t cap = 0, jcap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    struct cpbuf t = {0}, tmp = {0}, check = {0};
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len && line[len - 1] == '\n') len--;
        size_t bad = 0;
        if (lang >= 0) {
            if (moses_pipeline((enum text_lang)lang, line, (size_t)len, &t, &tmp, &bad)) {
                rc = xlmc_error("%s:%ld: invalid UTF-8 at byte %zu", path, lineno, bad);
                break;
            }
            size_t jl = utf8_encode(t.v, t.n, &joined, &jcap);
            word_counts_add_text(wc, joined, jl);
        } else {
            check.n = 0;
            if (utf8_decode(line, (size_t)len, &check, &bad)) {
                rc = xlmc_error("%s:%ld: invalid UTF-8 at byte %zu", path, lineno, bad);
                break;
            }
            word_counts_add_text(wc, line, (size_t)len);
        }
    }
    if (!rc && ferror(f)) rc = xlmc_error("read error in %s", path);
    fclose(f);
    free(line);
    free(joined);
    cpbuf_free(&t);
    cpbuf_free(&tmp);
    cpbuf_free(&check);
    return rc;
}

int cmd_bpe_learn(int argc, char **argv) {
    long n_codes = -1;
    const char *out = NULL, *lang = NULL;
    int n_files = 0;
    char **files = xcalloc((size_t)argc, sizeof *files);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            learn_usage(stdout);
            free(files);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--codes")) {
            if (xlmc_parse_long(argv[++i], 1, LONG_MAX, &n_codes)) n_codes = -2;
        } else if (i + 1 < argc && !strcmp(a, "--out")) {
            out = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--lang")) {
            lang = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            xlmc_error("bpe-learn: unknown or incomplete option '%s' (xlmc bpe-learn --help)", a);
            free(files);
            return 2;
        } else {
            files[n_files++] = argv[i];
        }
    }
    int l = lang ? text_lang_parse(lang) : -1;
    const char *bad = n_codes < 0     ? "--codes N (a positive number of merges) is required"
                      : !out          ? "--out DIR is required"
                      : !n_files      ? "give at least one input FILE"
                      : lang && l < 0 ? "--lang must be en or de"
                                      : NULL;
    if (bad) {
        xlmc_error("bpe-learn: %s", bad);
        free(files);
        return 2;
    }
    if (mkdir(out, 0777) && errno != EEXIST) {
        xlmc_error("bpe-learn: cannot create --out %s: %s", out, strerror(errno));
        free(files);
        return 1;
    }
    struct word_counts wc;
    word_counts_init(&wc);
    int rc = 0;
    for (int i = 0; i < n_files && !rc; i++)
        rc = learn_read(files[i], l, &wc);
    free(files);
    if (!rc && wc.n_nodes <= 1) rc = xlmc_error("bpe-learn: the input has no words");
    size_t plen = strlen(out) + 64;
    char *codes_tmp = xmalloc(plen), *vocab_tmp = xmalloc(plen), *codes_path = xmalloc(plen),
         *vocab_path = xmalloc(plen);
    snprintf(codes_tmp, plen, "%s/.codes.tmp.%ld", out, (long)getpid());
    snprintf(vocab_tmp, plen, "%s/.vocab.tmp.%ld", out, (long)getpid());
    snprintf(codes_path, plen, "%s/codes", out);
    snprintf(vocab_path, plen, "%s/vocab", out);
    FILE *fc = NULL, *fv = NULL;
    if (!rc) {
        fc = fopen(codes_tmp, "w");
        fv = fopen(vocab_tmp, "w");
        if (!fc || !fv) rc = xlmc_error("bpe-learn: cannot write in %s: %s", out, strerror(errno));
    }
    if (!rc) {
        struct bpe learned = {0};
        size_t n = bpe_learn(&wc, (size_t)n_codes, &learned, fc);
        if (n < (size_t)n_codes)
            xlmc_warn("bpe-learn: only %zu merges possible (every word is one piece)", n);
        if (bpe_write_vocab(&wc, &learned, fv)) rc = -1;
        bpe_free(&learned);
    }
    if (fc && fclose(fc)) rc = -1;
    if (fv && fclose(fv)) rc = -1;
    if (!rc && (rename(codes_tmp, codes_path) || rename(vocab_tmp, vocab_path)))
        rc = xlmc_error("bpe-learn: cannot rename into %s: %s", out, strerror(errno));
    else if (rc && (fc || fv))
        xlmc_error("bpe-learn: could not write %s/codes and vocab", out);
    if (rc) {
        unlink(codes_tmp);
        unlink(vocab_tmp);
    }
    word_counts_free(&wc);
    free(codes_tmp);
    free(vocab_tmp);
    free(codes_path);
    free(vocab_path);
    return rc ? 1 : 0;
}
