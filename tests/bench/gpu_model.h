/* gpu_model.h — the GPU cost model of tests/bench (gpu_model.c prices, gpu_model_sim.c counts).
 *
 * gpu_model_sim drives the real training step (core/model.c + core/trainer.c) over the CUDA
 * backend compiled by g++ into cudasim's traffic build, and logs every launch, cuBLAS call,
 * copy and memset with its counts (tests/cudasim/cudasim_count.h). Phases are told apart by
 * marks: "micro" before each micro-batch's forward (a wrapped embed_forward), "ar_start" at
 * each overlapped gradient all-reduce the trainer starts, "ar_wait" where it waits, "host"
 * at each host-side collective (token count, loss, overflow flag). */
#ifndef XLMC_GPU_MODEL_H
#define XLMC_GPU_MODEL_H

#include "tests/cudasim/cudasim_count.h"

#include <stddef.h>

/* One simulated optimizer step of n_micro micro-batches of B rows. */
struct sim_run {
    int B, T, n_micro;
    struct cudasim_record *rec; /* malloc'd copy of the log */
    size_t n;
    size_t *ar_bytes; /* bytes of each started all-reduce, in order */
    size_t n_ar;
    double wall_s; /* host seconds the simulation took */
};

/* Runs one trainer_step of one micro-batch of Bs[i] rows for each of `runs` sizes, at the
 * config's shapes, over a communicator that claims `world` ranks; out[i] gets the log of
 * step i (the first also carries the setup's wall time). sample_blocks: see
 * cudasim_count_start. Returns 0 or -1 after printing why. */
int gpu_model_simulate(const char *config_path, const int *Bs, int runs, int world,
                       int sample_blocks, struct sim_run *out);
void sim_run_free(struct sim_run *r);

#endif
