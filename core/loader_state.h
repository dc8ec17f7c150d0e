/* loader_state.h — the data loader's position as a checkpoint stores it. data/loader.h fills
 * and restores it (loader_get_state / loader_set_state); core/checkpoint.c writes it as
 * /state/loader without knowing the loader, so core/ does not depend on data/. */
#ifndef XLMC_LOADER_STATE_H
#define XLMC_LOADER_STATE_H

#include "core/config.h"

#include <stdint.h>

/* The loader's position: small, identical on every rank, stored in checkpoints. */
#define LOADER_STATE_WORDS (2 + 2 * XLMC_MAX_LANGS)
struct loader_state {
    uint64_t step;                   /* optimizer steps served */
    uint64_t epoch[XLMC_MAX_LANGS];  /* per language */
    uint64_t cursor[XLMC_MAX_LANGS]; /* windows consumed in the current epoch */
    uint64_t reserved;
};

#endif
