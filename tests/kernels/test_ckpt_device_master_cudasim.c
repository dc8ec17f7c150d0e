/* test_ckpt_device_master_cudasim — the fp32 master weights live on the device between
 * checkpoints (issue 14 item 1): after two fp16 steps of the CUDA backend in cudasim,
 *   1. a checkpoint holds the device's master weights, not the stale host copy from before
 *      the steps (read back into a fresh CPU model, they equal trainer_master_to_host's);
 *   2. the host copy did move (else check 1 could not tell the two apart);
 *   3. loading that checkpoint into the device trainer and stepping once more gives the same
 *      master weights as stepping on from where the run stood (the load reaches the device);
 *   4. (issue 14 item 8) local rank 3 on a node that shows this process one GPU opens that
 *      GPU: the rank picks the GPU modulo the visible count (cudasim shows one);
 *   5. the device state crosses to the host only when a checkpoint is written: a step copies
 *      at most 1 KiB off the device, the save copies exactly the master weights and the two
 *      Adam moments, all through page-locked memory;
 *   6. the checkpoint's Adam moments are the device's, bit for bit, and the device
 *      checkpoint equals the CPU backend's checkpoint of the same two fp16 steps (weights,
 *      moments) within what fp16 storage rounding allows. */
#include "core/checkpoint.h"
#include "core/comm.h"
#include "core/model.h"
#include "core/trainer.h"
#include "tests/cudasim/cudasim_count.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct ops *cudasim_ops_cuda(enum ops_precision precision, int device, char *why,
                                   size_t why_len);

static const char CONFIG[] =
    "[model]\nvocab_size = 40\ndim = 32\nn_layers = 1\nn_heads = 2\nffn_dim = 64\n"
    "max_positions = 16\nn_langs = 1\nlangs = en\ndropout = 0\nattention_dropout = "
    "0\nlayer_norm_eps = 1e-12\nuse_lang_emb = false\npad_index = 2\n"
    "[train]\nbatch_tokens = 16\nmicro_batch = 2\nseq_len = 8\nlr = 0.01\n"
    "schedule = constant\nmax_steps = 10\nprecision = fp16\nseed = 1\n";

/* D2H bytes logged since cudasim_count_start; *pageable: of them, not page-locked */
static double d2h_bytes(double *pageable) {
    const struct cudasim_record *e;
    size_t n = cudasim_count_events(&e);
    double b = 0;
    *pageable = 0;
    for (size_t i = 0; i < n; i++)
        if (e[i].kind == CUDASIM_EV_COPY && e[i].dir == CUDASIM_D2H) {
            b += (double)e[i].bytes;
            if (!e[i].pinned) *pageable += (double)e[i].bytes;
        }
    return b;
}

