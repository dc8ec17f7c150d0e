/* cmd_prep.c — `xlmc prep` (raw text -> HDF5 token shards) and `xlmc data-info` (what a shard
 * directory holds). The shard schema and the split rule are documented in data/README.md.
 *
 * prep is all or nothing: every rank writes its shards under temporary names and renames them
 * when complete, and if any rank fails, every rank deletes the shards it wrote. */
#include "train/commands.h"

#include "core/comm.h"
#include "core/config.h"
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST, N_SPLITS };
static const char *const SPLIT_NAMES[N_SPLITS] = {"train", "valid", "test"};

struct prep_args {
    const char *lang, *codes, *vocab, *out;
    char lang1[8], lang2[8]; /* --pair L1-L2 (lang = L1); "" for monolingual prep */
    int keep_identical;      /* --pair: keep pairs whose two sides encode to the same ids */
    const char **inputs;
    int n_inputs;
    long valid_every;  /* lines; 0 = everything is train */
    long shard_tokens; /* tokens per shard before a new one starts */
};

static void prep_usage(FILE *f) {
    fprintf(f, "usage: xlmc prep --lang L --codes CODES --vocab VOCAB --out DIR\n"
               "                 [--valid-every N] [--shard-tokens N] --input FILE...\n"
               "       xlmc prep --pair L1-L2 [--keep-identical] --codes CODES --vocab VOCAB\n"
               "                 --out DIR [...] --input A1 B1 [A2 B2 ...]\n\n"
               "Tokenizes raw text (one sentence or paragraph per line, plain or .gz; empty lines\n"
               "are skipped) with the fastBPE pair CODES/VOCAB and writes HDF5 token shards\n"
               "DIR/<split>-<L>-r<RANK>-<NNNNN>.h5 (schema: data/README.md) and copies of CODES\n"
               "and VOCAB as DIR/codes and DIR/vocab.\n\n"
               "  --lang L          en or de (language ids de = 0, en = 1, as XLM)\n"
               "  --valid-every N   line k of a file (from 1) goes to valid when k %% N == 0, to\n"
               "                    test when k %% N == N/2, else to train (default 100; 0: all\n"
               "                    train; N >= 3)\n"
               "  --shard-tokens N  tokens per shard (default 16777216)\n\n"
               "With mpirun -np R, rank r tokenizes input files r, r+R, ... .\n\n"
               "--pair L1-L2 (e.g. en-de) writes sentence pairs for TLM instead: line k of A (in\n"
               "L1) and line k of B (in L2) are one pair; A and B must have as many lines. Pairs\n"
               "with an empty side are skipped, and so are pairs whose sides are the same text or\n"
               "ids (untranslated text) unless --keep-identical. Shards are\n"
               "DIR/pairs-<split>-<L1>-<L2>-r<RANK>-<NNNNN>.h5; with mpirun, rank r takes the\n"
               "file pairs r, r+R, ... .\n");
}

