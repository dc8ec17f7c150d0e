/* fuzz_input.h — reading typed fields off a libFuzzer input, for the harnesses that turn the
 * input into an HDF5 file with our own layout (shards, checkpoints). Fuzzing libhdf5's own
 * parser is not the point: the files are well-formed HDF5 whose attributes and datasets
 * hold what the input says, so the fuzzer explores xlmc's checks of their contents. */
#ifndef XLMC_FUZZ_INPUT_H
#define XLMC_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fuzz_in {
    const uint8_t *p;
    size_t left;
};

/* n bytes into out (zeros past the end of the input). */
static inline void fuzz_take(struct fuzz_in *in, void *out, size_t n) {
    size_t k = n < in->left ? n : in->left;
    memcpy(out, in->p, k);
    memset((uint8_t *)out + k, 0, n - k);
    in->p += k;
    in->left -= k;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in) {
    uint8_t v;
    fuzz_take(in, &v, 1);
    return v;
}

static inline int64_t fuzz_i64(struct fuzz_in *in) {
    int64_t v;
    fuzz_take(in, &v, sizeof v);
    return v;
}

/* A length-prefixed (one byte) string, NUL-terminated into out[cap]. */
static inline void fuzz_str(struct fuzz_in *in, char *out, size_t cap) {
    size_t n = fuzz_u8(in);
    if (n >= cap) n = cap - 1;
    fuzz_take(in, out, n);
    out[n] = 0;
}

#endif
