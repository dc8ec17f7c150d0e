/* checkpoint.c — HDF5 checkpoints with a checksum per dataset (layout in checkpoint.h). */
#include "core/checkpoint.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CKPT_CHECKSUM_ATTR "xxh64"

/* HDF5 prints its own error stack by default; our messages name the file and the cause. */
static void h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* ---- writing ---- */

/* One dataset with its checksum attribute. dims: ndim sizes; data: nbytes of `type`. */
static int write_dataset(hid_t file, const char *name, hid_t type, int ndim, const hsize_t *dims,
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
    if ((attr = H5Acreate2(dset, CKPT_CHECKSUM_ATTR, H5T_STD_U64LE, aspace, H5P_DEFAULT,
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

/* The arena `arena` (num_params fp32, host) as one dataset per tensor and layer under group. */
static int write_arena(hid_t file, const char *group, const struct model *m, const float *arena) {
    char hf[256], name[320];
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        if (!p->numel) continue;
        size_t per = p->numel / (size_t)p->layers;
        hsize_t dims[2] = {(hsize_t)p->shape[0], (hsize_t)p->shape[1]};
        for (int l = 0; l < p->layers; l++) {
            if (model_param_hf_name(m, id, l, hf, sizeof hf)) return -1;
            snprintf(name, sizeof name, "/%s/%s", group, hf);
            if (write_dataset(file, name, H5T_IEEE_F32LE, p->ndim, dims,
                              arena + p->offset + (size_t)l * per, per * sizeof(float)))
                return -1;
        }
    }
    return 0;
}

/* Durability: the data of the file, then the directory entry of the rename. */
static int fsync_path(const char *path, int directory) {
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void dir_of(const char *path, char *dir, size_t len) {
    snprintf(dir, len, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == dir)
        slash[1] = 0;
    else
        *slash = 0;
}

/* Test hook: XLMC_TEST_CKPT_PAUSE_STEP=N pauses the write of the step-N checkpoint half way
 * (weights written, moments not) for a minute, so that a test's `kill -9` lands inside it. */
static void test_pause(long step) {
    const char *s = getenv("XLMC_TEST_CKPT_PAUSE_STEP");
    if (s && *s && atol(s) == step) {
        fprintf(stderr,
                "xlmc: checkpoint of step %ld half written, pausing 60 s "
                "(XLMC_TEST_CKPT_PAUSE_STEP)\n",
                step);
        sleep(60);
    }
}

static int write_contents(hid_t f, const struct model *m, const struct trainer *t,
                          const struct loader_state *ls, uint64_t vocab_hash) {
    if (write_arena(f, "weights", m, m->master)) return -1;
    test_pause(t ? t->step : 0);
    if (t) {
        size_t bytes = m->num_params * sizeof(float);
        float *host = xmalloc(bytes ? bytes : 1);
        int rc = 0;
        m->ops->to_host(host, t->adam_m, bytes);
        rc |= write_arena(f, "adam_m", m, host);
        m->ops->to_host(host, t->adam_v, bytes);
        rc |= write_arena(f, "adam_v", m, host);
        free(host);
        if (rc) return -1;
    }
    int64_t step = t ? t->step : 0, skipped = t ? t->skipped : 0;
    double sc[SCALER_STATE_LEN] = {1.0, 0.0};
    if (t) scaler_save(&t->scaler, sc);
    uint64_t lw[LOADER_STATE_WORDS] = {0};
    if (ls) {
        lw[0] = ls->step;
        for (int i = 0; i < XLMC_MAX_LANGS; i++) {
            lw[1 + i] = ls->epoch[i];
            lw[1 + XLMC_MAX_LANGS + i] = ls->cursor[i];
        }
        lw[LOADER_STATE_WORDS - 1] = ls->reserved;
    }
    uint64_t rng[2] = {m->cfg.train.seed, (uint64_t)step};
    int32_t world = t && t->comm ? t->comm->world : 1;
    char *cfg = config_to_string(&m->cfg);
    size_t cfg_len = strlen(cfg);
    hsize_t one = 1, two = 2, nsc = SCALER_STATE_LEN, nlw = LOADER_STATE_WORDS, ncfg = cfg_len;
    int rc = 0;
    rc |= write_dataset(f, "/state/step", H5T_STD_I64LE, 1, &one, &step, sizeof step);
    rc |= write_dataset(f, "/state/skipped", H5T_STD_I64LE, 1, &one, &skipped, sizeof skipped);
    rc |= write_dataset(f, "/state/scaler", H5T_IEEE_F64LE, 1, &nsc, sc, sizeof sc);
    rc |= write_dataset(f, "/state/loader", H5T_STD_U64LE, 1, &nlw, lw, sizeof lw);
    rc |= write_dataset(f, "/state/rng", H5T_STD_U64LE, 1, &two, rng, sizeof rng);
    rc |= write_dataset(f, "/state/world_size", H5T_STD_I32LE, 1, &one, &world, sizeof world);
    rc |= write_dataset(f, "/config", H5T_STD_U8LE, 1, &ncfg, cfg, cfg_len);
    rc |= write_dataset(f, "/vocab_hash", H5T_STD_U64LE, 1, &one, &vocab_hash, sizeof vocab_hash);
    free(cfg);
    return rc ? -1 : 0;
}

int ckpt_save(const char *path, const struct model *m, const struct trainer *t,
              const struct loader_state *ls, uint64_t vocab_hash) {
    char tmp[4200], dir[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    h5_quiet();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("checkpoint %s: cannot create the file (%s)", tmp, strerror(errno));
    int rc = write_contents(f, m, t, ls, vocab_hash);
    if (H5Fclose(f) < 0) rc = -1;
    if (rc) {
        unlink(tmp);
        return xlmc_error("checkpoint %s: writing failed (disk full or not writable?)", tmp);
    }
    dir_of(path, dir, sizeof dir);
    if (fsync_path(tmp, 0) || rename(tmp, path) || fsync_path(dir, 1)) {
        int e = errno;
        unlink(tmp);
        return xlmc_error("checkpoint %s: cannot fsync or rename into place (%s)", path,
                          strerror(e));
    }
    return 0;
}

/* ---- reading ---- */

struct verify_ctx {
    char *why;
    size_t why_len;
    int bad;
    int datasets;
};

static int verify_dataset(hid_t d, const char *name, char *why, size_t why_len) {
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
    if ((attr = H5Aopen(d, CKPT_CHECKSUM_ATTR, H5P_DEFAULT)) < 0 ||
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
    if (verify_dataset(d, name, v->why, v->why_len)) v->bad = 1;
    H5Dclose(d);
    return v->bad ? 1 : 0;
}

int ckpt_verify(const char *path, char *why, size_t why_len) {
    h5_quiet();
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

/* Read dataset `name` of exactly nbytes into out as mem_type, checking its checksum. */
static int read_dataset(hid_t f, const char *path, const char *name, hid_t mem_type, void *out,
                        size_t nbytes) {
    char why[512];
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return xlmc_error("checkpoint %s: dataset %s is missing", path, name);
    hid_t space = H5Dget_space(d);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    if (n < 0 || (size_t)n * H5Tget_size(mem_type) != nbytes) {
        H5Dclose(d);
        return xlmc_error("checkpoint %s: dataset %s has %lld elements, the model expects %zu "
                          "(a checkpoint of another model shape?)",
                          path, name, (long long)n, nbytes / H5Tget_size(mem_type));
    }
    int rc = verify_dataset(d, name, why, sizeof why);
    if (!rc && nbytes && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        snprintf(why, sizeof why, "dataset %s cannot be read", name);
        rc = -1;
    }
    H5Dclose(d);
    if (rc) return xlmc_error("checkpoint %s: %s", path, why);
    return 0;
}

static int read_arena(hid_t f, const char *path, const char *group, const struct model *m,
                      float *arena) {
    char hf[256], name[320];
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        if (!p->numel) continue;
        size_t per = p->numel / (size_t)p->layers;
        for (int l = 0; l < p->layers; l++) {
            if (model_param_hf_name(m, id, l, hf, sizeof hf)) return -1;
            snprintf(name, sizeof name, "/%s/%s", group, hf);
            if (read_dataset(f, path, name, H5T_NATIVE_FLOAT, arena + p->offset + (size_t)l * per,
                             per * sizeof(float)))
                return -1;
        }
    }
    return 0;
}

/* The config text (malloc'd, NUL-terminated) or NULL after an error. */
static char *read_config_text(hid_t f, const char *path) {
    hid_t d = H5Dopen2(f, "/config", H5P_DEFAULT);
    if (d < 0) {
        xlmc_error("checkpoint %s: no /config dataset (not an xlmc checkpoint?)", path);
        return NULL;
    }
    hid_t space = H5Dget_space(d);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    if (n < 0) {
        xlmc_error("checkpoint %s: /config is unreadable", path);
        return NULL;
    }
    char *text = xmalloc((size_t)n + 1);
    if (read_dataset(f, path, "/config", H5T_NATIVE_UCHAR, text, (size_t)n)) {
        free(text);
        return NULL;
    }
    text[n] = 0;
    return text;
}

int ckpt_read_config(const char *path, struct xlmc_config *cfg, uint64_t *vocab_hash) {
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("checkpoint %s: cannot open it as HDF5 (missing or corrupt)", path);
    char *text = read_config_text(f, path);
    uint64_t vh = 0;
    int rc = -1;
    if (text && !read_dataset(f, path, "/vocab_hash", H5T_NATIVE_UINT64, &vh, sizeof vh)) {
        char name[4200];
        snprintf(name, sizeof name, "%s:/config", path);
        rc = config_parse_string(text, name, cfg);
        if (!rc) snprintf(cfg->path, sizeof cfg->path, "%s", path);
    }
    free(text);
    H5Fclose(f);
    if (!rc && vocab_hash) *vocab_hash = vh;
    return rc;
}

int ckpt_load(const char *path, struct model *m, struct trainer *t, struct loader_state *ls) {
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("checkpoint %s: cannot open it as HDF5 (missing or corrupt)", path);
    size_t bytes = m->num_params * sizeof(float);
    /* Everything is read into host buffers first: a failure leaves the model untouched. */
    float *w = xmalloc(bytes ? bytes : 1), *am = NULL, *av = NULL;
    int64_t step = 0, skipped = 0;
    double sc[SCALER_STATE_LEN];
    uint64_t lw[LOADER_STATE_WORDS];
    int rc = read_arena(f, path, "weights", m, w);
    if (!rc && t) {
        am = xmalloc(bytes ? bytes : 1);
        av = xmalloc(bytes ? bytes : 1);
        if (H5Lexists(f, "/adam_m", H5P_DEFAULT) <= 0) {
            rc = xlmc_error("checkpoint %s holds weights only, no optimizer state: use it with "
                            "--init-from, not as a run's checkpoint",
                            path);
        } else {
            rc = read_arena(f, path, "adam_m", m, am) || read_arena(f, path, "adam_v", m, av) ||
                 read_dataset(f, path, "/state/step", H5T_NATIVE_INT64, &step, sizeof step) ||
                 read_dataset(f, path, "/state/skipped", H5T_NATIVE_INT64, &skipped,
                              sizeof skipped) ||
                 read_dataset(f, path, "/state/scaler", H5T_NATIVE_DOUBLE, sc, sizeof sc);
            rc = rc ? -1 : 0;
        }
    }
    if (!rc && ls) rc = read_dataset(f, path, "/state/loader", H5T_NATIVE_UINT64, lw, sizeof lw);
    H5Fclose(f);
    if (!rc && t) {
        struct scaler s = t->scaler;
        rc = scaler_restore(&s, sc);
        if (rc)
            xlmc_error("checkpoint %s: invalid loss-scaler state", path);
        else
            t->scaler = s;
    }
    if (!rc) {
        memcpy(m->master, w, bytes);
        model_sync_weights(m);
        if (t) {
            m->ops->to_device(t->adam_m, am, bytes);
            m->ops->to_device(t->adam_v, av, bytes);
            t->step = step;
            t->skipped = skipped;
        }
        if (ls) {
            ls->step = lw[0];
            for (int i = 0; i < XLMC_MAX_LANGS; i++) {
                ls->epoch[i] = lw[1 + i];
                ls->cursor[i] = lw[1 + XLMC_MAX_LANGS + i];
            }
            ls->reserved = lw[LOADER_STATE_WORDS - 1];
        }
    }
    free(w);
    free(am);
    free(av);
    return rc;
}

/* ---- run directories ---- */

/* step-NNNNNNN.h5 exactly: its step, else -1. */
static long ckpt_name_step(const char *name) {
    if (strncmp(name, "step-", 5)) return -1;
    char *end;
    long s = strtol(name + 5, &end, 10);
    if (end == name + 5 || strcmp(end, ".h5") || s < 0) return -1;
    return s;
}

struct ckpt_entry {
    long step;
    char name[256];
};

static int entry_cmp_desc(const void *a, const void *b) {
    long x = ((const struct ckpt_entry *)a)->step, y = ((const struct ckpt_entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Checkpoints of dir, newest first (malloc'd, *n entries); reports leftover .tmp files when
 * report is set. NULL with *n = 0 when the directory is missing or empty. */
static struct ckpt_entry *list_checkpoints(const char *dir, int *n, int report) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct ckpt_entry *e = NULL;
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (report && len > 4 && !strcmp(de->d_name + len - 4, ".tmp"))
            xlmc_warn("checkpoint %s/%s is partial (a write was interrupted): ignored", dir,
                      de->d_name);
        long s = ckpt_name_step(de->d_name);
        if (s < 0 || len >= sizeof e->name) continue;
        if (*n == cap) e = xrealloc(e, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *e);
        e[*n].step = s;
        memcpy(e[*n].name, de->d_name, len + 1);
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(e, (size_t)*n, sizeof *e, entry_cmp_desc);
    return e;
}

int ckpt_find_latest(const char *run_dir, char *path, size_t len) {
    char dir[4200], full[4500], why[512];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    int n = 0;
    struct ckpt_entry *e = list_checkpoints(dir, &n, 1);
    int rc = 1;
    for (int i = 0; i < n; i++) {
        snprintf(full, sizeof full, "%s/%s", dir, e[i].name);
        if (ckpt_verify(full, why, sizeof why)) {
            xlmc_warn("checkpoint %s is corrupt: %s; skipping it (left in place)", full, why);
            continue;
        }
        if (strlen(full) >= len) {
            rc = xlmc_error("checkpoint path %s is too long", full);
            break;
        }
        memcpy(path, full, strlen(full) + 1);
        rc = 0;
        break;
    }
    if (rc == 1 && n > 0) rc = 2; /* there were checkpoints, none valid: not a new run */
    free(e);
    return rc;
}

int ckpt_save_run(const char *run_dir, const struct model *m, const struct trainer *t,
                  const struct loader_state *ls, uint64_t vocab_hash, int keep_last, char *out,
                  size_t out_len) {
    char dir[4200], path[4500];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (mkdir(dir, 0777) && errno != EEXIST)
        return xlmc_error("cannot create %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/step-%07ld.h5", dir, t ? t->step : 0L);
    if (ckpt_save(path, m, t, ls, vocab_hash)) return -1;
    if (out && out_len) snprintf(out, out_len, "%s", path);
    if (keep_last <= 0) return 0;
    /* Only now that the new one is complete: the oldest beyond keep_last go. */
    int n = 0;
    struct ckpt_entry *e = list_checkpoints(dir, &n, 0);
    for (int i = keep_last; i < n; i++) {
        char old[4500];
        snprintf(old, sizeof old, "%s/%s", dir, e[i].name);
        if (unlink(old)) xlmc_warn("cannot delete old checkpoint %s: %s", old, strerror(errno));
    }
    free(e);
    return 0;
}
