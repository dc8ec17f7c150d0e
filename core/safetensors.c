/* safetensors.c — validating reader and fp32 writer for the safetensors format (see .h). */
#include "core/safetensors.h"

#include "core/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    enum st_dtype dtype;
    unsigned size; /* bytes per element */
} DTYPES[] = {{"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}};

const char *st_dtype_name(enum st_dtype d) {
    for (size_t i = 0; i < XLMC_ARRAY_LEN(DTYPES); i++)
        if (DTYPES[i].dtype == d) return DTYPES[i].name;
    return "?";
}

static unsigned dtype_size(enum st_dtype d) {
    for (size_t i = 0; i < XLMC_ARRAY_LEN(DTYPES); i++)
        if (DTYPES[i].dtype == d) return DTYPES[i].size;
    return 0;
}

void st_close(struct safetensors *st) {
    for (size_t i = 0; i < st->n; i++)
        free(st->t[i].name);
    free(st->t);
    free(st->path);
    free(st->metadata_format);
    if (st->owns_buf) free(st->buf);
    memset(st, 0, sizeof *st);
}

/* Parse one tensor entry; -1 after an error. */
static int parse_entry(struct safetensors *st, const char *key, json_t *v, struct st_tensor *t) {
    const char *p = st->path;
    if (!json_is_object(v)) return xlmc_error("%s: tensor '%s' is not a JSON object", p, key);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return xlmc_error("%s: tensor '%s' needs \"dtype\" (string), \"shape\" and "
                          "\"data_offsets\" (arrays)",
                          p, key);
    if (json_object_size(v) != 3)
        return xlmc_error("%s: tensor '%s' has keys other than dtype, shape, data_offsets", p, key);
    int known = 0;
    for (size_t i = 0; i < XLMC_ARRAY_LEN(DTYPES); i++)
        if (!strcmp(json_string_value(dt), DTYPES[i].name)) {
            t->dtype = DTYPES[i].dtype;
            known = 1;
        }
    if (!known)
        return xlmc_error("%s: tensor '%s' has dtype %s; xlmc reads F32, F16 and BF16", p, key,
                          json_string_value(dt));
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return xlmc_error("%s: tensor '%s' has %zu dimensions (at most %d)", p, key, nd,
                          ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int zero = 0;
    for (size_t d = 0; d < nd; d++) {
        json_t *e = json_array_get(shape, d);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return xlmc_error("%s: tensor '%s': shape[%zu] is not a non-negative integer", p, key,
                              d);
        uint64_t s = (uint64_t)json_integer_value(e);
        t->shape[d] = (int64_t)s;
        if (s == 0)
            zero = 1;
        else if (!zero && numel > UINT64_MAX / 8 / s)
            return xlmc_error("%s: tensor '%s': the shape's element count overflows", p, key);
        else if (!zero)
            numel *= s;
    }
    t->numel = zero ? 0 : numel;
    if (json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return xlmc_error("%s: tensor '%s': data_offsets must be [begin, end]", p, key);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b)
        return xlmc_error("%s: tensor '%s': data_offsets [%lld, %lld] are not 0 <= begin <= end", p,
                          key, (long long)b, (long long)e);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end > st->data_len)
        return xlmc_error("%s: tensor '%s': data_offsets end %llu lies past the data section "
                          "(%llu bytes; truncated file?)",
                          p, key, (unsigned long long)t->end, (unsigned long long)st->data_len);
    uint64_t want = t->numel * dtype_size(t->dtype);
    if (t->end - t->begin != want)
        return xlmc_error("%s: tensor '%s': %llu bytes at data_offsets, but shape and dtype %s "
                          "need %llu",
                          p, key, (unsigned long long)(t->end - t->begin), json_string_value(dt),
                          (unsigned long long)want);
    t->name = xstrdup(key);
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const struct st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_header(struct safetensors *st, const char *hdr, size_t hlen) {
    const char *p = st->path;
    json_error_t err;
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return xlmc_error("%s: the header is not valid JSON (byte %d: %s)", p, err.position,
                          err.text);
    int rc = -1;
    if (!json_is_object(root)) {
        xlmc_error("%s: the header is not a JSON object", p);
        goto done;
    }
    st->t = xcalloc(json_object_size(root) + 1, sizeof *st->t);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                xlmc_error("%s: __metadata__ is not an object of strings", p);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    xlmc_error("%s: __metadata__.%s is not a string", p, mk);
                    goto done;
                }
            }
            json_t *fmt = json_object_get(v, "format");
            if (fmt) st->metadata_format = xstrdup(json_string_value(fmt));
            continue;
        }
        if (parse_entry(st, key, v, &st->t[st->n])) goto done;
        st->n++;
    }
    /* The tensors must tile the data section: sorted, each starting where the last ended. */
    qsort(st->t, st->n, sizeof *st->t, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (st->t[i].begin != at) {
            xlmc_error("%s: tensor '%s' starts at byte %llu of the data section, expected %llu "
                       "(%s)",
                       p, st->t[i].name, (unsigned long long)st->t[i].begin, (unsigned long long)at,
                       st->t[i].begin < at ? "overlaps the previous tensor" : "a hole before it");
            goto done;
        }
        at = st->t[i].end;
    }
    if (at != st->data_len) {
        xlmc_error("%s: the tensors cover %llu bytes but the data section has %llu", p,
                   (unsigned long long)at, (unsigned long long)st->data_len);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int st_parse(struct safetensors *st, const void *buf, size_t len, const char *name) {
    memset(st, 0, sizeof *st);
    st->path = xstrdup(name);
    st->buf = (unsigned char *)buf;
    st->len = len;
    const unsigned char *b = buf;
    if (len < 8) {
        xlmc_error("%s: %zu bytes is too short for a safetensors file (8-byte header length)", name,
                   len);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > len - 8 || hlen > ST_MAX_HEADER) {
        xlmc_error("%s: header length %llu does not fit in the file (%zu bytes; limit %u)", name,
                   (unsigned long long)hlen, len, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen < 2 || b[8] != '{') {
        xlmc_error("%s: the header does not start with '{'", name);
        goto fail;
    }
    st->data = b + 8 + hlen;
    st->data_len = len - 8 - hlen;
    if (parse_header(st, (const char *)b + 8, (size_t)hlen)) goto fail;
    return 0;
fail:
    st_close(st);
    return -1;
}

int st_open(struct safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    FILE *f = fopen(path, "rb");
    if (!f) return xlmc_error("cannot open %s: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return xlmc_error("%s: cannot determine the file size", path);
    }
    unsigned char *buf = xmalloc(size ? (size_t)size : 1);
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return xlmc_error("%s: read %zu of %ld bytes", path, got, size);
    }
    if (st_parse(st, buf, (size_t)size, path)) {
        free(buf);
        return -1;
    }
    st->owns_buf = 1;
    return 0;
}

const struct st_tensor *st_find(const struct safetensors *st, const char *name) {
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

/* IEEE half -> float, exact (subnormals, inf and NaN included). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man) { /* subnormal: normalize */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void st_read_f32(const struct safetensors *st, const struct st_tensor *t, float *out) {
    const unsigned char *src = st->data + t->begin;
    for (uint64_t i = 0; i < t->numel; i++) {
        uint32_t bits;
        if (t->dtype == ST_F32) {
            const unsigned char *q = src + 4 * i;
            bits =
                (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
            memcpy(&out[i], &bits, 4);
        } else {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            if (t->dtype == ST_F16) {
                out[i] = half_to_float(h);
            } else {
                bits = (uint32_t)h << 16;
                memcpy(&out[i], &bits, 4);
            }
        }
    }
}

int st_write(const char *path, const struct st_out *t, size_t n) {
    json_t *hdr = json_object(), *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)at));
        json_array_append_new(offs, json_integer((json_int_t)(at + 4 * numel)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(hdr, t[i].name, e);
        at += 4 * numel;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    size_t tlen = strlen(text);
    size_t padded = (tlen + 7) / 8 * 8; /* data section 8-byte aligned; spaces are valid JSON */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return xlmc_error("cannot create %s: %s", tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, tlen, f) == tlen;
    for (size_t i = tlen; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    free(text);
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (uint64_t)t[i].shape[d];
        /* little-endian on disk: byte by byte, whatever the host */
        for (uint64_t k = 0; ok && k < numel; k++) {
            uint32_t bits;
            memcpy(&bits, &t[i].data[k], 4);
            unsigned char q[4] = {(unsigned char)bits, (unsigned char)(bits >> 8),
                                  (unsigned char)(bits >> 16), (unsigned char)(bits >> 24)};
            ok = fwrite(q, 1, 4, f) == 4;
        }
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) ok = 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return xlmc_error("cannot write %s: %s", path, strerror(e));
    }
    return 0;
}