static int prep_parse(int argc, char **argv, struct prep_args *a) {
    memset(a, 0, sizeof *a);
    a->valid_every = 100;
    a->shard_tokens = 16l << 20;
    a->inputs = xcalloc((size_t)argc, sizeof *a->inputs);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            prep_usage(stdout);
            return 1;
        } else if (!strcmp(o, "--input")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                a->inputs[a->n_inputs++] = argv[++i];
        } else if (!strcmp(o, "--keep-identical")) {
            a->keep_identical = 1;
        } else if (i + 1 < argc && !strcmp(o, "--pair")) {
            /* L1-L2: two known, different codes */
            const char *v = argv[++i], *dash = strchr(v, '-');
            char *l1 = a->lang1;
            if (!dash || dash - v >= (long)sizeof a->lang1 || strlen(dash + 1) >= sizeof a->lang2) {
                xlmc_error("prep: --pair %s: give two language codes, e.g. en-de", v);
                return 2;
            }
            memcpy(l1, v, (size_t)(dash - v));
            l1[dash - v] = '\0';
            snprintf(a->lang2, sizeof a->lang2, "%s", dash + 1);
            if (shard_lang_id(l1) < 0 || shard_lang_id(a->lang2) < 0 || !strcmp(l1, a->lang2)) {
                xlmc_error("prep: --pair %s: give two different known languages (de, en), e.g. "
                           "en-de",
                           v);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(o, "--lang")) {
            a->lang = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--codes")) {
            a->codes = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--vocab")) {
            a->vocab = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--out")) {
            a->out = argv[++i];
        } else if (i + 1 < argc && !strcmp(o, "--valid-every")) {
            if (xlmc_parse_long(argv[++i], 0, LONG_MAX, &a->valid_every) || a->valid_every == 1 ||
                a->valid_every == 2) {
                xlmc_error("prep: --valid-every %s: give 0 or a number >= 3", argv[i]);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(o, "--shard-tokens")) {
            if (xlmc_parse_long(argv[++i], 1, LONG_MAX, &a->shard_tokens)) {
                xlmc_error("prep: --shard-tokens %s: give a positive number", argv[i]);
                return 2;
            }
        } else {
            xlmc_error("prep: unknown or incomplete option '%s' (xlmc prep --help)", o);
            return 2;
        }
    }
    if (a->lang2[0]) {
        if (a->lang && strcmp(a->lang, a->lang1)) {
            xlmc_error("prep: --lang %s and --pair %s-%s disagree (--pair alone is enough)",
                       a->lang, a->lang1, a->lang2);
            return 2;
        }
        a->lang = a->lang1;
    }
    const char *bad = !a->lang ? "--lang L (or --pair L1-L2) is required"
                      : shard_lang_id(a->lang) < 0
                          ? "--lang must be a known language code: de or en"
                      : !a->codes    ? "--codes CODES is required"
                      : !a->vocab    ? "--vocab VOCAB is required"
                      : !a->out      ? "--out DIR is required"
                      : !a->n_inputs ? "--input FILE... is required"
                                     : NULL;
    if (!bad && a->lang2[0] && a->n_inputs % 2)
        bad = "--pair takes its --input files two by two (A1 B1 A2 B2 ...): an odd number was "
              "given";
    if (bad) {
        xlmc_error("prep: %s%s%s (xlmc prep --help)", bad,
                   a->lang && shard_lang_id(a->lang) < 0 ? ", not " : "",
                   a->lang && shard_lang_id(a->lang) < 0 ? a->lang : "");
        return 2;
    }
    return 0;
}

/* The state of one rank's prep. */
struct prep {
    const struct prep_args *a;
    struct tokenizer *tok;
    int rank;
    struct shard_writer w[N_SPLITS];
    int seq[N_SPLITS]; /* shards written per split */
    char **written;    /* paths of the shards this rank wrote */
    int n_written;
    double bytes, tokens, sentences, t0, last_print;
    double skipped_empty, skipped_identical; /* --pair: pairs left out, and why */
};

/* The shard name prefix of this prep: "<split>-<L>" or "pairs-<split>-<L1>-<L2>". */
static void shard_prefix(const struct prep_args *a, int split, char *buf, size_t cap) {
    if (a->lang2[0])
        snprintf(buf, cap, "pairs-%s-%s-%s", SPLIT_NAMES[split], a->lang, a->lang2);
    else
        snprintf(buf, cap, "%s-%s", SPLIT_NAMES[split], a->lang);
}

static int prep_flush(struct prep *p, int split) {
    struct shard_writer *w = &p->w[split];
    if (!w->meta.n_sentences) return 0;
    char *path = xmalloc(strlen(p->a->out) + 64), prefix[40];
    shard_prefix(p->a, split, prefix, sizeof prefix);
    sprintf(path, "%s/%s-r%03d-%05d.h5", p->a->out, prefix, p->rank, p->seq[split]++);
    if (shard_writer_flush(w, path)) {
        free(path);
        return -1;
    }
    p->written = xrealloc(p->written, (size_t)(p->n_written + 1) * sizeof *p->written);
    p->written[p->n_written++] = path;
    return 0;
}

/* Rank 0 speaks for all (its own throughput); the final line sums over ranks. */
static void prep_progress(struct prep *p, int last) {
    double t = now_seconds(), dt = t - p->t0;
    if (p->rank != 0 || (!last && t - p->last_print < 2.0)) return;
    p->last_print = t;
    if (dt <= 0) dt = 1e-9;
    fprintf(stderr,
            "prep: %s rank %d: %.1f MB read, %.0f sentences, %.0f tokens, %.2f MB/s, "
            "%.0f tokens/s%s\n",
            p->a->lang, p->rank, p->bytes / 1e6, p->sentences, p->tokens, p->bytes / 1e6 / dt,
            p->tokens / dt, last ? " (done)" : "");
}

