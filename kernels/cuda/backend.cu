/* backend.cu — ops_cuda(): device selection, memory, storage conversions and the op tables
 * (built from OPS_LIST). */
#include "kernels/cuda/common.cuh"

#include <string.h>

struct cuda_state g_cuda;

void cuda_check(cudaError_t err, const char *file, int line) {
    if (err == cudaSuccess) return;
    fprintf(stderr, "xlmc: CUDA error at %s:%d: %s\n", file, line, cudaGetErrorString(err));
    exit(1);
}

/* cublasGetStatusString exists only from CUDA 11.4.2; CUDA 11 toolkits (sm_70 sites) get
 * the status number, which cublas_api.h names. */
static const char *cublas_status_name(cublasStatus_t st) {
#if defined(CUBLAS_VERSION) && CUBLAS_VERSION >= 120000
    return cublasGetStatusString(st);
#else
    static char name[40]; /* an error path that ends the process: one caller at a time */
    snprintf(name, sizeof name, "cuBLAS status %d", (int)st);
    return name;
#endif
}

void cublas_check(cublasStatus_t st, const char *file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "xlmc: cuBLAS error at %s:%d: %s\n", file, line, cublas_status_name(st));
    exit(1);
}

float *cuda_scratch(size_t n) {
    if (n > g_cuda.scratch_floats) {
        /* the old buffer may still be read by queued work */
        cudaCheck(cudaStreamSynchronize(g_cuda.stream));
        cudaCheck(cudaFree(g_cuda.scratch));
        cudaCheck(cudaMalloc((void **)&g_cuda.scratch, n * sizeof(float)));
        g_cuda.scratch_floats = n;
    }
    return g_cuda.scratch;
}

template <typename S>
__global__ void fill_ones_kernel(S *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(x + i, 1.f);
}

const void *cuda_ones(size_t n, int is_half) {
    int h = is_half != 0;
    if (n > g_cuda.ones_n[h]) {
        cudaCheck(cudaStreamSynchronize(g_cuda.stream)); /* queued work may read the old one */
        cudaCheck(cudaFree(g_cuda.ones[h]));
        cudaCheck(cudaMalloc(&g_cuda.ones[h], n * (h ? sizeof(__half) : sizeof(float))));
        if (h)
            XLMC_LAUNCH(fill_ones_kernel<__half>, cuda_blocks(n, 256), 256, 0,
                        g_cuda.stream)((__half *)g_cuda.ones[h], n);
        else
            XLMC_LAUNCH(fill_ones_kernel<float>, cuda_blocks(n, 256), 256, 0,
                        g_cuda.stream)((float *)g_cuda.ones[h], n);
        cudaLaunchCheck();
        g_cuda.ones_n[h] = n;
    }
    return g_cuda.ones[h];
}

/* A call the graph contract (kernels/ops.h) keeps out of a segment: inside a replay the work
 * before it has not run yet, so it would see stale memory. A bug in the caller: stop. */
static void outside_segment(const char *what) {
    if (!g_cuda_seg_active) return;
    fprintf(stderr, "xlmc: %s inside a CUDA graph segment (between graph_begin and graph_end)\n",
            what);
    exit(1);
}

/* ---- memory ---- */
static void *cuda_alloc(size_t bytes) {
    outside_segment("alloc");
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is reported by returning NULL */
        return NULL;
    }
    cudaCheck(cudaMemsetAsync(p, 0, bytes, g_cuda.stream));
    return p;
}
static void cuda_free(void *p) {
    if (!p) return;
    outside_segment("free");
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
    cudaCheck(cudaFree(p));
}
static void cuda_to_device(void *dst, const void *src, size_t bytes) {
    outside_segment("to_device");
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
}
static void cuda_to_host(void *dst, const void *src, size_t bytes) {
    outside_segment("to_host");
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_cuda.stream));
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
}
static void *cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* reported by returning NULL, like cuda_alloc */
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}
static void cuda_host_free(void *p) {
    if (p) cudaCheck(cudaFreeHost(p));
}
static void cuda_memset0(void *p, size_t bytes) {
    if (!cuda_call_admit("memset", p, bytes)) return;
    cudaCheck(cudaMemsetAsync(p, 0, bytes, g_cuda.stream));
}
static void cuda_synchronize(void) {
    outside_segment("synchronize");
    cudaCheck(cudaStreamSynchronize(g_cuda.stream));
}

/* ---- conversions ---- */
/* PW_VEC elements per thread (common.cuh) */
template <typename S>
__global__ void storage_from_f32_kernel(S *dst, const float *src, size_t n, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float v[PW_VEC];
    ld8(v, src, vec, base, lane, n);
    st8(dst, v, vec, base, lane, n);
}
template <typename S>
__global__ void storage_to_f32_kernel(float *dst, const S *src, size_t n, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float v[PW_VEC];
    ld8(v, src, vec, base, lane, n);
    st8(dst, v, vec, base, lane, n);
}
template <typename S>
__global__ void grad_accumulate_kernel(float *acc, const S *grad, size_t n, float scale, bool vec) {
    int lane;
    size_t base = pw_base(&lane);
    if (base >= n) return;
    float a[PW_VEC], g[PW_VEC];
    ld8(a, acc, vec, base, lane, n);
    ld8(g, grad, vec, base, lane, n);
    for (int j = 0; j < PW_VEC; j++)
        a[j] += scale * g[j];
    st8(acc, a, vec, base, lane, n);
}

