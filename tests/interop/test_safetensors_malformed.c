/* test_safetensors_malformed — the safetensors reader refuses every malformed file with a
 * message and never reads outside the file (run under ASan: every buffer is exactly the size
 * of the file), and `xlmc import-hf` names the tensor that is missing, unexpected, of another
 * shape or of an unsupported dtype, leaving nothing behind.
 *  1. a valid file written by st_write reads back (F32 values, F16 and BF16 conversion);
 *  2. hand-made lying headers: length past the file, offsets overlapping, past the data, with
 *     a hole, size != shape * dtype, unknown dtype, negative or overflowing shape, bad JSON,
 *     duplicate names, a truncated tensor;
 *  3. 4000 random mutations of a valid file's header (fixed seed): each is refused or, when
 *     accepted, every tensor is read (ASan checks the bounds);
 *  4. import-hf of hf_tiny with one tensor dropped, reshaped, added, or stored as I32.
 * usage: test_safetensors_malformed XLMC HF_TINY_DIR WORK_DIR */
#include "core/safetensors.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A file from a header text and a data section, in an exactly sized heap buffer. */
static unsigned char *make_file(const char *hdr, uint64_t hlen_field, const void *data, size_t dlen,
                                size_t *len) {
    size_t h = strlen(hdr);
    *len = 8 + h + dlen;
    unsigned char *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(b + 8, hdr, h);
    if (dlen) memcpy(b + 8 + h, data, dlen);
    return b;
}

static int parses(const char *hdr, int lie_len, size_t dlen) {
    static const unsigned char zeros[64];
    size_t len;
    unsigned char *b = make_file(hdr, strlen(hdr) + (size_t)lie_len, zeros, dlen, &len);
    struct safetensors st;
    int rc = st_parse(&st, b, len, "case");
    st_close(&st);
    free(b);
    return rc == 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void header_cases(void) {
    CHECK(parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8),
          "a valid one-tensor file was refused");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4),
          "truncated tensor accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, 8),
          "header length past the end accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8),
          "shape * dtype != bytes accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8),
          "I32 accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8),
          "negative shape accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
                  "\"data_offsets\":[0,0]}}",
                  0, 0),
          "overflowing shape accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  0, 12),
          "overlapping tensors accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12),
          "a hole before a tensor accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 0, 8),
          "offsets past the data accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 12),
          "trailing bytes after the tensors accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8),
          "begin > end accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  0, 8),
          "duplicate names accepted");
    CHECK(!parses("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 0, 8),
          "bad JSON accepted");
    CHECK(!parses("[1,2]", 0, 0), "a non-object header accepted");
    CHECK(!parses("{\"__metadata__\":{\"format\":1}}", 0, 0), "non-string metadata accepted");
    size_t len;
    unsigned char *b = make_file("", 0, NULL, 0, &len);
    struct safetensors st;
    CHECK(st_parse(&st, b, 4, "short") == -1, "a 4-byte file accepted");
    free(b);
}

/* 1. write, read back; F16/BF16 conversion on hand-made bytes */
static void valid_cases(const char *work) {
    char path[4200];
    snprintf(path, sizeof path, "%s/valid.safetensors", work);
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 65504}, c[1] = {7};
    struct st_out t[3] = {{"w", 2, {2, 3}, a}, {"empty", 1, {0}, NULL}, {"c", 0, {0}, c}};
    CHECK(st_write(path, t, 3) == 0, "st_write failed");
    struct safetensors st;
    CHECK(st_open(&st, path) == 0, "cannot read what st_write wrote");
    const struct st_tensor *w = st_find(&st, "w");
    float out[6] = {0};
    CHECK(w && w->ndim == 2 && w->shape[1] == 3 && w->dtype == ST_F32, "tensor w wrong");
    if (w) st_read_f32(&st, w, out);
    CHECK(!memcmp(out, a, sizeof a), "F32 values differ after the round trip");
    CHECK(st.metadata_format && !strcmp(st.metadata_format, "pt"), "no format: pt metadata");
    CHECK((size_t)(st.data - st.buf) % 8 == 0, "the data section is not 8-byte aligned");
    st_close(&st);
    /* F16: 1.0, -2.0, 65504, smallest subnormal 2^-24, inf; BF16: 1.0, -3.0 */
    const unsigned char h[] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01,
                               0x00, 0x00, 0x7c, 0x80, 0x3f, 0x40, 0xc0};
    size_t len;
    unsigned char *b =
        make_file("{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
                  "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[10,14]}}",
                  0, h, sizeof h, &len);
    uint64_t hl = len - 8 - sizeof h;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hl >> (8 * i));
    CHECK(st_parse(&st, b, len, "f16") == 0, "F16/BF16 file refused");
    float f[5] = {0}, bf[2] = {0};
    if (st.n == 2) {
        st_read_f32(&st, st_find(&st, "h"), f);
        st_read_f32(&st, st_find(&st, "b"), bf);
    }
    CHECK(f[0] == 1 && f[1] == -2 && f[2] == 65504 && f[3] == 0x1p-24f && f[4] > 3e38f,
          "F16 conversion wrong: %g %g %g %g %g", f[0], f[1], f[2], f[3], f[4]);
    CHECK(bf[0] == 1 && bf[1] == -3, "BF16 conversion wrong: %g %g", bf[0], bf[1]);
    st_close(&st);
    free(b);
}

