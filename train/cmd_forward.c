/* cmd_forward.c — `xlmc forward`: one forward (and optionally backward) pass of a model given
 * as Hugging Face state-dict tensors in HDF5, on one batch; writes logits, loss and gradients.
 * The parity test against transformers runs through this command. */
#include "train/commands.h"

#include "core/config.h"
#include "core/h5io.h"
#include "core/model.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char FORWARD_USAGE[] =
    "usage: xlmc forward --config C.ini --weights W.h5 --batch B.h5 --out O.h5 [--grads]\n"
    "                    [--device cpu|cuda] [--precision fp32|fp16]\n"
    "  W.h5: fp32 datasets named by the HF state-dict names (transformer.embeddings.weight, ...)\n"
    "  B.h5: int datasets input_ids, langs, attention_mask (B,T) and optional labels (B,T),\n"
    "        -100 = ignored; labels are used as given (not shifted)\n"
    "  O.h5: logits (B,T,V), loss (with labels), and with --grads a group grads/<HF name>\n"
    "        holding the gradient of the mean loss\n"
    "  vocab_size = 0 in the config: V is taken from the weights file\n";

/* "512 x 64" or "64" */
static const char *shape_str(char *buf, size_t len, int nd, const long long *d) {
    int n = snprintf(buf, len, "%s", nd == 0 ? "scalar" : "");
    for (int i = 0; i < nd && n >= 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, i ? " x %lld" : "%lld", d[i]);
    return buf;
}

/* Load every tensor of m from the weights file, checking names and shapes. */
static int forward_load_weights(struct model *m, hid_t f, const char *path) {
    char name[128];
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *t = &m->params[id];
        if (t->numel == 0) continue;
        size_t per = t->numel / (size_t)t->layers;
        for (int l = 0; l < t->layers; l++) {
            model_param_hf_name(m, id, l, name, sizeof name);
            int nd;
            long long d[H5IO_MAX_DIMS], want[2] = {t->shape[0], t->shape[1]};
            char ws[64], fs[96];
            shape_str(ws, sizeof ws, t->ndim, want);
            if (!h5io_exists(f, name))
                return xlmc_error("%s: missing tensor '%s' (expected shape %s)", path, name, ws);
            if (h5io_shape(f, name, &nd, d)) return -1;
            int ok = nd == t->ndim && d[0] == t->shape[0] && (nd == 1 || d[1] == t->shape[1]);
            if (!ok)
                return xlmc_error("%s: tensor '%s' has shape %s, expected %s", path, name,
                                  shape_str(fs, sizeof fs, nd, d), ws);
            float *data;
            if (h5io_read_f32(f, name, &data, NULL, NULL)) return -1;
            memcpy(m->master + t->offset + (size_t)l * per, data, per * sizeof(float));
            free(data);
        }
    }
    if (h5io_exists(f, "pred_layer.proj.weight")) {
        const struct param_tensor *t = &m->params[P_WTE];
        float *data;
        int nd;
        long long d[H5IO_MAX_DIMS];
        if (h5io_read_f32(f, "pred_layer.proj.weight", &data, &nd, d)) return -1;
        int same = nd == 2 && d[0] == t->shape[0] && d[1] == t->shape[1] &&
                   memcmp(data, m->master + t->offset, t->numel * sizeof(float)) == 0;
        free(data);
        if (!same)
            return xlmc_error("%s: pred_layer.proj.weight differs from "
                              "transformer.embeddings.weight; xlmc ties them",
                              path);
    }
    return model_sync_weights(m);
}

struct forward_batch {
    int B, T;
    int32_t *ids, *langs, *mask, *labels, *lengths;
};

static void forward_batch_free(struct forward_batch *fb) {
    free(fb->ids);
    free(fb->langs);
    free(fb->mask);
    free(fb->labels);
    free(fb->lengths);
}

static int read_bt(hid_t f, const char *path, const char *name, int32_t **out, int *B, int *T) {
    int nd;
    long long d[H5IO_MAX_DIMS];
    if (h5io_read_i32(f, name, out, &nd, d)) return -1;
    if (nd != 2 || d[0] <= 0 || d[1] <= 0)
        return xlmc_error("%s: dataset '%s' must be (B,T) with B, T > 0", path, name);
    if (*B && (d[0] != *B || d[1] != *T))
        return xlmc_error("%s: dataset '%s' is %lld x %lld, input_ids is %d x %d", path, name, d[0],
                          d[1], *B, *T);
    *B = (int)d[0];
    *T = (int)d[1];
    return 0;
}

