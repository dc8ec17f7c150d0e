/* fixture.c — HDF5 readers for the reference fixtures (see fixture.h). */
#include "tests/ref/fixture.h"
#include "core/h5io.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dataset `name` of exactly `want` elements into dst (float or int32), through core/h5io. */
static int read_exact(hid_t file, const char *path, const char *name, int is_int, void *dst,
                      size_t want) {
    void *data = NULL;
    int nd = 0;
    long long dims[H5IO_MAX_DIMS];
    int rc = is_int ? h5io_read_i32(file, name, (int32_t **)&data, &nd, dims)
                    : h5io_read_f32(file, name, (float **)&data, &nd, dims);
    if (rc) return -1;
    long long have = 1;
    for (int i = 0; i < nd; i++)
        have *= dims[i];
    if (have != (long long)want) {
        fprintf(stderr, "fixture: %s: dataset %s has %lld elements, expected %zu\n", path, name,
                have, want);
        rc = -1;
    } else {
        memcpy(dst, data, want * (is_int ? sizeof(int32_t) : sizeof(float)));
    }
    free(data);
    return rc;
}

int fixture_load_config(const char *weights_h5, struct xlmc_config *cfg) {
    hid_t f = h5io_open_read(weights_h5);
    if (f < 0) return -1;
    char *text = NULL;
    int rc = h5io_read_attr_str(f, "config_ini", &text);
    if (!rc) rc = config_parse_string(text, weights_h5, cfg);
    free(text);
    h5io_close(f);
    return rc;
}

int fixture_load_params(struct model *m, const char *path, const char *group) {
    hid_t f = h5io_open_read(path);
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
            rc = read_exact(f, path, name, 0, m->master + p->offset + l * slice, slice);
        }
    }
    h5io_close(f);
    if (!rc) rc = model_sync_weights(m);
    return rc;
}

int fixture_load_batch(const char *batch_h5, struct fixture_batch *fb) {
    memset(fb, 0, sizeof *fb);
    hid_t f = h5io_open_read(batch_h5);
    if (f < 0) return -1;
    int nd = 0;
    long long dims[H5IO_MAX_DIMS];
    if (h5io_shape(f, "input_ids", &nd, dims) || nd != 2) {
        fprintf(stderr, "fixture: %s: input_ids must be a 2-d dataset\n", batch_h5);
        h5io_close(f);
        return -1;
    }
    int B = (int)dims[0], T = (int)dims[1];
    size_t n = (size_t)B * (size_t)T;
    fb->ids = xmalloc(n * sizeof(int32_t));
    fb->langs = xmalloc(n * sizeof(int32_t));
    fb->mask = xmalloc(n * sizeof(int32_t));
    fb->labels = xmalloc(n * sizeof(int32_t));
    fb->lengths = xcalloc((size_t)B, sizeof(int32_t));
    int rc = read_exact(f, batch_h5, "input_ids", 1, fb->ids, n) ||
             read_exact(f, batch_h5, "langs", 1, fb->langs, n) ||
             read_exact(f, batch_h5, "attention_mask", 1, fb->mask, n) ||
             read_exact(f, batch_h5, "labels", 1, fb->labels, n);
    h5io_close(f);
    if (rc) {
        fixture_free_batch(fb);
        return -1;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            fb->lengths[b] += fb->mask[b * T + t] != 0;
    fb->batch = (struct batch){.B = B,
                               .T = T,
                               .ids = fb->ids,
                               .langs = fb->langs,
                               .lengths = fb->lengths,
                               .targets = fb->labels,
                               .row0 = 0};
    return 0;
}

void fixture_free_batch(struct fixture_batch *fb) {
    free(fb->ids);
    free(fb->langs);
    free(fb->mask);
    free(fb->labels);
    free(fb->lengths);
    memset(fb, 0, sizeof *fb);
}

float *fixture_read_f32(const char *path, const char *name, size_t *n) {
    hid_t f = h5io_open_read(path);
    if (f < 0) return NULL;
    float *out = NULL;
    int nd = 0;
    long long dims[H5IO_MAX_DIMS];
    if (!h5io_read_f32(f, name, &out, &nd, dims)) {
        size_t count = 1;
        for (int i = 0; i < nd; i++)
            count *= (size_t)dims[i];
        *n = count;
    }
    h5io_close(f);
    return out;
}