/* An input file read line by line, however long the lines. */
struct line_reader {
    const char *path;
    gzFile in;
    char *line; /* the current line without its newline */
    size_t cap, len;
    long lineno;
};

static int reader_open(struct line_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->in = gzopen(path, "rb");
    if (!r->in) return xlmc_error("prep: cannot open --input %s: %s", path, strerror(errno));
    gzbuffer(r->in, 1 << 18);
    r->cap = 1 << 16;
    r->line = xmalloc(r->cap);
    return 0;
}

/* The next line into r->line: 1, 0 at the end of the file, -1 after an error. *bytes grows by
 * the bytes read. */
static int reader_next(struct line_reader *r, double *bytes) {
    size_t len = 0;
    int got = 0;
    z_off_t at = gztell(r->in);
    while (gzgets(r->in, r->line + len, (int)(r->cap - len))) {
        got = 1;
        len += strlen(r->line + len);
        if ((len && r->line[len - 1] == '\n') || len + 1 < r->cap) break; /* newline or EOF */
        r->cap *= 2;
        r->line = xrealloc(r->line, r->cap);
    }
    if (!got) {
        int errnum = 0;
        const char *gzmsg = gzerror(r->in, &errnum);
        if (errnum != Z_OK && errnum != Z_STREAM_END)
            return xlmc_error("prep: read error in %s: %s (truncated .gz?)", r->path, gzmsg);
        return 0;
    }
    r->lineno++;
    if (gztell(r->in) - at != (z_off_t)len) /* gzgets read past a NUL that strlen stops at */
        return xlmc_error("%s:%ld: NUL byte in the line (not a text file?)", r->path, r->lineno);
    *bytes += (double)len;
    if (len && r->line[len - 1] == '\n') r->line[--len] = '\0';
    r->len = len;
    return 1;
}

static void reader_close(struct line_reader *r) {
    if (r->in) gzclose(r->in);
    free(r->line);
    memset(r, 0, sizeof *r);
}

/* The split of line k (from 1) by the documented rule. */
static int split_of(const struct prep_args *a, long k) {
    long v = a->valid_every;
    return v && k % v == 0 ? SPLIT_VALID : v && k % v == v / 2 ? SPLIT_TEST : SPLIT_TRAIN;
}

