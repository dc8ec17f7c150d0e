/* hf_vocab.c — fastBPE <-> Hugging Face tokenizer files (see hf_vocab.h). Works on the text of
 * the files, not on a loaded tokenizer, so that nothing (counts, order) is normalized away. */
#include "data/hf_vocab.h"

#include "core/util.h"
#include "data/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const SPECIALS[TOK_NUM_SPECIAL] = {
    "<s>",        "</s>",       "<pad>",      "<unk>",      "<special0>",
    "<special1>", "<special2>", "<special3>", "<special4>", "<special5>",
    "<special6>", "<special7>", "<special8>", "<special9>"};

/* Lines of a two- or three-field text file: fields[i][0..nf). */
struct table {
    char *(*f)[3];
    size_t n, cap;
};

static void table_free(struct table *t) {
    for (size_t i = 0; i < t->n; i++)
        for (int k = 0; k < 3; k++)
            free(t->f[i][k]);
    free(t->f);
}

/* Read "a count" (nf 2) or "a b count" (nf 3) lines; nf_min fields at least, nf at most. */
static int table_read(struct table *t, const char *path, int nf_min, int nf) {
    memset(t, 0, sizeof *t);
    FILE *fp = fopen(path, "r");
    if (!fp) return xlmc_error("cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) > 0) {
        lineno++;
        if (nf_min == 2 && nf == 2 && !strncmp(line, "#version", 8)) continue; /* merges.txt */
        char *save = NULL, *tok[4];
        int k = 0;
        for (char *p = strtok_r(line, " \r\n", &save); p; p = strtok_r(NULL, " \r\n", &save)) {
            if (k == nf) {
                k = nf + 1;
                break;
            }
            tok[k++] = p;
        }
        if (k < nf_min || k > nf) {
            rc = xlmc_error("%s:%ld: expected %d space-separated fields", path, lineno, nf);
            break;
        }
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 1024;
            t->f = xrealloc(t->f, t->cap * sizeof *t->f);
        }
        for (int i = 0; i < 3; i++)
            t->f[t->n][i] = i < k ? xstrdup(tok[i]) : NULL;
        t->n++;
    }
    free(line);
    fclose(fp);
    if (rc) table_free(t);
    return rc;
}

/* Finish a file written at tmp: close, check, rename into place (or remove). */
static int finish_file(FILE *f, const char *tmp, const char *path, int ok) {
    if (fflush(f) != 0) ok = 0;
    if (fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) == 0) return 0;
    int e = errno;
    unlink(tmp);
    return xlmc_error("cannot write %s: %s", path, strerror(e));
}

