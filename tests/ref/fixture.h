/* fixture.h — read the reference fixtures that make_model_reference.py writes (the .h5
 * files in model/) into xlmc structures, for the tests. Every function prints what failed
 * (file, dataset) and returns -1 or NULL on error. */
#ifndef XLMC_TESTS_FIXTURE_H
#define XLMC_TESTS_FIXTURE_H

#include "core/config.h"
#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

/* The batch of batch.h5 and the struct batch that views it (row0 = 0). */
struct fixture_batch {
    struct batch batch;
    int32_t *ids, *langs, *mask, *labels, *lengths;
};

/* The `config_ini` attribute of weights.h5, parsed. */
int fixture_load_config(const char *weights_h5, struct xlmc_config *cfg);
/* Every tensor of m from the datasets `group`/<HF name> of path ("" or "/" for the root);
 * then model_sync_weights(). A missing dataset or a wrong element count is an error. */
int fixture_load_params(struct model *m, const char *path, const char *group);
int fixture_load_batch(const char *batch_h5, struct fixture_batch *fb);
void fixture_free_batch(struct fixture_batch *fb);
/* A float32 dataset as a malloc'd array; *n = its element count. */
float *fixture_read_f32(const char *path, const char *name, size_t *n);

#endif