static void fuzz(const char *hf_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", hf_dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *orig = malloc(len);
    CHECK(fread(orig, 1, len, f) == len, "short read");
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | orig[i];
    size_t hend = 8 + (size_t)hl; /* mutate the length field and the JSON */
    static const char interesting[] = "0123456789[]{},:\"-eE.FIBU ";
    int stderr_copy = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* thousands of expected error messages */
    int accepted = 0;
    float *scratch = NULL;
    for (int it = 0; it < 4000; it++) {
        unsigned char *b = malloc(len);
        memcpy(b, orig, len);
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rng() % hend);
            uint64_t r = rng();
            b[at] = r & 1 ? (unsigned char)interesting[(r >> 1) % (sizeof interesting - 1)]
                          : (unsigned char)(r >> 8);
        }
        size_t cut = rng() % 8 == 0 ? (size_t)(rng() % len) : len; /* sometimes truncate too */
        unsigned char *exact = malloc(cut ? cut : 1);
        memcpy(exact, b, cut);
        free(b);
        struct safetensors st;
        if (st_parse(&st, exact, cut, "fuzz") == 0) {
            accepted++;
            for (size_t i = 0; i < st.n; i++) {
                scratch = realloc(scratch, (st.t[i].numel ? st.t[i].numel : 1) * sizeof(float));
                st_read_f32(&st, &st.t[i], scratch);
            }
            st_close(&st);
        }
        free(exact);
    }
    dup2(stderr_copy, 2);
    close(devnull);
    close(stderr_copy);
    free(scratch);
    free(orig);
    printf("fuzz: 4000 mutated headers, %d accepted and read in bounds\n", accepted);
}

/* 4. import-hf on damaged copies of hf_tiny */
static void import_case(const char *xlmc, const char *hf_dir, const char *work, const char *what,
                        const struct st_out *t, size_t n, const char *raw_hdr_patch,
                        const char *expect) {
    char dir[4200], cmd[20000], log[4300], out[4300];
    snprintf(dir, sizeof dir, "%s/bad-%s", work, what);
    mkdir(dir, 0777);
    const char *files[] = {"config.json", "vocab.json", "merges.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/'", hf_dir, files[i], dir);
        CHECK(system(cmd) == 0, "%s failed", cmd);
    }
    char st_path[4300];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    CHECK(st_write(st_path, t, n) == 0, "cannot write %s", st_path);
    if (raw_hdr_patch) { /* turn the first "F32" into the patch (same length) */
        FILE *f = fopen(st_path, "r+b");
        char buf[4096] = {0};
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        char *p = got > 8 ? strstr(buf + 8, "\"F32\"") : NULL; /* the JSON has no NUL */
        if (p) {
            fseek(f, p - buf + 1, SEEK_SET);
            fwrite(raw_hdr_patch, 1, 3, f);
        }
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/out-%s", work, what);
    snprintf(log, sizeof log, "%s/%s.log", work, what);
    snprintf(cmd, sizeof cmd, "'%s' import-hf '%s' --out '%s' >'%s' 2>&1", xlmc, dir, out, log);
    int rc = system(cmd);
    FILE *f = fopen(log, "r");
    char text[8192] = {0};
    if (f) {
        size_t got = fread(text, 1, sizeof text - 1, f);
        text[got] = 0;
        fclose(f);
    }
    CHECK(rc != 0, "import-hf accepted a file with %s", what);
    CHECK(strstr(text, expect) != NULL, "import-hf with %s: no message containing \"%s\":\n%s",
          what, expect, text);
    snprintf(cmd, sizeof cmd, "%s/model.h5", out);
    CHECK(access(cmd, F_OK) != 0, "import-hf with %s left %s", what, cmd);
}

static void import_cases(const char *xlmc, const char *hf_dir, const char *work) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", hf_dir);
    struct safetensors st;
    if (st_open(&st, path)) {
        failures++;
        return;
    }
    struct st_out t[64];
    float *data[64];
    size_t n = st.n < 62 ? st.n : 62;
    for (size_t i = 0; i < n; i++) {
        data[i] = malloc((st.t[i].numel ? st.t[i].numel : 1) * sizeof(float));
        st_read_f32(&st, &st.t[i], data[i]);
        t[i].name = st.t[i].name;
        t[i].ndim = st.t[i].ndim;
        memcpy(t[i].shape, st.t[i].shape, sizeof t[i].shape);
        t[i].data = data[i];
    }
    /* the tensors sorted by offset: find the second layer's q_lin.weight and drop it */
    size_t q = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, "transformer.attentions.1.q_lin.weight")) q = i;
    struct st_out save = t[q];
    t[q] = t[n - 1];
    import_case(xlmc, hf_dir, work, "missing", t, n - 1, NULL,
                "missing tensor 'transformer.attentions.1.q_lin.weight'");
    t[q] = save;
    t[q].shape[0] = t[q].shape[0] / 2; /* (16, 32) instead of (32, 32) */
    import_case(xlmc, hf_dir, work, "shape", t, n, NULL,
                "tensor 'transformer.attentions.1.q_lin.weight' has 2 dims [16, 32]");
    t[q] = save;
    t[n] = t[0];
    t[n].name = "transformer.attentions.2.q_lin.weight";
    import_case(xlmc, hf_dir, work, "unexpected", t, n + 1, NULL,
                "unexpected tensor 'transformer.attentions.2.q_lin.weight'");
    import_case(xlmc, hf_dir, work, "dtype", t, n, "I32", "has dtype I32");
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    st_close(&st);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_safetensors_malformed XLMC HF_TINY_DIR WORK_DIR\n");
        return 2;
    }
    mkdir(argv[3], 0777);
    valid_cases(argv[3]);
    header_cases();
    fuzz(argv[2]);
    import_cases(argv[1], argv[2], argv[3]);
    printf("%s\n", failures ? "FAILED" : "OK: malformed safetensors refused, in bounds");
    return failures ? 1 : 0;
}