template <typename S>
static void cuda_storage_from_f32(void *dst, const float *src, size_t n) {
    if (!n) return;
    XLMC_LAUNCH(storage_from_f32_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), 256, 0,
                g_cuda.stream)((S *)dst, src, n, pw_vec_ok(0, dst, src));
    cudaLaunchCheck();
}
template <typename S>
static void cuda_storage_to_f32(float *dst, const void *src, size_t n) {
    if (!n) return;
    XLMC_LAUNCH(storage_to_f32_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), 256, 0,
                g_cuda.stream)(dst, (const S *)src, n, pw_vec_ok(0, dst, src));
    cudaLaunchCheck();
}
template <typename S>
static void cuda_grad_accumulate(float *acc, const void *grad, size_t n, float scale) {
    if (!n) return;
    XLMC_LAUNCH(grad_accumulate_kernel<S>, cuda_blocks((n + PW_VEC - 1) / PW_VEC, 256), 256, 0,
                g_cuda.stream)(acc, (const S *)grad, n, scale, pw_vec_ok(0, acc, grad));
    cudaLaunchCheck();
}

CUDA_EXPORT_OP(storage_from_f32)
CUDA_EXPORT_OP(storage_to_f32)
CUDA_EXPORT_OP(grad_accumulate)

/* The table of one storage type: the memory functions, then every op of OPS_LIST. */
#define CUDA_SLOT(name, params, args) o->name = half ? cuda_##name##_f16 : cuda_##name##_f32;
#define CUDA_SLOT_R(type, name, params, args) CUDA_SLOT(name, params, args)
static void cuda_fill_table(struct ops *o, enum ops_precision precision) {
    int half = precision == OPS_FP16;
    memset(o, 0, sizeof *o);
    o->name = "cuda";
    o->precision = precision;
    o->storage_bytes = half ? sizeof(__half) : sizeof(float);
    o->host_memory = 0;
    o->db_in_gemm = 1; /* matmul.cu: weight_bias_grad_wide */
    o->alloc = cuda_alloc;
    o->free = cuda_free;
    o->to_device = cuda_to_device;
    o->to_host = cuda_to_host;
    o->memset0 = cuda_memset0;
    o->synchronize = cuda_synchronize;
    o->host_alloc = cuda_host_alloc;
    o->host_free = cuda_host_free;
    cuda_graph_fill(o);
    OPS_LIST(CUDA_SLOT, CUDA_SLOT_R)
}

static struct ops g_tables[2];
static int g_device = -1;

const struct ops *ops_cuda(enum ops_precision precision, int device, char *why, size_t why_len) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        if (why && why_len)
            snprintf(why, why_len, "no usable CUDA GPU: %s",
                     err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports 0 devices");
        cudaGetLastError();
        return NULL;
    }
    /* The local rank picks the GPU modulo the visible count: nodes with one GPU per rank and
     * sites that show each task only its own GPU (--gpus-per-task=1) both work. */
    if (device >= 0) device %= count;
    if (device < 0 || (g_device >= 0 && device != g_device)) {
        if (why && why_len)
            snprintf(why, why_len, "GPU %d is not available (%d visible%s)", device, count,
                     g_device >= 0 ? ", and this process already uses another" : "");
        return NULL;
    }
    if (g_device < 0) {
        if ((err = cudaSetDevice(device)) != cudaSuccess ||
            (err = cudaStreamCreateWithFlags(&g_cuda.stream, cudaStreamNonBlocking)) !=
                cudaSuccess) {
            if (why && why_len)
                snprintf(why, why_len, "cannot open GPU %d: %s", device, cudaGetErrorString(err));
            cudaGetLastError();
            return NULL;
        }
        cublasStatus_t st = cublasCreate(&g_cuda.blas);
        if (st != CUBLAS_STATUS_SUCCESS) {
            if (why && why_len)
                snprintf(why, why_len, "cannot start cuBLAS on GPU %d: %s", device,
                         cublas_status_name(st));
            return NULL;
        }
        cublasCheck(cublasSetStream(g_cuda.blas, g_cuda.stream));
        cublasCheck(cublasLtCreate(&g_cuda.lt)); /* its calls take the stream */
        cudaCheck(cudaMalloc((void **)&g_cuda.partials, CUDA_NORM_BLOCKS * sizeof(double)));
        cudaCheck(cudaMalloc((void **)&g_cuda.flag, sizeof(int)));
        cudaCheck(cudaMalloc((void **)&g_cuda.vars, sizeof *g_cuda.vars));
        /* A workspace of our own: cuBLAS then never allocates inside a graph capture. 32 MiB
         * is cuBLAS's recommendation for Hopper (4 MiB for earlier GPUs). */
        cudaCheck(cudaMalloc(&g_cuda.blas_workspace, CUDA_BLAS_WORKSPACE));
        cublasCheck(cublasSetWorkspace(g_cuda.blas, g_cuda.blas_workspace, CUDA_BLAS_WORKSPACE));
        cuda_fill_table(&g_tables[OPS_FP32], OPS_FP32);
        cuda_fill_table(&g_tables[OPS_FP16], OPS_FP16);
        g_device = device;
    }
    return &g_tables[precision == OPS_FP16 ? OPS_FP16 : OPS_FP32];
}