/* ||a - b|| / ||b|| */
static double rel_l2(const float *a, const float *b, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        d2 += d * d;
        r2 += (double)b[i] * b[i];
    }
    return sqrt(d2 / (r2 > 0 ? r2 : 1e-300));
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char why[256] = "", path[600];
    snprintf(path, sizeof path, "%s/device_master.h5", dir);
    const struct ops *sim = cudasim_ops_cuda(OPS_FP16, 0, why, sizeof why);
    struct xlmc_config cfg;
    if (!sim || config_parse_string(CONFIG, "test config", &cfg)) {
        fprintf(stderr, "setup failed: %s\n", why);
        return 1;
    }
    char why3[256] = "";
    const struct ops *rank3 = cudasim_ops_cuda(OPS_FP16, 3, why3, sizeof why3);
    printf("%s local rank 3 with one visible GPU opens it%s%s\n", rank3 == sim ? "ok  " : "FAIL",
           rank3 ? "" : ": ", why3);
    int fails = rank3 != sim;
    int32_t ids[16], langs[16] = {0}, targets[16], lengths[2] = {8, 8};
    for (int i = 0; i < 16; i++)
        ids[i] = 4 + (i * 7) % 36, targets[i] = 4 + (i * 11) % 36;
    struct batch b = {2, 8, ids, langs, lengths, targets, 0, NULL, 0};
    struct comm *c = comm_local_create();
    struct model m, ref;
    struct trainer t;
    struct step_stats st;
    if (model_create(&m, &cfg, sim) || model_create(&ref, &cfg, ops_cpu(OPS_FP32))) return 1;
    model_init_weights(&m, 3);
    if (trainer_init(&t, &m, c)) return 1;
    size_t n = m.num_params, bytes = n * sizeof(float);
    float *before = malloc(bytes), *after = malloc(bytes), *cont = malloc(bytes);
    memcpy(before, m.master, bytes);
    fails += trainer_step(&t, &b, 1, &st) != 0;
    double pageable = 0, step_d2h, save_d2h;
    cudasim_count_start(0, 0);
    fails += trainer_step(&t, &b, 1, &st) != 0;
    step_d2h = d2h_bytes(&pageable);
    cudasim_count_stop();
    cudasim_count_start(0, 0);
    if (ckpt_save(path, &m, &t, NULL, 0)) return 1;
    save_d2h = d2h_bytes(&pageable);
    cudasim_count_stop();
    printf("%s a step copies %.0f bytes off the device (at most 1024)\n",
           step_d2h <= 1024 ? "ok  " : "FAIL", step_d2h);
    printf("%s the save copies %.0f bytes off the device (want %zu: master + 2 moments), "
           "%.0f of them pageable (want 0)\n",
           save_d2h == 3.0 * (double)bytes && pageable == 0 ? "ok  " : "FAIL", save_d2h, 3 * bytes,
           pageable);
    fails += step_d2h > 1024 || save_d2h != 3.0 * (double)bytes || pageable != 0;
    if (ckpt_load(path, &ref, NULL, NULL)) return 1;
    trainer_master_to_host(&t);
    memcpy(after, m.master, bytes);
    int same = !memcmp(ref.master, after, bytes), moved = memcmp(before, after, bytes) != 0;
    printf("%s checkpoint holds the device master weights\n", same ? "ok  " : "FAIL");
    printf("%s the steps moved the master weights\n", moved ? "ok  " : "FAIL");
    fails += !same + !moved;
    {
        /* the same two steps on the CPU backend's fp16, checkpointed; both files read back
         * through CPU trainers */
        char cpath[600];
        snprintf(cpath, sizeof cpath, "%s/cpu_master.h5", dir);
        struct model cm, rd, rc;
        struct trainer ct, td, tc;
        if (model_create(&cm, &cfg, ops_cpu(OPS_FP16)) ||
            model_create(&rd, &cfg, ops_cpu(OPS_FP32)) ||
            model_create(&rc, &cfg, ops_cpu(OPS_FP32)))
            return 1;
        model_init_weights(&cm, 3);
        if (trainer_init(&ct, &cm, c) || trainer_init(&td, &rd, c) || trainer_init(&tc, &rc, c))
            return 1;
        for (int s = 0; s < 2; s++)
            fails += trainer_step(&ct, &b, 1, &st) != 0;
        if (ckpt_save(cpath, &cm, &ct, NULL, 0) || ckpt_load(path, &rd, &td, NULL) ||
            ckpt_load(cpath, &rc, &tc, NULL))
            return 1;
        float *dm = malloc(bytes);
        m.ops->to_host(dm, t.adam_m, bytes);
        int moments = !memcmp(dm, td.adam_m, bytes);
        m.ops->to_host(dm, t.adam_v, bytes);
        moments &= !memcmp(dm, td.adam_v, bytes);
        printf("%s the checkpoint's Adam moments are the device's bit for bit\n",
               moments ? "ok  " : "FAIL");
        fails += !moments;
        /* The moments are gradient averages: fp16 storage rounds to 2^-11 (4.9e-4) relative
         * and the backends order their sums differently, so allow about two roundings for
         * m and twice that for v (a square). The master weights moved by 2 updates of at
         * most lr each from identical starts: their difference is far smaller. */
        double ew = rel_l2(rd.master, rc.master, n), em = rel_l2(td.adam_m, tc.adam_m, n),
               ev = rel_l2(td.adam_v, tc.adam_v, n);
        int close = ew <= 1e-4 && em <= 1e-3 && ev <= 2e-3;
        printf("%s device checkpoint vs CPU backend's: weights rel %.2e (<= 1e-4), adam_m "
               "%.2e (<= 1e-3), adam_v %.2e (<= 2e-3)\n",
               close ? "ok  " : "FAIL", ew, em, ev);
        fails += !close;
        free(dm);
        remove(cpath);
        trainer_free(&ct);
        trainer_free(&td);
        trainer_free(&tc);
        model_destroy(&cm);
        model_destroy(&rd);
        model_destroy(&rc);
    }
    /* step on, then reload the checkpoint over a scribbled host copy and step again */
    fails += trainer_step(&t, &b, 1, &st) != 0;
    trainer_master_to_host(&t);
    memcpy(cont, m.master, bytes);
    memset(m.master, 0, bytes);
    fails += ckpt_load(path, &m, &t, NULL) != 0;
    fails += trainer_step(&t, &b, 1, &st) != 0;
    trainer_master_to_host(&t);
    int resumed = !memcmp(cont, m.master, bytes);
    printf("%s a step after loading the checkpoint matches the uninterrupted step\n",
           resumed ? "ok  " : "FAIL");
    fails += !resumed;
    remove(path);
    trainer_free(&t);
    model_destroy(&m);
    model_destroy(&ref);
    comm_destroy(c);
    free(before);
    free(after);
    free(cont);
    printf(fails ? "FAILED (%d)\n" : "PASSED\n", fails);
    return fails != 0;
}
