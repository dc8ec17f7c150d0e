/* checkpoint.c — HDF5 checkpoints with a checksum per dataset (layout in checkpoint.h). */
#include "core/checkpoint.h"
#include "core/h5io.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- writing ---- */

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
            if (h5io_write_summed(file, name, H5T_IEEE_F32LE, p->ndim, dims,
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

static void (*midwrite_hook)(void *ctx, long step);
static void *midwrite_ctx;

void ckpt_set_midwrite_hook(void (*hook)(void *ctx, long step), void *ctx) {
    midwrite_hook = hook;
    midwrite_ctx = ctx;
}

/* One host buffer of num_params floats for the device state a checkpoint writes: page-locked
 * (ops->host_alloc) so that the copies off the device run at full PCIe speed; malloc if the
 * backend has none or it is out of page-locked memory. */
static float *ckpt_host_buffer(const struct ops *ops, size_t bytes, int *pinned) {
    float *p = ops->host_alloc ? ops->host_alloc(bytes ? bytes : 1) : NULL;
    *pinned = p != NULL;
    return p ? p : xmalloc(bytes ? bytes : 1);
}

/* ls (n) into words: LOADER_STATE_WORDS per state */
static void pack_states(const struct loader_state *ls, int n, uint64_t *lw) {
    for (int k = 0; k < n; k++, lw += LOADER_STATE_WORDS) {
        lw[0] = ls[k].step;
        for (int i = 0; i < XLMC_MAX_LANGS; i++) {
            lw[1 + i] = ls[k].epoch[i];
            lw[1 + XLMC_MAX_LANGS + i] = ls[k].cursor[i];
        }
        lw[LOADER_STATE_WORDS - 1] = ls[k].reserved;
    }
}

static void unpack_states(const uint64_t *lw, int n, struct loader_state *ls) {
    for (int k = 0; k < n; k++, lw += LOADER_STATE_WORDS) {
        ls[k].step = lw[0];
        for (int i = 0; i < XLMC_MAX_LANGS; i++) {
            ls[k].epoch[i] = lw[1 + i];
            ls[k].cursor[i] = lw[1 + XLMC_MAX_LANGS + i];
        }
        ls[k].reserved = lw[LOADER_STATE_WORDS - 1];
    }
}

static int write_contents(hid_t f, const struct model *m, const struct trainer *t,
                          const struct loader_state *ls, int n_ls, uint64_t vocab_hash) {
    size_t bytes = m->num_params * sizeof(float);
    const struct ops *ops = m->ops;
    /* A device backend's state (master weights, Adam moments) reaches the host only here,
     * one arena at a time through the same buffer; the CPU backend's is written in place. */
    int device = t && !ops->host_memory, pinned = 0;
    float *host = device ? ckpt_host_buffer(ops, bytes, &pinned) : NULL;
    /* On a device backend the master weights live on the device between checkpoints. */
    const float *w = m->master;
    if (t && t->master_host_stale) {
        ops->to_host(host, t->master_dev, bytes);
        w = host;
    }
    int rc = write_arena(f, "weights", m, w);
    if (!rc && midwrite_hook) midwrite_hook(midwrite_ctx, t ? t->step : 0);
    if (!rc && t) {
        if (device) ops->to_host(host, t->adam_m, bytes);
        rc = write_arena(f, "adam_m", m, device ? host : t->adam_m);
        if (!rc && device) ops->to_host(host, t->adam_v, bytes);
        if (!rc) rc = write_arena(f, "adam_v", m, device ? host : t->adam_v);
    }
    if (host && pinned)
        ops->host_free(host);
    else
        free(host);
    if (rc) return -1;
    int64_t step = t ? t->step : 0, skipped = t ? t->skipped : 0;
    double sc[SCALER_STATE_LEN] = {1.0, 0.0};
    if (t) scaler_save(&t->scaler, sc);
    uint64_t lw[LOADER_STATE_WORDS] = {0};
    if (ls && n_ls > 0) pack_states(ls, 1, lw);
    uint64_t rng[2] = {m->cfg.train.seed, (uint64_t)step};
    int32_t world = t && t->comm ? t->comm->world : 1;
    char *cfg = config_to_string(&m->cfg);
    size_t cfg_len = strlen(cfg);
    hsize_t one = 1, two = 2, nsc = SCALER_STATE_LEN, nlw = LOADER_STATE_WORDS, ncfg = cfg_len;
    rc = 0;
    rc |= h5io_write_summed(f, "/state/step", H5T_STD_I64LE, 1, &one, &step, sizeof step);
    rc |= h5io_write_summed(f, "/state/skipped", H5T_STD_I64LE, 1, &one, &skipped, sizeof skipped);
    rc |= h5io_write_summed(f, "/state/scaler", H5T_IEEE_F64LE, 1, &nsc, sc, sizeof sc);
    rc |= h5io_write_summed(f, "/state/loader", H5T_STD_U64LE, 1, &nlw, lw, sizeof lw);
    if (ls && n_ls > 1) { /* every objective's stream; /state/loader repeats the first */
        hsize_t nall = (hsize_t)n_ls * LOADER_STATE_WORDS;
        uint64_t *all = xcalloc((size_t)nall, sizeof *all);
        pack_states(ls, n_ls, all);
        rc |= h5io_write_summed(f, "/state/loader_objectives", H5T_STD_U64LE, 1, &nall, all,
                                (size_t)nall * sizeof *all);
        free(all);
    }
    rc |= h5io_write_summed(f, "/state/rng", H5T_STD_U64LE, 1, &two, rng, sizeof rng);
    rc |= h5io_write_summed(f, "/state/world_size", H5T_STD_I32LE, 1, &one, &world, sizeof world);
    rc |= h5io_write_summed(f, "/config", H5T_STD_U8LE, 1, &ncfg, cfg, cfg_len);
    rc |=
        h5io_write_summed(f, "/vocab_hash", H5T_STD_U64LE, 1, &one, &vocab_hash, sizeof vocab_hash);
    free(cfg);
    return rc ? -1 : 0;
}

int ckpt_save(const char *path, const struct model *m, const struct trainer *t,
              const struct loader_state *ls, uint64_t vocab_hash) {
    return ckpt_save_states(path, m, t, ls, ls ? 1 : 0, vocab_hash);
}

int ckpt_save_states(const char *path, const struct model *m, const struct trainer *t,
                     const struct loader_state *ls, int n_ls, uint64_t vocab_hash) {
    char tmp[4200], dir[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    h5io_quiet();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("checkpoint %s: cannot create the file (%s)", tmp, strerror(errno));
    int rc = write_contents(f, m, t, ls, n_ls, vocab_hash);
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

int ckpt_verify(const char *path, char *why, size_t why_len) {
    return h5io_verify_file(path, why, why_len);
}

/* Read dataset `name` of exactly nbytes into out as mem_type, checking its checksum. */
static int read_dataset(hid_t f, const char *path, const char *name, hid_t mem_type, void *out,
                        size_t nbytes) {
    char why[512];
    if (h5io_read_summed(f, name, mem_type, out, nbytes, why, sizeof why))
        return xlmc_error("checkpoint %s: %s", path, why);
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
    h5io_quiet();
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
    return ckpt_load_states(path, m, t, ls, ls ? 1 : 0, NULL);
}

/* The loader states of every objective into ls[0..n_ls-1]: /state/loader_objectives when the
 * checkpoint has it, else /state/loader alone (one stream; older checkpoints). *n_found:
 * how many the checkpoint holds. 0 or -1 (printed). */
static int read_states(hid_t f, const char *path, struct loader_state *ls, int n_ls, int *n_found) {
    int have = 1, ndim = 0;
    long long dims[H5IO_MAX_DIMS] = {0};
    uint64_t *lw;
    if (h5io_exists(f, "/state/loader_objectives") > 0) {
        if (h5io_shape(f, "/state/loader_objectives", &ndim, dims) || ndim != 1 || dims[0] <= 0 ||
            dims[0] % LOADER_STATE_WORDS || dims[0] / LOADER_STATE_WORDS > XLMC_MAX_OBJECTIVES)
            return xlmc_error("checkpoint %s: /state/loader_objectives has a bad shape", path);
        have = (int)(dims[0] / LOADER_STATE_WORDS);
        lw = xcalloc((size_t)dims[0], sizeof *lw);
        if (read_dataset(f, path, "/state/loader_objectives", H5T_NATIVE_UINT64, lw,
                         (size_t)dims[0] * sizeof *lw)) {
            free(lw);
            return -1;
        }
    } else {
        lw = xcalloc(LOADER_STATE_WORDS, sizeof *lw);
        if (read_dataset(f, path, "/state/loader", H5T_NATIVE_UINT64, lw,
                         LOADER_STATE_WORDS * sizeof *lw)) {
            free(lw);
            return -1;
        }
    }
    memset(ls, 0, (size_t)n_ls * sizeof *ls);
    unpack_states(lw, have < n_ls ? have : n_ls, ls);
    free(lw);
    if (n_found) *n_found = have;
    return 0;
}

int ckpt_load_states(const char *path, struct model *m, struct trainer *t, struct loader_state *ls,
                     int n_ls, int *n_found) {
    h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return xlmc_error("checkpoint %s: cannot open it as HDF5 (missing or corrupt)", path);
    size_t bytes = m->num_params * sizeof(float);
    /* Everything is read into host buffers first: a failure leaves the model untouched. They
     * are zeroed: the vocabulary padding of the arena (core/model.h) is in no dataset. */
    float *w = xcalloc(bytes ? bytes : 1, 1), *am = NULL, *av = NULL;
    int64_t step = 0, skipped = 0;
    double sc[SCALER_STATE_LEN];
    struct loader_state *st = n_ls > 0 ? xcalloc((size_t)n_ls, sizeof *st) : NULL;
    int rc = read_arena(f, path, "weights", m, w);
    if (!rc && t) {
        am = xcalloc(bytes ? bytes : 1, 1);
        av = xcalloc(bytes ? bytes : 1, 1);
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
    if (!rc && ls && n_ls > 0) rc = read_states(f, path, st, n_ls, n_found);
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
        rc = model_sync_weights(m);
    }
    if (!rc) {
        if (t) {
            trainer_master_changed(t);
            m->ops->to_device(t->adam_m, am, bytes);
            m->ops->to_device(t->adam_v, av, bytes);
            t->step = step;
            t->skipped = skipped;
        }
        if (ls && n_ls > 0) memcpy(ls, st, (size_t)n_ls * sizeof *ls);
    }
    free(st);
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
    return ckpt_save_run_states(run_dir, m, t, ls, ls ? 1 : 0, vocab_hash, keep_last, out, out_len);
}

int ckpt_save_run_states(const char *run_dir, const struct model *m, const struct trainer *t,
                         const struct loader_state *ls, int n_ls, uint64_t vocab_hash,
                         int keep_last, char *out, size_t out_len) {
    char dir[4200], path[4500];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    if (mkdir(dir, 0777) && errno != EEXIST)
        return xlmc_error("cannot create %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/step-%07ld.h5", dir, t ? t->step : 0L);
    if (ckpt_save_states(path, m, t, ls, n_ls, vocab_hash)) return -1;
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
