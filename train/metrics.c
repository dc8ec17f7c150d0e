/* metrics.c — FLOPs, peaks and JSON lines (see metrics.h). */
#include "train/metrics.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#ifdef XLMC_HAVE_CUDA
#include <cuda_runtime.h>
#endif

double metrics_step_flops(const struct model *m, double positions, double classified) {
    const struct model_config *mc = &m->cfg.model;
    double out = (double)mc->vocab_size * (mc->dim + 1.0); /* (V,C) weights + (V) bias */
    double body = (double)m->num_weights - out;
    double attn = 12.0 * mc->n_layers * (double)mc->dim * (double)m->cfg.train.seq_len;
    return positions * (6.0 * body + attn) + classified * 6.0 * out;
}

double metrics_flops_per_token(const struct model *m) {
    return metrics_step_flops(m, 1.0, 1.0);
}

static double cpu_gemm_peak(const struct ops *ops) {
    enum { N = 512 };
    size_t bytes = (size_t)N * N * ops->storage_bytes;
    void *a = ops->alloc(bytes), *w = ops->alloc(bytes), *out = ops->alloc(bytes);
    double best = 0;
    if (a && w && out) {
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_seconds();
            ops->matmul_forward(out, a, w, NULL, N, N, N);
            ops->synchronize();
            double dt = now_seconds() - t0;
            double rate = 2.0 * N * N * (double)N / (dt > 1e-9 ? dt : 1e-9);
            if (rate > best) best = rate;
        }
    }
    if (a) ops->free(a);
    if (w) ops->free(w);
    if (out) ops->free(out);
    return best;
}

#ifdef XLMC_HAVE_CUDA
/* Dense peaks in TFLOP/s: fp16 tensor cores with fp32 accumulation, and plain fp32. */
static const struct {
    const char *name;
    double fp16, fp32;
} GPU_PEAKS[] = {
    {"H200", 989, 67},       {"H100 PCIe", 756, 51}, {"H100", 989, 67},   {"A100", 312, 19.5},
    {"A10", 125, 31.2},      {"L40S", 362, 91.6},    {"L4", 121, 30.3},   {"RTX 3090", 71, 35.6},
    {"RTX 4090", 165, 82.6}, {"T4", 65, 8.1},        {"V100", 125, 15.7},
};

static double gpu_peak(const struct ops *ops, int device, const char **source) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return 0;
    for (size_t i = 0; i < XLMC_ARRAY_LEN(GPU_PEAKS); i++)
        if (strstr(prop.name, GPU_PEAKS[i].name)) {
            *source = "datasheet peak of the GPU";
            return (ops->precision == OPS_FP16 ? GPU_PEAKS[i].fp16 : GPU_PEAKS[i].fp32) * 1e12;
        }
    return 0;
}
#endif

double metrics_peak_flops(const struct ops *ops, int local_rank, const char **source) {
    const char *env = getenv("XLMC_PEAK_TFLOPS");
    if (env && atof(env) > 0) {
        *source = "XLMC_PEAK_TFLOPS";
        return atof(env) * 1e12;
    }
#ifdef XLMC_HAVE_CUDA
    if (!strcmp(ops->name, "cuda")) {
        double p = gpu_peak(ops, local_rank, source);
        if (p > 0) return p;
    }
#endif
    *source = "measured 512^3 GEMM rate of the backend";
    return cpu_gemm_peak(ops);
}

int metrics_append(FILE *f, json_t *obj) {
    char *line = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(obj);
    if (!line) return -1;
    int rc = fprintf(f, "%s\n", line) < 0 || fflush(f) ? -1 : 0;
    free(line);
    return rc;
}