/* Tokenize one input file into the split writers. */
static int prep_file(struct prep *p, const char *path) {
    struct line_reader rd;
    if (reader_open(&rd, path)) return -1;
    char why[256];
    struct id_buf ids = {0};
    int rc = 0, got;
    for (int s = 0; s < N_SPLITS; s++)
        shard_writer_add_source(&p->w[s], path);
    while (!rc && (got = reader_next(&rd, &p->bytes)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        const char *line = rd.line;
        size_t len = rd.len;
        long lineno = rd.lineno;
        if (!len) continue;
        ids.n = 0;
        if (tokenizer_encode(p->tok, p->a->lang, line, len, &ids, why, sizeof why)) {
            rc = xlmc_error("%s:%ld: %s", path, lineno, why);
            break;
        }
        if (!ids.n) continue; /* only characters the normalizer removes */
        int split = split_of(p->a, lineno);
        shard_writer_append(&p->w[split], ids.ids, ids.n);
        p->tokens += (double)ids.n;
        p->sentences += 1;
        if (p->w[split].meta.n_tokens >= p->a->shard_tokens) rc = prep_flush(p, split);
        prep_progress(p, 0);
    }
    reader_close(&rd);
    id_buf_free(&ids);
    return rc;
}

/* --pair: line k of A (language lang) and line k of B (lang2) are one pair, written as
 * sentences 2i and 2i+1 of the split's pair shard. What is left out, and why:
 *   - a pair with an empty side (an empty line, or one the normalizer reduces to nothing):
 *     nothing to align, as XLM's ParallelDataset drops pairs with an empty sentence;
 *   - a pair whose sides are the same text, or encode to the same ids (the handbook's
 *     untranslated paragraphs: 631 of 3032 de-DE paragraphs are the English text; the German
 *     Moses rules tokenize some of them differently, so the ids alone would miss those): TLM
 *     would learn to copy across the pair, not to translate; --keep-identical keeps them.
 * Pairs too long for a row are kept: the row length is the training config's, and the pair
 * loader (data/pairs.h) skips them there, saying how many. */
static int prep_pair_files(struct prep *p, const char *path_a, const char *path_b) {
    struct line_reader ra, rb;
    if (reader_open(&ra, path_a)) return -1;
    if (reader_open(&rb, path_b)) {
        reader_close(&ra);
        return -1;
    }
    char why[256];
    struct id_buf ia = {0}, ib = {0};
    int rc = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        shard_writer_add_source(&p->w[s], path_a);
        shard_writer_add_source(&p->w[s], path_b);
    }
    while (!rc) {
        int ga = reader_next(&ra, &p->bytes), gb = reader_next(&rb, &p->bytes);
        if (ga < 0 || gb < 0) {
            rc = -1;
            break;
        }
        if (!ga && !gb) break;
        if (!ga || !gb) {
            rc = xlmc_error("prep: --pair: %s has %ld lines but %s has more: the two files of a "
                            "pair must align line by line",
                            ga ? path_b : path_a, ga ? rb.lineno : ra.lineno, ga ? path_a : path_b);
            break;
        }
        ia.n = ib.n = 0;
        if (ra.len && tokenizer_encode(p->tok, p->a->lang, ra.line, ra.len, &ia, why, sizeof why))
            rc = xlmc_error("%s:%ld: %s", path_a, ra.lineno, why);
        else if (rb.len &&
                 tokenizer_encode(p->tok, p->a->lang2, rb.line, rb.len, &ib, why, sizeof why))
            rc = xlmc_error("%s:%ld: %s", path_b, rb.lineno, why);
        if (rc) break;
        if (!ia.n || !ib.n) {
            p->skipped_empty += !(ra.len == 0 && rb.len == 0); /* both empty: a blank line */
            continue;
        }
        int same_text = ra.len == rb.len && !memcmp(ra.line, rb.line, ra.len);
        int same_ids = ia.n == ib.n && !memcmp(ia.ids, ib.ids, ia.n * sizeof *ia.ids);
        if (!p->a->keep_identical && (same_text || same_ids)) {
            p->skipped_identical++;
            continue;
        }
        int split = split_of(p->a, ra.lineno);
        shard_writer_append(&p->w[split], ia.ids, ia.n);
        shard_writer_append(&p->w[split], ib.ids, ib.n);
        p->tokens += (double)(ia.n + ib.n);
        p->sentences += 1;
        if (p->w[split].meta.n_tokens >= p->a->shard_tokens) rc = prep_flush(p, split);
        prep_progress(p, 0);
    }
    reader_close(&ra);
    reader_close(&rb);
    id_buf_free(&ia);
    id_buf_free(&ib);
    return rc;
}

/* Copy src to dir/name (via a temporary name) unless an identical copy is there. */
static int copy_file(const char *src, const char *dir, const char *name) {
    char dst[XLMC_PATH_MAX], tmp[XLMC_PATH_MAX];
    if (xlmc_path(dst, sizeof dst, "%s/%s", dir, name) || xlmc_path(tmp, sizeof tmp, "%s.tmp", dst))
        return -1;
    FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    int rc = 0;
    if (!in) return xlmc_error("prep: cannot open %s: %s", src, strerror(errno));
    if (!out) rc = xlmc_error("prep: cannot create %s: %s", tmp, strerror(errno));
    char buf[1 << 16];
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = xlmc_error("prep: cannot write %s", tmp);
    if (!rc && ferror(in)) rc = xlmc_error("prep: read error in %s", src);
    fclose(in);
    if (out && fclose(out) && !rc) rc = xlmc_error("prep: cannot write %s", tmp);
    if (!rc && rename(tmp, dst))
        rc = xlmc_error("prep: cannot rename %s: %s", tmp, strerror(errno));
    if (rc && out) remove(tmp);
    return rc;
}

/* mkdir -p */
static int mkdir_p(const char *dir) {
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *q = p + 1; !rc; q++) {
        if (*q && *q != '/') continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0777) && errno != EEXIST)
            rc = xlmc_error("prep: cannot create --out %s: %s", p, strerror(errno));
        *q = c;
        if (!c) break;
    }
    free(p);
    return rc;
}

/* Rank 0: the directory may already hold a dictionary (the other language's prep): it must be
 * ours; and it must not hold shards of this language already (they would be mixed in). */
