/* session.c — setup shared by train, eval and generate (see session.h): the backend of a
 * device name, a model from a checkpoint, a run directory. */
#include "train/session.h"
#include "core/checkpoint.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int session_launcher_local_rank(void) {
    const char *names[] = {"SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(names[i]);
        char *end = NULL;
        long r = v ? strtol(v, &end, 10) : -1;
        if (v && end != v && *end == '\0' && r >= 0 && r < 1 << 20) return (int)r;
    }
    return -1;
}

const struct ops *session_ops(const char *device, enum precision_kind precision, int local_rank) {
    enum ops_precision p = precision == PRECISION_FP16 ? OPS_FP16 : OPS_FP32;
    if (!strcmp(device, "cpu")) return ops_cpu(p);
    if (!strcmp(device, "cuda")) {
        char why[256] = "";
        int launcher = session_launcher_local_rank();
        const struct ops *o = ops_cuda(p, launcher >= 0 ? launcher : local_rank, why, sizeof why);
        if (!o) xlmc_error("--device cuda: %s (use --device cpu)", why);
        return o;
    }
    xlmc_error("--device %s: unknown device (cpu or cuda)", device);
    return NULL;
}

int session_model_from_ckpt(const char *ckpt, const struct ops *ops, struct model *m,
                            uint64_t *vocab_hash) {
    struct xlmc_config cfg;
    if (ckpt_read_config(ckpt, &cfg, vocab_hash)) return -1;
    if (model_create(m, &cfg, ops)) return -1;
    if (ckpt_load(ckpt, m, NULL, NULL)) {
        model_destroy(m);
        return -1;
    }
    return 0;
}

int session_mkdir(const char *path) {
    if (mkdir(path, 0777) && errno != EEXIST)
        return xlmc_error("cannot create directory %s: %s", path, strerror(errno));
    return 0;
}