int hfv_from_fastbpe(const char *codes_path, const char *vocab_path, const char *dir) {
    struct table codes, vocab;
    if (table_read(&codes, codes_path, 3, 3)) return -1;
    if (table_read(&vocab, vocab_path, 2, 2)) {
        table_free(&codes);
        return -1;
    }
    char path[XLMC_PATH_MAX], tmp[XLMC_PATH_MAX];
    int rc = -1;
    /* vocab.json: ids in order, the specials first, in XLMTokenizer's spelling */
    json_t *o = json_object();
    for (int i = 0; i < TOK_NUM_SPECIAL; i++)
        json_object_set_new(o, SPECIALS[i], json_integer(i));
    for (size_t i = 0; i < vocab.n; i++) {
        const char *w = vocab.f[i][0];
        size_t len = strlen(w);
        char *hf = xmalloc(len + 5);
        if (len > 2 && !strcmp(w + len - 2, "@@"))
            snprintf(hf, len + 5, "%.*s", (int)len - 2, w);
        else
            snprintf(hf, len + 5, "%s</w>", w);
        int dup = json_object_get(o, hf) != NULL;
        if (!dup) json_object_set_new(o, hf, json_integer(TOK_NUM_SPECIAL + (json_int_t)i));
        free(hf);
        if (dup) {
            xlmc_error("%s:%zu: word '%s' appears twice (or is a special symbol)", vocab_path,
                       i + 1, w);
            json_decref(o);
            goto done;
        }
    }
    if (xlmc_path(path, sizeof path, "%s/vocab.json", dir) ||
        xlmc_path(tmp, sizeof tmp, "%s.tmp", path)) {
        json_decref(o);
        goto done;
    }
    int jrc = json_dump_file(o, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (jrc || rename(tmp, path) != 0) {
        unlink(tmp);
        xlmc_error("cannot write %s", path);
        goto done;
    }
    /* merges.txt: "a b" per line in rank order, what XLMTokenizer reads */
    if (xlmc_path(path, sizeof path, "%s/merges.txt", dir) ||
        xlmc_path(tmp, sizeof tmp, "%s.tmp", path))
        goto done;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        xlmc_error("cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    int ok = 1;
    for (size_t i = 0; ok && i < codes.n; i++)
        ok = fprintf(f, "%s %s\n", codes.f[i][0], codes.f[i][1]) > 0;
    if (finish_file(f, tmp, path, ok)) goto done;
    if (xlmc_path(path, sizeof path, "%s/%s", dir, HFV_COUNTS_FILE) ||
        xlmc_path(tmp, sizeof tmp, "%s.tmp", path))
        goto done;
    if (!(f = fopen(tmp, "w"))) {
        xlmc_error("cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    ok = fprintf(f, "codes %zu\n", codes.n) > 0;
    for (size_t i = 0; ok && i < codes.n; i++)
        ok = fprintf(f, "%s\n", codes.f[i][2]) > 0;
    ok = ok && fprintf(f, "vocab %zu\n", vocab.n) > 0;
    for (size_t i = 0; ok && i < vocab.n; i++)
        ok = fprintf(f, "%s\n", vocab.f[i][1]) > 0;
    if (finish_file(f, tmp, path, ok)) goto done;
    rc = 0;
done:
    table_free(&codes);
    table_free(&vocab);
    return rc;
}

/* Read fastbpe_counts.txt if it matches (n_codes, n_vocab); NULL arrays when absent or not
 * matching (reported as a note by the caller through *synthesized). */
static int read_counts(const char *dir, size_t n_codes, size_t n_vocab, char ***cc, char ***vc) {
    char path[XLMC_PATH_MAX];
    *cc = *vc = NULL;
    if (xlmc_path(path, sizeof path, "%s/%s", dir, HFV_COUNTS_FILE)) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char **c = xcalloc(n_codes + 1, sizeof *c), **v = xcalloc(n_vocab + 1, sizeof *v);
    char *line = NULL;
    size_t cap = 0, nc = 0, nv = 0, want_c = 0, want_v = 0;
    int section = 0, ok = 1;
    ssize_t got;
    while (ok && (got = getline(&line, &cap, f)) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (sscanf(line, "codes %zu", &want_c) == 1)
            section = 1;
        else if (sscanf(line, "vocab %zu", &want_v) == 1)
            section = 2;
        else if (section == 1 && nc < n_codes)
            c[nc++] = xstrdup(line);
        else if (section == 2 && nv < n_vocab)
            v[nv++] = xstrdup(line);
        else
            ok = 0;
    }
    free(line);
    fclose(f);
    if (ok && nc == n_codes && nv == n_vocab && want_c == n_codes && want_v == n_vocab) {
        *cc = c;
        *vc = v;
        return 0;
    }
    for (size_t i = 0; i < nc; i++)
        free(c[i]);
    for (size_t i = 0; i < nv; i++)
        free(v[i]);
    free(c);
    free(v);
    xlmc_warn("%s does not match vocab.json/merges.txt (%zu merges, %zu words); ignoring it", path,
              n_codes, n_vocab);
    return 0;
}

static void free_strs(char **s, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

int hfv_to_fastbpe(const char *dir, const char *codes_out, const char *vocab_out,
                   int *synthesized) {
    char path[XLMC_PATH_MAX], tmp[XLMC_PATH_MAX];
    if (xlmc_path(path, sizeof path, "%s/vocab.json", dir)) return -1;
    json_error_t err;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return xlmc_error("%s:%d: not a JSON object of word -> id (%s)", path, err.line,
                          o ? "wrong type" : err.text);
    }
    size_t n = json_object_size(o);
    const char **by_id = xcalloc(n + 1, sizeof *by_id);
    const char *key;
    json_t *val;
    int rc = -1;
    json_object_foreach(o, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || (size_t)id >= n || by_id[id]) {
            xlmc_error("%s: the id of '%s' is not a unique integer in [0, %zu)", path, key, n);
            goto out_json;
        }
        by_id[id] = key;
    }
    if (n < TOK_NUM_SPECIAL) {
        xlmc_error("%s: %zu words; XLM's dictionary starts with %d special symbols", path, n,
                   TOK_NUM_SPECIAL);
        goto out_json;
    }
    for (int i = 0; i < TOK_NUM_SPECIAL; i++)
        if (strcmp(by_id[i], SPECIALS[i])) {
            xlmc_error("%s: id %d is '%s', XLM's dictionary has '%s' there", path, i, by_id[i],
                       SPECIALS[i]);
            goto out_json;
        }
    struct table merges;
    if (xlmc_path(path, sizeof path, "%s/merges.txt", dir) || table_read(&merges, path, 2, 3))
        goto out_json;
    size_t n_vocab = n - TOK_NUM_SPECIAL;
    char **cc, **vc;
    read_counts(dir, merges.n, n_vocab, &cc, &vc);
    *synthesized = cc == NULL;
    char buf[32];
    FILE *f = xlmc_path(tmp, sizeof tmp, "%s.tmp", codes_out) ? NULL : fopen(tmp, "w");
    if (!f) {
        xlmc_error("cannot create %s: %s", tmp, strerror(errno));
        goto out_merges;
    }
    int ok = 1;
    for (size_t i = 0; ok && i < merges.n; i++) {
        snprintf(buf, sizeof buf, "%zu", merges.n - i);
        ok = fprintf(f, "%s %s %s\n", merges.f[i][0], merges.f[i][1], cc ? cc[i] : buf) > 0;
    }
    if (finish_file(f, tmp, codes_out, ok)) goto out_merges;
    if (xlmc_path(tmp, sizeof tmp, "%s.tmp", vocab_out) || !(f = fopen(tmp, "w"))) {
        xlmc_error("cannot create %s: %s", tmp, strerror(errno));
        unlink(codes_out);
        goto out_merges;
    }
    for (size_t i = 0; ok && i < n_vocab; i++) {
        const char *w = by_id[TOK_NUM_SPECIAL + i];
        size_t len = strlen(w);
        snprintf(buf, sizeof buf, "%zu", n_vocab - i);
        const char *count = vc ? vc[i] : buf;
        if (len > 4 && !strcmp(w + len - 4, "</w>"))
            ok = fprintf(f, "%.*s %s\n", (int)len - 4, w, count) > 0;
        else
            ok = fprintf(f, "%s@@ %s\n", w, count) > 0;
    }
    if (finish_file(f, tmp, vocab_out, ok)) {
        unlink(codes_out);
        goto out_merges;
    }
    rc = 0;
out_merges:
    free_strs(cc, merges.n);
    free_strs(vc, n_vocab);
    table_free(&merges);
out_json:
    free(by_id);
    json_decref(o);
    return rc;
}