static int prep_check_out(const struct prep_args *a, const struct tokenizer *tok) {
    char vocab[XLMC_PATH_MAX], codes[XLMC_PATH_MAX];
    if (xlmc_path(vocab, sizeof vocab, "%s/vocab", a->out) ||
        xlmc_path(codes, sizeof codes, "%s/codes", a->out))
        return -1;
    FILE *f = fopen(vocab, "rb");
    if (f) {
        fclose(f);
        struct tokenizer *old = tokenizer_load(codes, vocab);
        if (!old)
            return xlmc_error("prep: --out %s holds a vocab that does not load with its codes",
                              a->out);
        int same = tokenizer_vocab_hash(old) == tokenizer_vocab_hash(tok) &&
                   tokenizer_codes_hash(old) == tokenizer_codes_hash(tok);
        tokenizer_free(old);
        if (!same)
            return xlmc_error("prep: --out %s was prepared with another codes/vocab pair: use a "
                              "new directory",
                              a->out);
    } else if (copy_file(a->codes, a->out, "codes") || copy_file(a->vocab, a->out, "vocab")) {
        return -1;
    }
    for (int s = 0; s < N_SPLITS; s++) {
        char **paths, prefix[64], other[64], list[40];
        int n, clash = 0;
        shard_prefix(a, s, prefix, sizeof prefix);
        strcat(prefix, "-");
        /* pairs of the same languages in the other order would be loaded together */
        snprintf(other, sizeof other, "pairs-%s-%s-%s-", SPLIT_NAMES[s], a->lang2, a->lang);
        snprintf(list, sizeof list, "%s%s", a->lang2[0] ? "pairs-" : "", SPLIT_NAMES[s]);
        if (shard_list(a->out, list, &paths, &n)) return -1;
        for (int i = 0; i < n && !clash; i++) {
            const char *base = strrchr(paths[i], '/') + 1;
            if (!strncmp(base, prefix, strlen(prefix)) ||
                (a->lang2[0] && !strncmp(base, other, strlen(other)))) {
                clash = 1;
                xlmc_error("prep: --out %s already holds %s%s%s shards (%s): remove them or use "
                           "another directory",
                           a->out, a->lang, a->lang2[0] ? "-" : "", a->lang2, paths[i]);
            }
        }
        shard_list_free(paths, n);
        if (clash) return -1;
    }
    return 0;
}

