/* fuzz_shard — libFuzzer harness for the shard reader (data/shard.c shard_read). The input
 * decides which attributes a shard file has and their values, the type and contents of its
 * tokens and offsets datasets (fuzz_input.h). Property: shard_read fails with an error, or
 * what it returns is consistent: offsets rise from 0 to n_tokens, every id is inside the
 * vocabulary. */
#define _GNU_SOURCE
#include "data/shard.h"
#include "tests/fuzz/fuzz_input.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "/tmp/fuzz_shard.%ld.h5", (long)getpid());
    return 0;
}

static void attr_i64(hid_t f, const char *name, int64_t v, hid_t type) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void attr_str(hid_t f, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* n elements of the input as `type`, a 1-D dataset */
static void dataset(hid_t f, const char *name, hid_t type, struct fuzz_in *in, size_t n) {
    size_t bytes = n * H5Tget_size(type);
    void *buf = malloc(bytes ? bytes : 1);
    fuzz_take(in, buf, bytes);
    hsize_t dims[1] = {n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    H5Sclose(sp);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fuzz_in in = {data, size};
    uint16_t present;
    fuzz_take(&in, &present, sizeof present); /* which attributes and datasets exist */
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) abort();
    static const char *const ints[] = {"format_version", "lang_id",  "vocab_size", "vocab_hash",
                                       "codes_hash",     "n_tokens", "n_sentences"};
    for (int i = 0; i < 7; i++) {
        int64_t v = fuzz_i64(&in);
        if (i == 0) v = v % 4; /* mostly a version near the real one */
        if (present & (1u << i))
            attr_i64(f, ints[i], v, i == 3 || i == 4 ? H5T_STD_U64LE : H5T_STD_I64LE);
    }
    char lang[24], split[24];
    fuzz_str(&in, lang, sizeof lang);
    fuzz_str(&in, split, sizeof split);
    if (present & (1u << 7)) attr_str(f, "lang", lang);
    if (present & (1u << 8)) attr_str(f, "split", split);
    static const hid_t *types[] = {&H5T_STD_U16LE_g, &H5T_STD_I32LE_g, &H5T_IEEE_F32LE_g,
                                   &H5T_STD_I64LE_g};
    size_t nt = fuzz_u8(&in) * 4u, no = fuzz_u8(&in);
    hid_t ttype = *types[(present >> 11) & 3];
    if (present & (1u << 9)) dataset(f, "tokens", ttype, &in, nt);
    if (present & (1u << 10)) dataset(f, "offsets", H5T_STD_I64LE, &in, no);
    H5Fclose(f);

    struct shard s;
    if (shard_read(path, 0, 1, &s) == 0) {
        const struct shard_meta *m = &s.meta;
        if (m->n_sentences < 0 || m->n_tokens < 0 || s.offsets[0] != 0 ||
            s.offsets[m->n_sentences] != m->n_tokens)
            abort();
        for (int64_t i = 0; i < m->n_sentences; i++)
            if (s.offsets[i + 1] < s.offsets[i]) abort();
        for (int64_t i = 0; i < m->n_tokens; i++)
            if (s.tokens[i] < 0 || s.tokens[i] >= m->vocab_size) abort();
        shard_free(&s);
    }
    return 0;
}