static int forward_load_batch(struct forward_batch *fb, const char *path,
                              const struct model_config *mc) {
    hid_t f = h5io_open_read(path);
    if (f < 0) return -1;
    int rc = -1;
    if (read_bt(f, path, "input_ids", &fb->ids, &fb->B, &fb->T) ||
        read_bt(f, path, "langs", &fb->langs, &fb->B, &fb->T) ||
        read_bt(f, path, "attention_mask", &fb->mask, &fb->B, &fb->T) ||
        (h5io_exists(f, "labels") && read_bt(f, path, "labels", &fb->labels, &fb->B, &fb->T)))
        goto done;
    if (fb->T > mc->max_positions) {
        xlmc_error("%s: T = %d exceeds max_positions = %d", path, fb->T, mc->max_positions);
        goto done;
    }
    fb->lengths = xcalloc((size_t)fb->B, sizeof(int32_t));
    for (int b = 0; b < fb->B; b++) {
        int len = 0;
        for (int t = 0; t < fb->T; t++) {
            int32_t mk = fb->mask[(size_t)b * fb->T + t];
            if (mk != 0 && mk != 1) {
                xlmc_error("%s: attention_mask[%d][%d] = %d, expected 0 or 1", path, b, t, mk);
                goto done;
            }
            if (mk && len != t) {
                xlmc_error("%s: attention_mask row %d is not right padded (1 after 0 at t=%d)",
                           path, b, t);
                goto done;
            }
            len += mk;
        }
        fb->lengths[b] = len;
    }
    for (size_t i = 0; i < (size_t)fb->B * fb->T; i++) {
        if (fb->ids[i] < 0 || fb->ids[i] >= mc->vocab_size) {
            xlmc_error("%s: input_ids[%zu] = %d outside the vocabulary [0, %d)", path, i,
                       fb->ids[i], mc->vocab_size);
            goto done;
        }
        if (fb->langs[i] < 0 || fb->langs[i] >= (mc->n_langs > 0 ? mc->n_langs : 1)) {
            xlmc_error("%s: langs[%zu] = %d outside [0, n_langs = %d)", path, i, fb->langs[i],
                       mc->n_langs);
            goto done;
        }
        if (fb->labels && fb->labels[i] >= mc->vocab_size) {
            xlmc_error("%s: labels[%zu] = %d outside the vocabulary", path, i, fb->labels[i]);
            goto done;
        }
    }
    rc = 0;
done:
    h5io_close(f);
    return rc;
}

/* Write O.h5 (under a temporary name; the caller renames). */
static int forward_write(const char *tmp, struct model *m, const struct forward_batch *fb,
                         const float *logits, float loss, int with_loss, const float *grads) {
    hid_t f = h5io_create(tmp);
    if (f < 0) return -1;
    long long d[3] = {fb->B, fb->T, m->cfg.model.vocab_size};
    int rc = h5io_write_f32(f, "logits", logits, 3, d);
    if (!rc && with_loss) rc = h5io_write_f32(f, "loss", &loss, 0, NULL);
    char name[160], hf[128];
    for (int id = 0; !rc && grads && id < P_COUNT; id++) {
        const struct param_tensor *t = &m->params[id];
        size_t per = t->numel / (size_t)(t->layers ? t->layers : 1);
        for (int l = 0; !rc && t->numel && l < t->layers; l++) {
            model_param_hf_name(m, id, l, hf, sizeof hf);
            snprintf(name, sizeof name, "grads/%s", hf);
            long long sd[2] = {t->shape[0], t->shape[1]};
            rc = h5io_write_f32(f, name, grads + t->offset + (size_t)l * per, t->ndim, sd);
        }
    }
    if (h5io_close(f)) rc = -1;
    return rc;
}

