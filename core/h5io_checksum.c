/* h5io_checksum.c — datasets that carry the XXH64 of their bytes (see h5io.h): what
 * checkpoints are made of, and the unsigned attributes shards carry. */
#include "core/h5io.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define H5IO_CHECKSUM_ATTR "xxh64"

void h5io_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int h5io_write_summed(hid_t file, const char *name, hid_t type, int ndim, const hsize_t *dims,
                      const void *data, size_t nbytes) {
    int ok = -1;
    hid_t space = -1, lcpl = -1, dset = -1, aspace = -1, attr = -1;
    hsize_t one = 1;
    uint64_t sum = XXH64(data, nbytes, 0);
    if ((space = H5Screate_simple(ndim, dims, NULL)) < 0) goto done;
    if ((lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0) goto done;
    if (H5Pset_create_intermediate_group(lcpl, 1) < 0) goto done;
    if ((dset = H5Dcreate2(file, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0) goto done;
    if (nbytes && H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) goto done;
    if ((aspace = H5Screate_simple(1, &one, NULL)) < 0) goto done;
    if ((attr = H5Acreate2(dset, H5IO_CHECKSUM_ATTR, H5T_STD_U64LE, aspace, H5P_DEFAULT,
                           H5P_DEFAULT)) < 0)
        goto done;
    if (H5Awrite(attr, H5T_NATIVE_UINT64, &sum) < 0) goto done;
    ok = 0;
done:
    if (attr >= 0) H5Aclose(attr);
    if (aspace >= 0) H5Sclose(aspace);
    if (dset >= 0) H5Dclose(dset);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (space >= 0) H5Sclose(space);
    return ok;
}

int h5io_verify_summed(hid_t d, const char *name, char *why, size_t why_len) {
    int rc = -1;
    hid_t type = -1, native = -1, space = -1, attr = -1;
    void *buf = NULL;
    uint64_t want = 0;
    if ((type = H5Dget_type(d)) < 0 || (native = H5Tget_native_type(type, H5T_DIR_ASCEND)) < 0 ||
        (space = H5Dget_space(d)) < 0) {
        snprintf(why, why_len, "dataset %s is unreadable", name);
        goto done;
    }
    hssize_t n = H5Sget_simple_extent_npoints(space);
    size_t bytes = (size_t)n * H5Tget_size(native);
    buf = xmalloc(bytes ? bytes : 1);
    if (n < 0 || (bytes && H5Dread(d, native, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
        snprintf(why, why_len, "dataset %s cannot be read (truncated or corrupt file)", name);
        goto done;
    }
    if ((attr = H5Aopen(d, H5IO_CHECKSUM_ATTR, H5P_DEFAULT)) < 0 ||
        H5Aread(attr, H5T_NATIVE_UINT64, &want) < 0) {
        snprintf(why, why_len, "dataset %s has no checksum", name);
        goto done;
    }
    if (XXH64(buf, bytes, 0) != want) {
        snprintf(why, why_len, "dataset %s fails its XXH64 checksum (corrupt file)", name);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    if (native >= 0) H5Tclose(native);
    if (type >= 0) H5Tclose(type);
    return rc;
}

int h5io_read_summed(hid_t f, const char *name, hid_t mem_type, void *out, size_t nbytes, char *why,
                     size_t why_len) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        snprintf(why, why_len, "dataset %s is missing", name);
        return -1;
    }
    hid_t space = H5Dget_space(d);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    if (n < 0 || (size_t)n * H5Tget_size(mem_type) != nbytes) {
        H5Dclose(d);
        snprintf(why, why_len,
                 "dataset %s has %lld elements, the model expects %zu (a checkpoint of another "
                 "model shape?)",
                 name, (long long)n, nbytes / H5Tget_size(mem_type));
        return -1;
    }
    int rc = h5io_verify_summed(d, name, why, why_len);
    if (!rc && nbytes && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        snprintf(why, why_len, "dataset %s cannot be read", name);
        rc = -1;
    }
    H5Dclose(d);
    return rc;
}

struct verify_ctx {
    char *why;
    size_t why_len;
    int bad;
    int datasets;
};

static herr_t verify_visit(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    struct verify_ctx *v = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT);
    if (d < 0) {
        snprintf(v->why, v->why_len, "dataset %s cannot be opened", name);
        v->bad = 1;
        return 1;
    }
    v->datasets++;
    if (h5io_verify_summed(d, name, v->why, v->why_len)) v->bad = 1;
    H5Dclose(d);
    return v->bad ? 1 : 0;
}

int h5io_verify_file(const char *path, char *why, size_t why_len) {
    h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(why, why_len, "not a readable HDF5 file (truncated or corrupt)");
        return -1;
    }
    struct verify_ctx v = {why, why_len, 0, 0};
    herr_t rc = H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, verify_visit, &v);
    H5Fclose(f);
    if (rc < 0 && !v.bad) {
        snprintf(why, why_len, "its objects cannot be listed (corrupt file)");
        return -1;
    }
    if (!v.bad && v.datasets == 0) {
        snprintf(why, why_len, "it holds no datasets");
        return -1;
    }
    return v.bad ? -1 : 0;
}

int h5io_read_attr_u64(hid_t obj, const char *name, uint64_t *out) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t type = H5Aget_type(a);
    int rc = -1;
    if (type >= 0 && H5Tget_class(type) == H5T_INTEGER) {
        rc = H5Aread(a, H5T_NATIVE_UINT64, out) < 0 ? -1 : 0;
    } else if (type >= 0 && H5Tget_class(type) == H5T_STRING) {
        char buf[64] = "";
        hid_t mem = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(type) > 0) {
            char *s = NULL;
            H5Tset_size(mem, H5T_VARIABLE);
            if (H5Aread(a, mem, &s) >= 0 && s) {
                snprintf(buf, sizeof buf, "%s", s);
                H5free_memory(s);
            }
        } else {
            H5Tset_size(mem, sizeof buf - 1);
            if (H5Aread(a, mem, buf) < 0) buf[0] = 0;
            buf[sizeof buf - 1] = 0;
        }
        H5Tclose(mem);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 16);
        if (buf[0] && !errno && (!*end || *end == ' ')) {
            *out = v;
            rc = 0;
        }
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    return rc;
}
