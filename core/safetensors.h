/* safetensors.h — the Hugging Face safetensors format: read (validated) and write (F32).
 *
 * A file is: 8 bytes little-endian N, N bytes of JSON header, then the data section. The
 * header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (bytes
 * relative to the data section) plus an optional "__metadata__" object of strings.
 * st_open checks everything before a single tensor byte is touched: N inside the file, the
 * header a JSON object without duplicate keys, known dtypes, non-negative shapes, no integer
 * overflow in numel * element size, end - begin equal to that size, and the tensors tiling the
 * data section exactly (sorted by offset, no overlap, no hole, nothing past the end), as the
 * reference implementation requires. A file that passes cannot be read out of bounds. */
#ifndef XLMC_SAFETENSORS_H
#define XLMC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* bytes; the reference implementation's limit */

enum st_dtype { ST_F32, ST_F16, ST_BF16 };

struct st_tensor {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* bytes, relative to the data section */
};

struct safetensors {
    char *path;         /* for messages */
    unsigned char *buf; /* the whole file (owned copy or st_parse's caller's buffer) */
    size_t len;         /* bytes */
    int owns_buf;
    const unsigned char *data; /* data section */
    uint64_t data_len;         /* bytes */
    struct st_tensor *t;
    size_t n;
    char *metadata_format; /* __metadata__.format ("pt") or NULL */
};

/* Read and validate a file. 0, or -1 after printing an error naming the file; st is then
 * empty (st_close is still safe). */
int st_open(struct safetensors *st, const char *path);
/* Validate a file already in memory (buf stays the caller's and must outlive st). */
int st_parse(struct safetensors *st, const void *buf, size_t len, const char *name);
void st_close(struct safetensors *st);

/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct safetensors *st, const char *name);
const char *st_dtype_name(enum st_dtype d);
/* Convert a tensor to fp32 into out (numel floats). */
void st_read_f32(const struct safetensors *st, const struct st_tensor *t, float *out);

/* One tensor to write: fp32 data of shape[0..ndim). */
struct st_out {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
};

/* Write tensors (in the given order) with __metadata__ {"format": "pt"} to path, through
 * path.tmp renamed into place. 0, or -1 after printing an error; nothing left at path. */
int st_write(const char *path, const struct st_out *t, size_t n);

#endif
