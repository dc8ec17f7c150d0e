/* session.h — setup shared by the train, eval and generate commands: the compute backend of
 * a device name and a model from a checkpoint (session.c), the vocabulary a data directory
 * was prepared with (data_vocab.c); batches from loader windows are train/batch.h. */
#ifndef XLMC_SESSION_H
#define XLMC_SESSION_H

#include "core/comm.h"
#include "core/config.h"
#include "core/model.h"
#include "data/loader.h"
#include "train/batch.h"

#include <stdint.h>

/* Exit status of `xlmc train` after SIGUSR1/SIGTERM: the checkpoint is written, requeue the
 * job to continue (EX_TEMPFAIL of sysexits.h). */
#define XLMC_EXIT_REQUEUE 75

/* The backend for --device cpu|cuda (local_rank picks the GPU) in the config's precision.
 * NULL after printing an error naming the option. */
const struct ops *session_ops(const char *device, enum precision_kind precision, int local_rank);
/* The node-local rank the launcher gives this process (SLURM_LOCALID, else
 * OMPI_COMM_WORLD_LOCAL_RANK), or -1 when it gives none. Readable before MPI_Init, so the
 * GPU can be chosen before a CUDA-aware MPI sets up its transport; session_ops prefers it
 * to the local_rank it is passed, so both choices name the same GPU. */
int session_launcher_local_rank(void);

/* Size and XXH64 hash of the dictionary the shards of `dir` were prepared with: from
 * dir/vocab (+ dir/codes) when present, else from the attributes of a shard. 0 or -1. */
int session_data_vocab(const char *dir, int *vocab_size, uint64_t *vocab_hash);

/* Create the model of the checkpoint's config on ops and load its weights (no optimizer).
 * vocab_hash (may be NULL) receives the checkpoint's dictionary hash. 0 or -1. */
int session_model_from_ckpt(const char *ckpt, const struct ops *ops, struct model *m,
                            uint64_t *vocab_hash);

/* mkdir -p of one level; 0 or -1 (printed). */
int session_mkdir(const char *path);

#endif
