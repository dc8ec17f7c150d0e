/* test_tok_matches_hf — xlmc's tokenizer against Hugging Face XLMTokenizer + sacremoses on
 * real English and German lines (expected ids made by tokenizer/make_tok_reference.py).
 * Also: the vocab.json/merges.txt loader gives the same ids and hashes; decoding the reference
 * ids gives sacremoses' detokenized text (lines with "detok", without <unk>); four threads
 * encoding at once on one tokenizer get the same ids as one.
 * usage: test_tok_matches_hf SHARED_DIR REAL.jsonl.gz [SYNTHETIC.jsonl.gz...] */
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/tokenizer.h"

/* Write the Hugging Face form of the pair (vocab.json with "x</w>" / "x" words, merges.txt)
 * into dir, as make_tok_reference.py does for the reference, to test the second loader. */
static int write_hf_pair(const struct tokenizer *tok, const char *codes, const char *dir) {
    char path[4096];
    json_t *o = json_object();
    for (int id = 0; id < tokenizer_vocab_size(tok); id++) {
        const char *w = tokenizer_word(tok, id);
        size_t len = strlen(w);
        char *hf = malloc(len + 5);
        if (id < TOK_NUM_SPECIAL)
            snprintf(hf, len + 5, "%s", w);
        else if (len >= 2 && !strcmp(w + len - 2, "@@"))
            snprintf(hf, len + 5, "%.*s", (int)len - 2, w);
        else
            snprintf(hf, len + 5, "%s</w>", w);
        json_object_set_new(o, hf, json_integer(id));
        free(hf);
    }
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    int rc = json_dump_file(o, path, 0);
    json_decref(o);
    FILE *in = fopen(codes, "r");
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    FILE *out = fopen(path, "w");
    if (rc || !in || !out) return -1;
    char a[1024], b[1024];
    long count;
    while (fscanf(in, "%1023s %1023s %ld", a, b, &count) == 3)
        fprintf(out, "%s %s\n", a, b);
    fclose(in);
    return fclose(out);
}

struct line {
    char lang[4];
    char *text;
    int32_t *ids;
    size_t n;
    char *detok; /* NULL when the fixture has none */
};

static struct line *read_fixture(const char *path, size_t *n_out) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    static char buf[1 << 20];
    struct line *lines = NULL;
    size_t n = 0;
    while (gzgets(f, buf, sizeof buf)) {
        json_error_t err;
        json_t *o = json_loads(buf, 0, &err);
        if (!o) {
            fprintf(stderr, "%s: bad JSON line %zu: %s\n", path, n + 1, err.text);
            exit(1);
        }
        lines = realloc(lines, (n + 1) * sizeof *lines);
        struct line *l = &lines[n++];
        snprintf(l->lang, sizeof l->lang, "%s", json_string_value(json_object_get(o, "lang")));
        l->text = strdup(json_string_value(json_object_get(o, "text")));
        json_t *ids = json_object_get(o, "ids"), *detok = json_object_get(o, "detok");
        l->n = json_array_size(ids);
        l->ids = malloc((l->n + 1) * sizeof *l->ids);
        for (size_t i = 0; i < l->n; i++)
            l->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        l->detok = detok ? strdup(json_string_value(detok)) : NULL;
        json_decref(o);
    }
    gzclose(f);
    *n_out = n;
    return lines;
}

static int same_ids(const struct tokenizer *tok, const struct line *l) {
    struct id_buf ids = {0};
    char why[256];
    int ok = tokenizer_encode(tok, l->lang, l->text, strlen(l->text), &ids, why, sizeof why) == 0 &&
             ids.n == l->n && (l->n == 0 || !memcmp(ids.ids, l->ids, l->n * sizeof *l->ids));
    id_buf_free(&ids);
    return ok;
}

struct job {
    const struct tokenizer *tok;
    const struct line *lines;
    size_t n, start;
    long same;
};

