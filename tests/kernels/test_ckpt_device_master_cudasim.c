/* test_ckpt_device_master_cudasim — the fp32 master weights live on the device between
 * checkpoints (issue 14 item 1): after two fp16 steps of the CUDA backend in cudasim,
 *   1. a checkpoint holds the device's master weights, not the stale host copy from before
 *      the steps (read back into a fresh CPU model, they equal trainer_master_to_host's);
 *   2. the host copy did move (else check 1 could not tell the two apart);
 *   3. loading that checkpoint into the device trainer and stepping once more gives the same
 *      master weights as stepping on from where the run stood (the load reaches the device);
 *   4. (issue 14 item 8) local rank 3 on a node that shows this process one GPU opens that
 *      GPU: the rank picks the GPU modulo the visible count (cudasim shows one). */
#include "core/checkpoint.h"
#include "core/comm.h"
#include "core/model.h"
#include "core/trainer.h"

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
    for (int s = 0; s < 2; s++)
        fails += trainer_step(&t, &b, 1, &st) != 0;
    if (ckpt_save(path, &m, &t, NULL, 0) || ckpt_load(path, &ref, NULL, NULL)) return 1;
    trainer_master_to_host(&t);
    memcpy(after, m.master, bytes);
    int same = !memcmp(ref.master, after, bytes), moved = memcmp(before, after, bytes) != 0;
    printf("%s checkpoint holds the device master weights\n", same ? "ok  " : "FAIL");
    printf("%s the steps moved the master weights\n", moved ? "ok  " : "FAIL");
    fails += !same + !moved;
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
