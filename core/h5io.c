/* h5io.c — checked HDF5 helpers (see h5io.h). HDF5's own error stack printing is turned off
 * for the calls here: our messages name the file and object instead. */
#include "core/h5io.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

/* file name of an open file, for messages */
static const char *fname(hid_t file, char *buf, size_t len) {
    if (H5Fget_name(file, buf, len) < 0) snprintf(buf, len, "<hdf5 file>");
    return buf;
}

static void quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

hid_t h5io_open_read(const char *path) {
    quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) xlmc_error("%s: cannot open as an HDF5 file (missing or not HDF5)", path);
    return f;
}

hid_t h5io_create(const char *path) {
    quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) xlmc_error("%s: cannot create the HDF5 file", path);
    return f;
}

int h5io_close(hid_t file) {
    char b[512];
    fname(file, b, sizeof b);
    if (H5Fclose(file) < 0) return xlmc_error("%s: closing the HDF5 file failed", b);
    return 0;
}

int h5io_exists(hid_t file, const char *name) {
    /* check each path prefix: H5Lexists fails on a missing intermediate group */
    char buf[512];
    size_t n = strlen(name);
    if (n >= sizeof buf) return 0;
    memcpy(buf, name, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
        buf[i] = c;
    }
    return 1;
}

int h5io_shape(hid_t file, const char *name, int *ndim, long long dims[H5IO_MAX_DIMS]) {
    char b[512];
    if (!h5io_exists(file, name))
        return xlmc_error("%s: no dataset '%s'", fname(file, b, sizeof b), name);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return xlmc_error("%s: '%s' is not a dataset", fname(file, b, sizeof b), name);
    hid_t sp = H5Dget_space(ds);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t d[H5IO_MAX_DIMS];
    int rc = 0;
    if (nd < 0 || nd > H5IO_MAX_DIMS || H5Sget_simple_extent_dims(sp, d, NULL) < 0)
        rc = xlmc_error("%s: dataset '%s': unreadable shape", fname(file, b, sizeof b), name);
    else {
        *ndim = nd;
        for (int i = 0; i < nd; i++)
            dims[i] = (long long)d[i];
    }
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

static int read_any(hid_t file, const char *name, hid_t memtype, size_t elem, void **data,
                    int *ndim, long long *dims) {
    char b[512];
    int nd;
    long long d[H5IO_MAX_DIMS];
    if (h5io_shape(file, name, &nd, d)) return -1;
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)d[i];
    void *buf = xmalloc(n * elem + 1);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0 || H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        if (ds >= 0) H5Dclose(ds);
        free(buf);
        return xlmc_error("%s: reading dataset '%s' failed (wrong type?)", fname(file, b, sizeof b),
                          name);
    }
    H5Dclose(ds);
    *data = buf;
    if (ndim) *ndim = nd;
    if (dims)
        for (int i = 0; i < nd; i++)
            dims[i] = d[i];
    return 0;
}

int h5io_read_f32(hid_t file, const char *name, float **data, int *ndim,
                  long long dims[H5IO_MAX_DIMS]) {
    return read_any(file, name, H5T_NATIVE_FLOAT, sizeof(float), (void **)data, ndim, dims);
}

int h5io_read_i32(hid_t file, const char *name, int32_t **data, int *ndim,
                  long long dims[H5IO_MAX_DIMS]) {
    return read_any(file, name, H5T_NATIVE_INT32, sizeof(int32_t), (void **)data, ndim, dims);
}

static int write_any(hid_t file, const char *name, hid_t memtype, hid_t filetype, const void *data,
                     int ndim, const long long *dims) {
    char b[512];
    hsize_t d[H5IO_MAX_DIMS];
    if (ndim < 0 || ndim > H5IO_MAX_DIMS)
        return xlmc_error("%s: dataset '%s': bad rank %d", fname(file, b, sizeof b), name, ndim);
    for (int i = 0; i < ndim; i++)
        d[i] = (hsize_t)dims[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t sp = ndim ? H5Screate_simple(ndim, d, NULL) : H5Screate(H5S_SCALAR);
    int rc = -1;
    if (lcpl >= 0 && sp >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0) {
        hid_t ds = H5Dcreate2(file, name, filetype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (ds >= 0) {
            if (H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0) rc = 0;
            if (H5Dclose(ds) < 0) rc = -1;
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (rc) return xlmc_error("%s: writing dataset '%s' failed", fname(file, b, sizeof b), name);
    return 0;
}

int h5io_write_f32(hid_t file, const char *name, const float *data, int ndim,
                   const long long *dims) {
    return write_any(file, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, ndim, dims);
}

int h5io_write_i32(hid_t file, const char *name, const int32_t *data, int ndim,
                   const long long *dims) {
    return write_any(file, name, H5T_NATIVE_INT32, H5T_STD_I32LE, data, ndim, dims);
}

int h5io_read_attr_str(hid_t file, const char *attr, char **value) {
    char b[512];
    hid_t a = H5Aexists(file, attr) > 0 ? H5Aopen(file, attr, H5P_DEFAULT) : -1;
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mem = H5Tcopy(H5T_C_S1);
            char *vl = NULL;
            if (mem >= 0 && H5Tset_size(mem, H5T_VARIABLE) >= 0 &&
                H5Tset_cset(mem, H5Tget_cset(t)) >= 0 && H5Aread(a, mem, &vl) >= 0 && vl) {
                *value = xstrdup(vl);
                H5free_memory(vl);
                rc = 0;
            }
            if (mem >= 0) H5Tclose(mem);
        } else {
            size_t n = H5Tget_size(t);
            char *s = xcalloc(n + 1, 1);
            if (H5Aread(a, t, s) >= 0) {
                *value = s;
                rc = 0;
            } else
                free(s);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (rc)
        return xlmc_error("%s: no readable string attribute '%s'", fname(file, b, sizeof b), attr);
    return 0;
}

int h5io_write_attr_str(hid_t file, const char *attr, const char *value) {
    char b[512];
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0) {
        hid_t a = H5Acreate2(file, attr, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            if (H5Awrite(a, t, &value) >= 0) rc = 0;
            if (H5Aclose(a) < 0) rc = -1;
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (rc) return xlmc_error("%s: writing attribute '%s' failed", fname(file, b, sizeof b), attr);
    return 0;
}

int h5io_read_attr_int(hid_t file, const char *attr, long long *value) {
    char b[512];
    hid_t a = H5Aexists(file, attr) > 0 ? H5Aopen(file, attr, H5P_DEFAULT) : -1;
    int rc = a >= 0 && H5Aread(a, H5T_NATIVE_LLONG, value) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (rc)
        return xlmc_error("%s: no readable integer attribute '%s'", fname(file, b, sizeof b), attr);
    return 0;
}

int h5io_write_attr_int(hid_t file, const char *attr, long long value) {
    char b[512];
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = -1;
    if (sp >= 0) {
        hid_t a = H5Acreate2(file, attr, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            if (H5Awrite(a, H5T_NATIVE_LLONG, &value) >= 0) rc = 0;
            if (H5Aclose(a) < 0) rc = -1;
        }
        H5Sclose(sp);
    }
    if (rc) return xlmc_error("%s: writing attribute '%s' failed", fname(file, b, sizeof b), attr);
    return 0;
}
