/* checkpoint.h — training checkpoints in HDF5, independent of the world size.
 *
 * Layout of R/checkpoints/step-NNNNNNN.h5 (every dataset carries an attribute "xxh64", the
 * XXH64 of its raw little-endian bytes, verified on load):
 *   /weights/<hf name>   fp32 master weights, one dataset per tensor and layer, named as in
 *                        the Hugging Face state dict (model_param_hf_name), PyTorch shapes
 *   /adam_m/<hf name>    Adam first moments   (absent in a weights-only checkpoint)
 *   /adam_v/<hf name>    Adam second moments  (absent in a weights-only checkpoint)
 *   /state/step          int64: optimizer updates applied
 *   /state/skipped       int64: fp16 overflow steps skipped
 *   /state/scaler        float64[2]: loss scale, clean steps (scaler_save)
 *   /state/loader        uint64[LOADER_STATE_WORDS]: struct loader_state (of the first
 *                        objective's stream when there are several)
 *   /state/loader_objectives  uint64[n * LOADER_STATE_WORDS]: with n > 1 objectives
 *                        (train/objective.h), every stream's state in [train] objectives order
 *   /state/rng           uint64[2]: run seed and step — dropout masks and data order are
 *                        counter-based on (seed, step), so this is the whole RNG state
 *   /state/world_size    int32: ranks that wrote it (informational; resuming may use others)
 *   /config              uint8: config_to_string() text of the run
 *   /vocab_hash          uint64: tokenizer_vocab_hash() of the dictionary it was trained with
 * Rank 0 writes `<path>.tmp`, fsyncs it and its directory, then renames it into place, so a
 * crash leaves either the previous checkpoint or the complete new one. */
#ifndef XLMC_CHECKPOINT_H
#define XLMC_CHECKPOINT_H

#include "core/config.h"
#include "core/model.h"
#include "core/trainer.h"
#include "core/loader_state.h"

#include <stddef.h>
#include <stdint.h>

/* Write a checkpoint (t NULL: weights only, step 0; ls NULL: no loader state). Returns 0, or
 * -1 after printing an error; nothing is left at `path` on failure. */
int ckpt_save(const char *path, const struct model *m, const struct trainer *t,
              const struct loader_state *ls, uint64_t vocab_hash);

/* The same with the loader states of n_ls objective streams (ckpt_save: n_ls = 1). */
int ckpt_save_states(const char *path, const struct model *m, const struct trainer *t,
                     const struct loader_state *ls, int n_ls, uint64_t vocab_hash);

/* Install a callback that every later ckpt_save calls half way, with the weights written
 * and the Adam moments not (hook NULL: none; process-wide). `xlmc train
 * --debug-pause-checkpoint` pauses there so that a test's kill -9 lands inside a write. */
void ckpt_set_midwrite_hook(void (*hook)(void *ctx, long step), void *ctx);

/* The run's config and vocabulary hash as stored (vocab_hash may be NULL). 0 or -1. */
int ckpt_read_config(const char *path, struct xlmc_config *cfg, uint64_t *vocab_hash);

/* Load weights (and with t, the optimizer, scaler and step; with ls, the loader position)
 * into a model created from a compatible config. Verifies every checksum and shape first, so
 * on failure (-1, printed) nothing was changed. Syncs the model's storage weights. */
int ckpt_load(const char *path, struct model *m, struct trainer *t, struct loader_state *ls);

/* ckpt_load with the states of n_ls objective streams into ls[0..n_ls-1]; *n_found (may be
 * NULL) receives how many the checkpoint holds (1 for one written with a single stream);
 * the states it lacks are zeroed (a stream's start). */
int ckpt_load_states(const char *path, struct model *m, struct trainer *t, struct loader_state *ls,
                     int n_ls, int *n_found);

/* Verify the checksum of every dataset. 0, or -1 with the reason in why. */
int ckpt_verify(const char *path, char *why, size_t why_len);

/* The newest valid checkpoint of run_dir/checkpoints into path. Corrupt or partial ones are
 * reported and skipped, never deleted. Returns 0, 1 if there is none, 2 if there are
 * checkpoints but none is valid (the caller must not start afresh silently), -1 on error. */
int ckpt_find_latest(const char *run_dir, char *path, size_t len);

/* Write run_dir/checkpoints/step-NNNNNNN.h5 for t->step (creating the folder), then delete
 * the oldest complete ones beyond keep_last (0: keep all). Rank 0 only. Path written into
 * out (may be NULL). 0 or -1. */
int ckpt_save_run(const char *run_dir, const struct model *m, const struct trainer *t,
                  const struct loader_state *ls, uint64_t vocab_hash, int keep_last, char *out,
                  size_t out_len);

int ckpt_save_run_states(const char *run_dir, const struct model *m, const struct trainer *t,
                         const struct loader_state *ls, int n_ls, uint64_t vocab_hash,
                         int keep_last, char *out, size_t out_len);

#endif