static void *thread_main(void *arg) {
    struct job *j = arg;
    for (size_t k = 0; k < j->n; k++) /* each thread starts elsewhere: the cache is contended */
        j->same += same_ids(j->tok, &j->lines[(j->start + k) % j->n]);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SHARED_DIR REAL.jsonl.gz [SYNTHETIC.jsonl.gz...]\n", argv[0]);
        return 2;
    }
    char codes[4096], vocab[4096];
    snprintf(codes, sizeof codes, "%s/xlm-ende/codes", argv[1]);
    snprintf(vocab, sizeof vocab, "%s/xlm-ende/vocab", argv[1]);
    struct tokenizer *tok = tokenizer_load(codes, vocab);
    if (!tok) return 1;
    int fails = 0;
    if (tokenizer_vocab_size(tok) != 64699) {
        fprintf(stderr, "FAIL: vocabulary size %d, expected 64699\n", tokenizer_vocab_size(tok));
        fails++;
    }
    char dir[] = "/tmp/test_tok_hfXXXXXX", vj[4096], mt[4096];
    if (!mkdtemp(dir) || write_hf_pair(tok, codes, dir)) {
        fprintf(stderr, "cannot write the Hugging Face files in %s\n", dir);
        return 1;
    }
    snprintf(vj, sizeof vj, "%s/vocab.json", dir);
    snprintf(mt, sizeof mt, "%s/merges.txt", dir);
    struct tokenizer *hf = tokenizer_load_hf(vj, mt);
    remove(vj);
    remove(mt);
    remove(dir);
    if (!hf) return 1;
    if (tokenizer_vocab_hash(hf) != tokenizer_vocab_hash(tok) ||
        tokenizer_codes_hash(hf) != tokenizer_codes_hash(tok)) {
        fprintf(stderr, "FAIL: the vocab.json/merges.txt route hashes differently\n");
        fails++;
    }
    for (int a = 2; a < argc; a++) {
        size_t n;
        struct line *lines = read_fixture(argv[a], &n);
        long same = 0, hf_same = 0, dec_total = 0, dec_same = 0, shown = 0;
        for (size_t k = 0; k < n; k++) {
            const struct line *l = &lines[k];
            int ok = same_ids(tok, l);
            same += ok;
            hf_same += same_ids(hf, l);
            if (!ok && shown++ < 5) {
                char why[256];
                char *p = tokenizer_encode_pieces(tok, l->lang, l->text, strlen(l->text), why,
                                                  sizeof why);
                fprintf(stderr, "MISMATCH [%s] %s\n  xlmc: %s\n  want:", l->lang, l->text,
                        p ? p : why);
                for (size_t i = 0; i < l->n; i++)
                    fprintf(stderr, " %s", tokenizer_word(tok, l->ids[i]));
                fprintf(stderr, "\n");
                free(p);
            }
            int has_unk = 0;
            for (size_t i = 0; i < l->n; i++)
                has_unk |= l->ids[i] == TOK_UNK;
            if (l->detok && !has_unk) {
                char *dec = tokenizer_decode(tok, l->lang, l->ids, l->n);
                int dok = !strcmp(dec, l->detok);
                dec_total++;
                dec_same += dok;
                if (!dok && dec_total - dec_same <= 3)
                    fprintf(stderr, "decode differs [%s]\n  xlmc: %s\n  want: %s\n", l->lang, dec,
                            l->detok);
                free(dec);
            }
        }
        struct job jobs[4];
        pthread_t th[4];
        struct tokenizer *fresh = tokenizer_load(codes, vocab); /* empty cache */
        for (int t = 0; t < 4; t++) {
            jobs[t] = (struct job){fresh, lines, n, (size_t)t * n / 4, 0};
            pthread_create(&th[t], NULL, thread_main, &jobs[t]);
        }
        long threaded = 0;
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            threaded += jobs[t].same;
        }
        tokenizer_free(fresh);
        printf("%s:\n  ids equal to the reference: %ld of %zu lines (%.2f%%)\n", argv[a], same, n,
               n ? 100.0 * same / n : 0.0);
        printf("  vocab.json/merges.txt loader: %ld of %zu; 4 threads at once: %ld of %zu\n",
               hf_same, n, threaded, 4 * n);
        if (dec_total)
            printf("  decode equals sacremoses' detokenizer on %ld of %ld lines without <unk> "
                   "(%.2f%%, must be >= 99%%)\n",
                   dec_same, dec_total, 100.0 * dec_same / dec_total);
        if (same != (long)n || hf_same != (long)n || threaded != 4 * (long)n) fails++;
        if (dec_same < 0.99 * dec_total) fails++;
        if (a == 2 && n < 2000) {
            fprintf(stderr, "FAIL: only %zu real lines (need >= 2000)\n", n);
            fails++;
        }
        for (size_t k = 0; k < n; k++) {
            free(lines[k].text);
            free(lines[k].ids);
            free(lines[k].detok);
        }
        free(lines);
    }
    tokenizer_free(tok);
    tokenizer_free(hf);
    printf(fails ? "FAIL\n" : "PASS\n");
    return fails ? 1 : 0;
}
