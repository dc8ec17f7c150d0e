/* test_hf_vocab_roundtrip — fastBPE <-> vocab.json/merges.txt on the released xlm-ende pair:
 *  1. codes/vocab -> vocab.json/merges.txt/fastbpe_counts.txt -> codes/vocab is byte-identical;
 *  2. vocab.json keeps XLM's ids: the 14 specials at 0..13, then the vocab file in order, in
 *     XLMTokenizer's spelling ("x</w>" for word ends, "x" for "x@@"), checked on the JSON
 *     itself; the tokenizer read from it has the same vocabulary and merges hashes;
 *  3. without fastbpe_counts.txt the counts are synthesized but words and merges are the same;
 *  4. a vocab.json whose id 0 is not <s> is refused with a message.
 * usage: test_hf_vocab_roundtrip SHARED_DIR WORK_DIR  (WORK_DIR/hf keeps the converted files
 * for the Python comparison with XLMTokenizer) */
#include "data/hf_vocab.h"
#include "data/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

/* Count "word count" lines of the same words (first field) in both files. */
static int same_words(const char *a, const char *b, int fields) {
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    char la[1024], lb[1024];
    int same = fa && fb;
    while (same && fgets(la, sizeof la, fa)) {
        if (!fgets(lb, sizeof lb, fb)) same = 0;
        /* cut the last (count) field */
        char *ca = strrchr(la, ' '), *cb = strrchr(lb, ' ');
        if (!ca || !cb)
            same = 0;
        else
            *ca = *cb = 0;
        same = same && !strcmp(la, lb);
    }
    if (same && fgets(lb, sizeof lb, fb)) same = 0;
    (void)fields;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_hf_vocab_roundtrip SHARED_DIR WORK_DIR\n");
        return 2;
    }
    char codes[4096], vocab[4096], hf[4096], c2[4096], v2[4096], p[4400];
    snprintf(codes, sizeof codes, "%s/xlm-ende/codes", argv[1]);
    snprintf(vocab, sizeof vocab, "%s/xlm-ende/vocab", argv[1]);
    snprintf(hf, sizeof hf, "%s/hf", argv[2]);
    snprintf(c2, sizeof c2, "%s/codes", argv[2]);
    snprintf(v2, sizeof v2, "%s/vocab", argv[2]);
    mkdir(argv[2], 0777);
    mkdir(hf, 0777);

    /* 1. there and back */
    CHECK(hfv_from_fastbpe(codes, vocab, hf) == 0, "fastBPE -> HF failed");
    int synth = -1;
    CHECK(hfv_to_fastbpe(hf, c2, v2, &synth) == 0, "HF -> fastBPE failed");
    CHECK(synth == 0, "counts were synthesized although fastbpe_counts.txt exists");
    CHECK(same_file(codes, c2), "codes differ after the round trip");
    CHECK(same_file(vocab, v2), "vocab differs after the round trip");

    /* 2. ids in vocab.json, read independently of xlmc's converter */
    snprintf(p, sizeof p, "%s/vocab.json", hf);
    json_error_t err;
    json_t *o = json_load_file(p, 0, &err);
    struct tokenizer *ref = tokenizer_load(codes, vocab);
    CHECK(o && ref, "cannot load vocab.json or the reference pair");
    if (o && ref) {
        static const char *sp[] = {"<s>", "</s>", "<pad>", "<unk>", "<special0>", "<special9>"};
        static const int sp_id[] = {0, 1, 2, 3, 4, 13};
        for (int i = 0; i < 6; i++)
            CHECK(json_integer_value(json_object_get(o, sp[i])) == sp_id[i], "%s is not id %d",
                  sp[i], sp_id[i]);
        CHECK((int)json_object_size(o) == tokenizer_vocab_size(ref), "vocab.json has %zu words",
              json_object_size(o));
        FILE *fv = fopen(vocab, "r");
        char line[1024], word[1100];
        int id = 14, bad = 0;
        while (fv && fgets(line, sizeof line, fv)) {
            *strrchr(line, ' ') = 0;
            size_t n = strlen(line);
            if (n > 2 && !strcmp(line + n - 2, "@@"))
                snprintf(word, sizeof word, "%.*s", (int)n - 2, line);
            else
                snprintf(word, sizeof word, "%s</w>", line);
            json_t *v = json_object_get(o, word);
            if (!v || json_integer_value(v) != id) bad++;
            id++;
        }
        if (fv) fclose(fv);
        CHECK(bad == 0 && id == 64699, "%d of %d vocab words have another id in vocab.json", bad,
              id - 14);
        char mj[4200];
        snprintf(mj, sizeof mj, "%s/merges.txt", hf);
        struct tokenizer *t2 = tokenizer_load_hf(p, mj);
        CHECK(t2 && tokenizer_vocab_hash(t2) == tokenizer_vocab_hash(ref) &&
                  tokenizer_codes_hash(t2) == tokenizer_codes_hash(ref),
              "the tokenizer read from vocab.json/merges.txt differs from the fastBPE pair");
        tokenizer_free(t2);
    }
    json_decref(o);
    tokenizer_free(ref);

    /* 3. no counts file: synthesized counts, same words and merges */
    snprintf(p, sizeof p, "%s/%s", hf, HFV_COUNTS_FILE);
    char moved[4500];
    snprintf(moved, sizeof moved, "%s.away", p);
    rename(p, moved);
    CHECK(hfv_to_fastbpe(hf, c2, v2, &synth) == 0 && synth == 1,
          "conversion without counts failed or did not report synthesized counts");
    CHECK(same_words(codes, c2, 3) && same_words(vocab, v2, 2),
          "words or merges changed when counts are synthesized");
    rename(moved, p);

    /* 4. a vocab.json that is not XLM's dictionary */
    char bad_dir[4200];
    snprintf(bad_dir, sizeof bad_dir, "%s/bad", argv[2]);
    mkdir(bad_dir, 0777);
    snprintf(p, sizeof p, "%s/vocab.json", bad_dir);
    FILE *f = fopen(p, "w");
    fputs("{\"<pad>\": 0, \"<s>\": 1}", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/merges.txt", bad_dir);
    f = fopen(p, "w");
    fclose(f);
    snprintf(c2, sizeof c2, "%s/bad/codes", argv[2]);
    snprintf(v2, sizeof v2, "%s/bad/vocab", argv[2]);
    CHECK(hfv_to_fastbpe(bad_dir, c2, v2, &synth) == -1, "a vocab.json without XLM's specials "
                                                         "was accepted");
    FILE *left = fopen(c2, "r");
    CHECK(!left, "a refused conversion left %s behind", c2);
    if (left) fclose(left);
    printf("%s\n", failures ? "FAILED" : "OK: xlm-ende converts both ways, ids and bytes kept");
    return failures ? 1 : 0;
}