static int forward_main(int argc, char **argv) {
    const char *config = NULL, *weights = NULL, *batch = NULL, *out = NULL;
    const char *device = "cpu", *precision = "fp32";
    int want_grads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--config")      ? &config
                            : !strcmp(a, "--weights")   ? &weights
                            : !strcmp(a, "--batch")     ? &batch
                            : !strcmp(a, "--out")       ? &out
                            : !strcmp(a, "--device")    ? &device
                            : !strcmp(a, "--precision") ? &precision
                                                        : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(FORWARD_USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--grads")) {
            want_grads = 1;
        } else if (slot) {
            if (i + 1 >= argc) return xlmc_error("forward: option %s needs a value", a);
            *slot = argv[++i];
        } else {
            fputs(FORWARD_USAGE, stderr);
            return xlmc_error("forward: unknown argument '%s'", a);
        }
    }
    if (!config || !weights || !batch || !out) {
        fputs(FORWARD_USAGE, stderr);
        return xlmc_error("forward: --config, --weights, --batch and --out are required");
    }
    enum ops_precision prec;
    if (!strcmp(precision, "fp32"))
        prec = OPS_FP32;
    else if (!strcmp(precision, "fp16"))
        prec = OPS_FP16;
    else
        return xlmc_error("forward: --precision must be fp32 or fp16, not '%s'", precision);
    const struct ops *ops = NULL;
    char why[256] = "";
    if (!strcmp(device, "cpu"))
        ops = ops_cpu(prec);
    else if (!strcmp(device, "cuda"))
        ops = ops_cuda(prec, 0, why, sizeof why);
    else
        return xlmc_error("forward: --device must be cpu or cuda, not '%s'", device);
    if (!ops) return xlmc_error("forward: --device cuda: %s", why);

    struct xlmc_config cfg;
    if (config_load(config, &cfg)) return 1;
    hid_t wf = h5io_open_read(weights);
    if (wf < 0) return 1;
    if (cfg.model.vocab_size == 0) {
        int nd;
        long long d[H5IO_MAX_DIMS];
        if (h5io_shape(wf, "transformer.embeddings.weight", &nd, d) || nd != 2) {
            h5io_close(wf);
            return xlmc_error("%s: vocab_size = 0 in %s needs a 2-d "
                              "transformer.embeddings.weight",
                              weights, config);
        }
        cfg.model.vocab_size = (int)d[0];
    }
    struct model m;
    if (model_create(&m, &cfg, ops)) {
        h5io_close(wf);
        return 1;
    }
    int rc = forward_load_weights(&m, wf, weights);
    h5io_close(wf);
    struct forward_batch fb = {0};
    if (rc || forward_load_batch(&fb, batch, &cfg.model)) {
        forward_batch_free(&fb);
        model_destroy(&m);
        return 1;
    }
    if (want_grads && !fb.labels) rc = xlmc_error("forward: --grads needs labels in %s", batch);
    float *logits = NULL, *grads = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    if (!rc) {
        struct batch b = {fb.B, fb.T, fb.ids, fb.langs, fb.lengths, fb.labels, 0, NULL, 0};
        logits = xmalloc((size_t)fb.B * fb.T * cfg.model.vocab_size * sizeof(float));
        long count = 0;
        float loss = model_forward(&m, &b, 0, 0, 0, logits, &count);
        if (loss < 0) rc = -1;
        /* gradient of the mean loss: loss_scale 1, denom = counted targets */
        if (!rc && want_grads && model_backward(&m, &b, 0, 0, 1.0f, (double)count)) rc = -1;
        if (!rc && want_grads) {
            grads = xmalloc(m.num_params * sizeof(float));
            float *dev = ops->alloc(m.num_params * sizeof(float));
            if (!dev) {
                rc = xlmc_error("forward: cannot allocate the gradient copy");
            } else {
                ops->storage_to_f32(dev, m.grads, m.num_params);
                ops->to_host(grads, dev, m.num_params * sizeof(float));
                ops->synchronize();
                ops->free(dev);
            }
        }
        if (!rc) rc = forward_write(tmp, &m, &fb, logits, loss, fb.labels != NULL, grads);
        if (!rc && rename(tmp, out) != 0)
            rc = xlmc_error("%s: cannot rename %s into place", out, tmp);
        if (rc) unlink(tmp);
    }
    free(logits);
    free(grads);
    forward_batch_free(&fb);
    model_destroy(&m);
    return rc ? 1 : 0;
}

int cmd_forward(int argc, char **argv) {
    return forward_main(argc, argv) ? 1 : 0;
}
