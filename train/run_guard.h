/* run_guard.h — what keeps a run from being lost or silently changed: the run-directory lock,
 * the resume policy (settings that change the trajectory need --accept-changes) and the
 * check that the model's language ids are the shards' ones. */
#ifndef XLMC_RUN_GUARD_H
#define XLMC_RUN_GUARD_H

#include "core/config.h"

#include <jansson.h>

/* Takes R/lock (flock, exclusive, held until the process ends) and writes the holder (host,
 * PID, Slurm job id, start time) into it; creates R when missing (*created = 1). Refuses with
 * the current holder's line when another process holds it. On a file system without flock
 * it warns and goes on unlocked. Returns the descriptor to keep open, or -1 (printed). */
int run_lock_acquire(const char *run_dir, int *created);
/* Releases the lock; remove = 1 also deletes R/lock and R itself when it was created by
 * run_lock_acquire and is empty (a refused run leaves nothing behind). */
void run_lock_release(int fd, const char *run_dir, int created, int remove);

/* Compares the resumed checkpoint's config with the --config given on resume. Settings that
 * change the trajectory (seed, seq_len, batch_tokens, micro_batch, precision, dropout, lr,
 * schedule, max_steps, ...) are refused unless accept is set; bookkeeping settings (log,
 * eval and checkpoint intervals, keep_last, watchdog) always pass. Every difference is
 * printed (rank 0 only, print = 1) and appended to *changes as {key, from, to, kind}.
 * Returns 0 or -1 (printed). */
int resume_policy(const struct xlmc_config *ck, const struct xlmc_config *user, int accept,
                  int print, json_t *changes);

/* The shards number languages by a fixed table (data/shard.h: de = 0, en = 1): the model's
 * langs must list them in that order, or every batch would train under another language's
 * embedding. `what` names the config or checkpoint in the message. 0 or -1 (printed). */
int check_lang_ids(const struct model_config *m, const char *what);

#endif
