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
    const char **inputs;
    int n_inputs;
    long valid_every;  /* lines; 0 = everything is train */
    long shard_tokens; /* tokens per shard before a new one starts */
};

static void prep_usage(FILE *f) {
    fprintf(f, "usage: xlmc prep --lang L --codes CODES --vocab VOCAB --out DIR\n"
               "                 [--valid-every N] [--shard-tokens N] --input FILE...\n\n"
               "Tokenizes raw text (one sentence or paragraph per line, plain or .gz; empty lines\n"
               "are skipped) with the fastBPE pair CODES/VOCAB and writes HDF5 token shards\n"
               "DIR/<split>-<L>-r<RANK>-<NNNNN>.h5 (schema: data/README.md) and copies of CODES\n"
               "and VOCAB as DIR/codes and DIR/vocab.\n\n"
               "  --lang L          en or de (language ids de = 0, en = 1, as XLM)\n"
               "  --valid-every N   line k of a file (from 1) goes to valid when k %% N == 0, to\n"
               "                    test when k %% N == N/2, else to train (default 100; 0: all\n"
               "                    train; N >= 3)\n"
               "  --shard-tokens N  tokens per shard (default 16777216)\n\n"
               "With mpirun -np R, rank r tokenizes input files r, r+R, ... .\n");
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
    const char *bad = !a->lang ? "--lang L is required"
                      : shard_lang_id(a->lang) < 0
                          ? "--lang must be a known language code: de or en"
                      : !a->codes    ? "--codes CODES is required"
                      : !a->vocab    ? "--vocab VOCAB is required"
                      : !a->out      ? "--out DIR is required"
                      : !a->n_inputs ? "--input FILE... is required"
                                     : NULL;
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
};

static int prep_flush(struct prep *p, int split) {
    struct shard_writer *w = &p->w[split];
    if (!w->meta.n_sentences) return 0;
    char *path = xmalloc(strlen(p->a->out) + 64);
    sprintf(path, "%s/%s-%s-r%03d-%05d.h5", p->a->out, SPLIT_NAMES[split], p->a->lang, p->rank,
            p->seq[split]++);
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

/* Tokenize one input file into the split writers. */
static int prep_file(struct prep *p, const char *path) {
    gzFile in = gzopen(path, "rb");
    if (!in) return xlmc_error("prep: cannot open --input %s: %s", path, strerror(errno));
    gzbuffer(in, 1 << 18);
    size_t cap = 1 << 16, len;
    char *line = xmalloc(cap), why[256];
    struct id_buf ids = {0};
    long lineno = 0;
    int rc = 0;
    for (int s = 0; s < N_SPLITS; s++)
        shard_writer_add_source(&p->w[s], path);
    while (!rc) {
        /* one whole line, however long */
        len = 0;
        int got = 0;
        z_off_t at = gztell(in);
        while (gzgets(in, line + len, (int)(cap - len))) {
            got = 1;
            len += strlen(line + len);
            if ((len && line[len - 1] == '\n') || len + 1 < cap) break; /* newline or EOF */
            cap *= 2;
            line = xrealloc(line, cap);
        }
        if (!got) break;
        lineno++;
        if (gztell(in) - at != (z_off_t)len) { /* gzgets read past a NUL that strlen stops at */
            rc = xlmc_error("%s:%ld: NUL byte in the line (not a text file?)", path, lineno);
            break;
        }
        p->bytes += (double)len;
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (!len) continue;
        ids.n = 0;
        if (tokenizer_encode(p->tok, p->a->lang, line, len, &ids, why, sizeof why)) {
            rc = xlmc_error("%s:%ld: %s", path, lineno, why);
            break;
        }
        if (!ids.n) continue; /* only characters the normalizer removes */
        long v = p->a->valid_every;
        int split = v && lineno % v == 0       ? SPLIT_VALID
                    : v && lineno % v == v / 2 ? SPLIT_TEST
                                               : SPLIT_TRAIN;
        shard_writer_append(&p->w[split], ids.ids, ids.n);
        p->tokens += (double)ids.n;
        p->sentences += 1;
        if (p->w[split].meta.n_tokens >= p->a->shard_tokens) rc = prep_flush(p, split);
        prep_progress(p, 0);
    }
    int errnum = 0;
    const char *gzmsg = gzerror(in, &errnum);
    if (!rc && errnum != Z_OK && errnum != Z_STREAM_END)
        rc = xlmc_error("prep: read error in %s: %s (truncated .gz?)", path, gzmsg);
    gzclose(in);
    id_buf_free(&ids);
    free(line);
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
        char **paths, prefix[64];
        int n, clash = 0;
        snprintf(prefix, sizeof prefix, "%s-%s-", SPLIT_NAMES[s], a->lang);
        if (shard_list(a->out, SPLIT_NAMES[s], &paths, &n)) return -1;
        for (int i = 0; i < n && !clash; i++) {
            const char *base = strrchr(paths[i], '/') + 1;
            if (!strncmp(base, prefix, strlen(prefix))) {
                clash = 1;
                xlmc_error("prep: --out %s already holds %s shards (%s): remove them or use "
                           "another directory",
                           a->out, a->lang, paths[i]);
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
    for (int s = 0; s < N_SPLITS; s++) {
        snprintf(meta.split, sizeof meta.split, "%s", SPLIT_NAMES[s]);
        shard_writer_init(&p.w[s], &meta);
    }
    p.t0 = p.last_print = now_seconds();
    for (int i = c->rank; i < a->n_inputs && !fail; i += c->world)
        fail = prep_file(&p, a->inputs[i]) != 0;
    for (int s = 0; s < N_SPLITS && !fail; s++)
        fail = prep_flush(&p, s) != 0;
    if (!fail) prep_progress(&p, 1);
    double tot[3] = {p.sentences, p.tokens, p.bytes}, secs = now_seconds() - p.t0;
    c->allreduce_max_int(c, &fail, 1);
    c->allreduce_sum_f64(c, tot, 3);
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

int cmd_data_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        int help = argc == 2;
        fprintf(help ? stdout : stderr,
                "usage: xlmc data-info DIR\n\nReads and checks every shard of DIR (written by "
                "`xlmc prep`) and prints sentences, tokens and shards per split and language,\n"
                "and the vocabulary hash. Exits 1 naming the first shard that is unreadable,\n"
                "corrupt or of another vocabulary.\n");
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
    if (!total)
        return xlmc_error("%s: no shards (<split>-*.h5): prepare it with `xlmc prep`", dir), 1;
    printf("%s: %lld shards, vocabulary %lld words, vocab_hash %016llx, codes_hash %016llx\n", dir,
           (long long)total, (long long)vsize, (unsigned long long)hash, (unsigned long long)codes);
    printf("%-6s %-5s %7s %12s %14s\n", "split", "lang", "shards", "sentences", "tokens");
    for (int s = 0; s < N_SPLITS; s++)
        for (int k = 0; k < XLMC_MAX_LANGS; k++)
            if (n_shards[s][k])
                printf("%-6s %-5s %7d %12lld %14lld\n", SPLIT_NAMES[s], shard_lang_code(k),
                       n_shards[s][k], (long long)n_sent[s][k], (long long)n_tok[s][k]);
    return 0;
}
