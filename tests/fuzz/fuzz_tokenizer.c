/* fuzz_tokenizer — libFuzzer harness for the fastBPE codes/vocab readers and the encoder
 * (data/tokenizer.c, normalize, Moses). Input: CODES \0 VOCAB \0 LINE; the first two are
 * written to files and loaded, then LINE is encoded in en or de (the parity of its length).
 * Property: loading fails with an error or the ids of LINE are all inside the vocabulary, and
 * decoding them returns a string. */
#define _GNU_SOURCE
#include "data/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char codes_path[64], vocab_path[64];

static int write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[] = "/tmp/fuzz_tokenizer.XXXXXX";
    if (!mkdtemp(dir)) abort();
    snprintf(codes_path, sizeof codes_path, "%s/codes", dir);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *z1 = memchr(data, 0, size);
    if (!z1) return 0;
    const uint8_t *v = z1 + 1, *end = data + size;
    const uint8_t *z2 = memchr(v, 0, (size_t)(end - v));
    if (!z2) return 0;
    const uint8_t *line = z2 + 1;
    size_t line_len = (size_t)(end - line);
    if (write_file(codes_path, data, (size_t)(z1 - data)) ||
        write_file(vocab_path, v, (size_t)(z2 - v)))
        abort();
    struct tokenizer *tok = tokenizer_load(codes_path, vocab_path);
    if (!tok) return 0;
    const char *lang = line_len % 2 ? "de" : "en";
    struct id_buf ids = {0};
    char why[256];
    if (tokenizer_encode(tok, lang, (const char *)line, line_len, &ids, why, sizeof why) == 0) {
        int V = tokenizer_vocab_size(tok);
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= V) abort();
        char *text = tokenizer_decode(tok, lang, ids.ids, ids.n);
        if (!text) abort();
        free(text);
        char *pieces =
            tokenizer_encode_pieces(tok, lang, (const char *)line, line_len, why, sizeof why);
        if (!pieces) abort(); /* encode succeeded, so must this */
        free(pieces);
    }
    id_buf_free(&ids);
    tokenizer_free(tok);
    return 0;
}