static int prep_run(const struct prep_args *a, struct comm *c) {
    struct prep p = {.a = a, .rank = c->rank};
    int fail = 0;
    p.tok = tokenizer_load(a->codes, a->vocab);
    fail = !p.tok;
    if (!fail && c->rank == 0 && mkdir_p(a->out)) fail = 1;
    if (!fail && c->rank == 0 && prep_check_out(a, p.tok)) fail = 1;
    c->allreduce_max_int(c, &fail, 1);
    if (fail) {
        if (p.tok) tokenizer_free(p.tok);
        return 1;
    }
    struct shard_meta meta = {.lang_id = shard_lang_id(a->lang),
                              .vocab_size = tokenizer_vocab_size(p.tok),
                              .vocab_hash = tokenizer_vocab_hash(p.tok),
                              .codes_hash = tokenizer_codes_hash(p.tok)};
    snprintf(meta.lang, sizeof meta.lang, "%s", a->lang);
    if (a->lang2[0]) {
        snprintf(meta.lang2, sizeof meta.lang2, "%s", a->lang2);
        meta.lang2_id = shard_lang_id(a->lang2);
    }
    for (int s = 0; s < N_SPLITS; s++) {
        snprintf(meta.split, sizeof meta.split, "%s", SPLIT_NAMES[s]);
        shard_writer_init(&p.w[s], &meta);
    }
    p.t0 = p.last_print = now_seconds();
    if (a->lang2[0]) /* file pairs r, r + R, ... */
        for (int i = c->rank; 2 * i < a->n_inputs && !fail; i += c->world)
            fail = prep_pair_files(&p, a->inputs[2 * i], a->inputs[2 * i + 1]) != 0;
    else
        for (int i = c->rank; i < a->n_inputs && !fail; i += c->world)
            fail = prep_file(&p, a->inputs[i]) != 0;
    for (int s = 0; s < N_SPLITS && !fail; s++)
        fail = prep_flush(&p, s) != 0;
    if (!fail) prep_progress(&p, 1);
    double tot[5] = {p.sentences, p.tokens, p.bytes, p.skipped_empty, p.skipped_identical},
           secs = now_seconds() - p.t0;
    c->allreduce_max_int(c, &fail, 1);
    c->allreduce_sum_f64(c, tot, 5);
    c->allreduce_sum_f64(c, &secs, 1);
    secs = secs / c->world > 1e-9 ? secs / c->world : 1e-9; /* mean wall time of a rank */
    if (!fail && tot[0] == 0) {
        if (c->rank == 0)
            xlmc_error("prep: the --input files (%s%s) hold no non-empty line: nothing to write",
                       a->inputs[0], a->n_inputs > 1 ? ", ..." : "");
        fail = 1;
    }
    if (fail) /* all or nothing: no rank keeps shards of a failed prep */
        for (int i = 0; i < p.n_written; i++)
            remove(p.written[i]);
    else if (c->rank == 0 && a->lang2[0])
        fprintf(stderr,
                "prep: %s-%s: %.0f pairs, %.0f tokens from %.1f MB on %d rank(s) -> %s; left out: "
                "%.0f pairs with an empty side, %.0f with identical sides%s\n",
                a->lang, a->lang2, tot[0], tot[1], tot[2] / 1e6, c->world, a->out, tot[3], tot[4],
                a->keep_identical ? " (--keep-identical)" : "");
    else if (c->rank == 0)
        fprintf(stderr,
                "prep: %s: %.0f sentences, %.0f tokens from %.1f MB on %d rank(s) -> %s "
                "(%.2f MB/s, %.0f tokens/s in all)\n",
                a->lang, tot[0], tot[1], tot[2] / 1e6, c->world, a->out, tot[2] / 1e6 / secs,
                tot[1] / secs);
    for (int i = 0; i < p.n_written; i++)
        free(p.written[i]);
    free(p.written);
    for (int s = 0; s < N_SPLITS; s++)
        shard_writer_free(&p.w[s]);
    tokenizer_free(p.tok);
    return fail ? 1 : 0;
}

int cmd_prep(int argc, char **argv) {
    struct prep_args a;
    int rc = prep_parse(argc, argv, &a);
    if (rc) {
        free(a.inputs);
        return rc == 1 ? 0 : rc;
    }
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        free(a.inputs);
        return xlmc_error("prep: MPI_Init failed"), 1;
    }
    struct comm *c = comm_mpi_create();
    rc = prep_run(&a, c);
    comm_destroy(c);
    if (!inited) MPI_Finalize();
    free(a.inputs);
    return rc;
}

/* ---- data-info ---- */

/* The sentence-pair shards of a directory, per split and (lang, lang2) as written. */
struct pair_counts {
    int64_t pairs[N_SPLITS][XLMC_MAX_LANGS][XLMC_MAX_LANGS];
    int64_t tokens[N_SPLITS][XLMC_MAX_LANGS][XLMC_MAX_LANGS];
    int shards[N_SPLITS][XLMC_MAX_LANGS][XLMC_MAX_LANGS];
    int64_t total;
};

/* Reads and checks every pairs-<split>-*.h5 of dir (against *hash when set; the first shard
 * sets *hash, *codes and *vsize when no monolingual one did). 0, or -1 naming the shard. */
static int count_pairs(const char *dir, uint64_t *hash, uint64_t *codes, int64_t *vsize,
                       struct pair_counts *pc) {
    for (int s = 0; s < N_SPLITS; s++) {
        char split[32], **paths;
        int n;
        snprintf(split, sizeof split, "pairs-%s", SPLIT_NAMES[s]);
        if (shard_list(dir, split, &paths, &n)) return -1;
        int rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            struct shard sh;
            if ((rc = shard_read_kind(paths[i], *hash, 1, 1, &sh))) break;
            if (!*vsize) {
                *hash = sh.meta.vocab_hash;
                *codes = sh.meta.codes_hash;
                *vsize = sh.meta.vocab_size;
            }
            int a = sh.meta.lang_id, b = sh.meta.lang2_id;
            pc->pairs[s][a][b] += sh.meta.n_sentences / 2;
            pc->tokens[s][a][b] += sh.meta.n_tokens;
            pc->shards[s][a][b]++;
            pc->total++;
            shard_free(&sh);
        }
        shard_list_free(paths, n);
        if (rc) return -1;
    }
    return 0;
}

