/* fixture.c — HDF5 readers for the reference fixtures (see fixture.h). */
#include "tests/ref/fixture.h"
#include "core/util.h"

#include <hdf5.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read a whole dataset of `want` elements of the given memory type. */
static int read_dataset(hid_t file, const char *path, const char *name, hid_t mem_type,
                        void *dst, size_t want)
{
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        fprintf(stderr, "fixture: %s: no dataset %s\n", path, name);
        return -1;
    }
    hid_t space = H5Dget_space(ds);
    hssize_t have = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int rc = -1;
    if (have != (hssize_t)want)
        fprintf(stderr, "fixture: %s: dataset %s has %lld elements, expected %zu\n", path,
                name, (long long)have, want);
    else if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        fprintf(stderr, "fixture: %s: reading dataset %s failed\n", path, name);
    else rc = 0;
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

static hid_t open_file(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fprintf(stderr, "fixture: cannot open %s\n", path);
    return f;
}

int fixture_load_config(const char *weights_h5, struct xlmc_config *cfg)
{
    hid_t f = open_file(weights_h5);
    if (f < 0) return -1;
    int rc = -1;
    char *text = NULL;
    hid_t attr = H5Aopen(f, "config_ini", H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    if (type < 0) {
        fprintf(stderr, "fixture: %s: no string attribute config_ini\n", weights_h5);
    } else if (H5Tis_variable_str(type) > 0) {
        /* h5py writes Python str attributes as variable-length UTF-8 strings */
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5T_CSET_UTF8);
        char *vl = NULL;
        if (H5Aread(attr, mem, &vl) >= 0 && vl) {
            text = xstrdup(vl);
            H5free_memory(vl);
        }
        H5Tclose(mem);
    } else {
        size_t len = H5Tget_size(type);
        text = xcalloc(len + 1, 1);
        if (H5Aread(attr, type, text) < 0) {
            free(text);
            text = NULL;
        }
    }
    if (type >= 0 && !text) fprintf(stderr, "fixture: %s: reading config_ini failed\n", weights_h5);
    if (text) rc = config_parse_string(text, weights_h5, cfg);
    free(text);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    H5Fclose(f);
    return rc;
}

int fixture_load_params(struct model *m, const char *path, const char *group)
{
    hid_t f = open_file(path);
    if (f < 0) return -1;
    int rc = 0;
    for (int id = 0; id < P_COUNT && !rc; id++) {
        const struct param_tensor *p = &m->params[id];
        if (!p->numel) continue;
        size_t slice = p->numel / (size_t)p->layers;
        for (int l = 0; l < p->layers && !rc; l++) {
            char hf[256], name[512];
            if (model_param_hf_name(m, id, l, hf, sizeof hf)) {
                fprintf(stderr, "fixture: no Hugging Face name for tensor %d\n", id);
                rc = -1;
                break;
            }
            snprintf(name, sizeof name, "%s/%s", group, hf);
            rc = read_dataset(f, path, name, H5T_NATIVE_FLOAT, m->master + p->offset + l * slice,
                              slice);
        }
    }
    H5Fclose(f);
    if (!rc) model_sync_weights(m);
    return rc;
}

int fixture_load_batch(const char *batch_h5, struct fixture_batch *fb)
{
    memset(fb, 0, sizeof *fb);
    hid_t f = open_file(batch_h5);
    if (f < 0) return -1;
    hid_t ds = H5Dopen2(f, "input_ids", H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t dims[2] = {0, 0};
    if (space < 0 || H5Sget_simple_extent_ndims(space) != 2 ||
        H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        fprintf(stderr, "fixture: %s: input_ids must be a 2-d dataset\n", batch_h5);
        if (space >= 0) H5Sclose(space);
        if (ds >= 0) H5Dclose(ds);
        H5Fclose(f);
        return -1;
    }
    H5Sclose(space);
    H5Dclose(ds);
    int B = (int)dims[0], T = (int)dims[1];
    size_t n = (size_t)B * (size_t)T;
    fb->ids = xmalloc(n * sizeof(int32_t));
    fb->langs = xmalloc(n * sizeof(int32_t));
    fb->mask = xmalloc(n * sizeof(int32_t));
    fb->labels = xmalloc(n * sizeof(int32_t));
    fb->lengths = xcalloc((size_t)B, sizeof(int32_t));
    int rc = read_dataset(f, batch_h5, "input_ids", H5T_NATIVE_INT32, fb->ids, n) ||
             read_dataset(f, batch_h5, "langs", H5T_NATIVE_INT32, fb->langs, n) ||
             read_dataset(f, batch_h5, "attention_mask", H5T_NATIVE_INT32, fb->mask, n) ||
             read_dataset(f, batch_h5, "labels", H5T_NATIVE_INT32, fb->labels, n);
    H5Fclose(f);
    if (rc) {
        fixture_free_batch(fb);
        return -1;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) fb->lengths[b] += fb->mask[b * T + t] != 0;
    fb->batch = (struct batch){.B = B, .T = T, .ids = fb->ids, .langs = fb->langs,
                               .lengths = fb->lengths, .targets = fb->labels, .row0 = 0};
    return 0;
}

void fixture_free_batch(struct fixture_batch *fb)
{
    free(fb->ids);
    free(fb->langs);
    free(fb->mask);
    free(fb->labels);
    free(fb->lengths);
    memset(fb, 0, sizeof *fb);
}

float *fixture_read_f32(const char *path, const char *name, size_t *n)
{
    hid_t f = open_file(path);
    if (f < 0) return NULL;
    float *out = NULL;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (count < 0) {
        fprintf(stderr, "fixture: %s: no dataset %s\n", path, name);
    } else {
        out = xmalloc(((size_t)count ? (size_t)count : 1) * sizeof(float));
        if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
            fprintf(stderr, "fixture: %s: reading dataset %s failed\n", path, name);
            free(out);
            out = NULL;
        } else {
            *n = (size_t)count;
        }
    }
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    H5Fclose(f);
    return out;
}