int cmd_data_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        int help = argc == 2;
        fprintf(help ? stdout : stderr,
                "usage: xlmc data-info DIR\n\nReads and checks every shard of DIR (written by "
                "`xlmc prep`) and prints sentences, tokens and shards per split and language,\n"
                "the sentence pairs of `xlmc prep --pair` (pairs-<split>-*.h5) per split and\n"
                "language pair, and the vocabulary hash. Exits 1 naming the first shard that is\n"
                "unreadable, corrupt or of another vocabulary.\n");
        return help ? 0 : 2;
    }
    const char *dir = argv[1];
    uint64_t hash = 0, codes = 0;
    /* The directory's dictionary (written by prep) is the reference: a foreign shard is named. */
    char vpath[XLMC_PATH_MAX], cpath[XLMC_PATH_MAX];
    if (xlmc_path(vpath, sizeof vpath, "%s/vocab", dir) ||
        xlmc_path(cpath, sizeof cpath, "%s/codes", dir))
        return 1;
    FILE *vf = fopen(vpath, "rb");
    if (vf) {
        fclose(vf);
        struct tokenizer *tok = tokenizer_load(cpath, vpath);
        if (!tok) return 1;
        hash = tokenizer_vocab_hash(tok);
        tokenizer_free(tok);
    }
    int64_t vsize = 0, total = 0;
    int64_t n_tok[N_SPLITS][XLMC_MAX_LANGS] = {{0}}, n_sent[N_SPLITS][XLMC_MAX_LANGS] = {{0}};
    int n_shards[N_SPLITS][XLMC_MAX_LANGS] = {{0}};
    for (int s = 0; s < N_SPLITS; s++) {
        char **paths;
        int n;
        if (shard_list(dir, SPLIT_NAMES[s], &paths, &n)) return 1;
        int rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            struct shard sh;
            if ((rc = shard_read(paths[i], hash, 1, &sh))) break;
            if (!vsize) {
                hash = sh.meta.vocab_hash;
                codes = sh.meta.codes_hash;
                vsize = sh.meta.vocab_size;
            }
            int k = sh.meta.lang_id;
            n_tok[s][k] += sh.meta.n_tokens;
            n_sent[s][k] += sh.meta.n_sentences;
            n_shards[s][k]++;
            total++;
            shard_free(&sh);
        }
        shard_list_free(paths, n);
        if (rc) return 1;
    }
    struct pair_counts pc;
    memset(&pc, 0, sizeof pc);
    if (count_pairs(dir, &hash, &codes, &vsize, &pc)) return 1;
    if (!total && !pc.total)
        return xlmc_error("%s: no shards (<split>-*.h5 or pairs-<split>-*.h5): prepare it with "
                          "`xlmc prep`",
                          dir),
               1;
    printf("%s: %lld shards, vocabulary %lld words, vocab_hash %016llx, codes_hash %016llx\n", dir,
           (long long)(total + pc.total), (long long)vsize, (unsigned long long)hash,
           (unsigned long long)codes);
    if (total) {
        printf("%-6s %-5s %7s %12s %14s\n", "split", "lang", "shards", "sentences", "tokens");
        for (int s = 0; s < N_SPLITS; s++)
            for (int k = 0; k < XLMC_MAX_LANGS; k++)
                if (n_shards[s][k])
                    printf("%-6s %-5s %7d %12lld %14lld\n", SPLIT_NAMES[s], shard_lang_code(k),
                           n_shards[s][k], (long long)n_sent[s][k], (long long)n_tok[s][k]);
    }
    if (pc.total) {
        printf("%-6s %-5s %7s %12s %14s\n", "split", "pair", "shards", "pairs", "tokens");
        for (int s = 0; s < N_SPLITS; s++)
            for (int a = 0; a < XLMC_MAX_LANGS; a++)
                for (int b = 0; b < XLMC_MAX_LANGS; b++)
                    if (pc.shards[s][a][b])
                        printf("%-6s %s-%s %7d %12lld %14lld\n", SPLIT_NAMES[s], shard_lang_code(a),
                               shard_lang_code(b), pc.shards[s][a][b], (long long)pc.pairs[s][a][b],
                               (long long)pc.tokens[s][a][b]);
    }
    return 0;
}
