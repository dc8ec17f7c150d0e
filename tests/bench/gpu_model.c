/* gpu_model.c — a roofline model of one xlmc training step on V100 and H100, priced from the
 * counts cudasim takes of the real step (gpu_model_sim.c). A model, not a measurement.
 *
 * usage: gpu_model CONFIG [SAMPLE_BLOCKS]
 * The step is simulated at micro_batch 1 and 2 (rows of the config's seq_len). The two logs
 * hold the same calls in the same order; each call's counts (bytes, sectors, threads, the
 * per-thread chain, GEMM shapes, copy sizes) are extrapolated linearly to the config's
 * micro_batch, and the call is priced there: what grows with the batch grows, what does not
 * (parameter-sized kernels, launches per layer) stays. (Pricing at 1 and 2 rows and
 * extrapolating the times would carry the small runs' regime — a GEMM bound by its weights'
 * bytes, a kernel of one wave — to 32 rows, where neither holds.)
 *
 * Cost rules (the constants and their sources are in GPUS below):
 *   kernel: max(DRAM bytes / DRAM bandwidth, L2 sector bytes / L2 bandwidth,
 *               waves x longest per-thread access chain x memory latency,
 *               FLOPs / (SIMT_EFF x fp32 peak) + tensor FLOPs / (TC_KERNEL_EFF x tensor
 *               peak)) + launch overhead;
 *           the FLOPs are those the kernel reports (XLMC_COUNT_FLOPS, kernels/cuda/common.cuh:
 *           an FMA is 2, an exp/erf/log 1, a floor: they take several instructions or the
 *           SFU), so far the attention kernels' only; the tensor FLOPs are those of its
 *           wmma::mma_sync calls (cudasim counts 2 x 16^3 per warp-wide call); the two are
 *           added (no overlap of the SIMT and the tensor-core work assumed); a kernel without
 *           annotations prices no arithmetic
 *   GEMM:   max(2mnk·batch / (efficiency x peak), operand bytes / DRAM bandwidth) + overhead;
 *           peak is the tensor-core peak when every leading dimension and pointer is 16-byte
 *           aligned, else the non-tensor-core fp16 peak (cuBLAS before 11.0 needed multiples
 *           of 8 halves to use tensor cores; newer versions degrade less: pessimistic here)
 *   copy:   bytes / PCIe rate (pinned or pageable)
 *   every call above pays the launch overhead, or, when it runs as a node of a CUDA Graph
 *           (cudasim_count.h: in_graph), the smaller per-node overhead; a graph launch pays the
 *           launch overhead once
 *   all-reduce: ring, 2(n-1)/n · bytes / bus bandwidth + latency, on the communication stream
 *           from the point the trainer starts it (overlap with the rest of the backward); one
 *           latency per bucket, a bucket being one layer's tensors in one NCCL group.
 *   sharded optimizer (train.shard_optimizer): each bucket's slices go to their owners by
 *           ncclReduce, bytes / bus bandwidth + latency (nccl-tests' bus bandwidth is
 *           normalized so that one figure serves every collective: all-reduce 2(n-1)/n x the
 *           algorithm bandwidth, reduce and broadcast 1 x; NVIDIA/nccl-tests
 *           doc/PERFORMANCE.md); the update's kernels (Adam, the norm) run on 1/n of the
 *           arena, their DRAM time divided by n (the simulated step runs them on the whole
 *           arena); then the owners broadcast the updated fp16 weights bucket by bucket in
 *           forward's order (the non-layer tensors, then layers 0 ... L-1; a bucket's fp16 bytes
 *           / bus bandwidth + latency each, one after the other) while the next forward runs:
 *           the forward waits for the first two before it starts and for layer l's before
 *           layer l. With one micro-batch per GPU the fp16 gradients go to their owners
 *           instead of an fp32 reduce (ncclSend/ncclRecv, each GPU sending (n-1)/n of its
 *           fp16 bytes: priced at the all-reduce bus bandwidth with nccl-tests' all-to-all
 *           factor (n-1)/n, an assumption: an all-to-all may reach less over IB), and the
 *           backward's accumulator pass is replaced by the owner's fp32 sum of the n fp16 rows
 *           of its shard after them, at the DRAM rate. A layer's forward is priced at a third of
 * the micro-batch's time / L (its share of the arithmetic: 2 of the 6 FLOPs per parameter and
 * token): an assumption, the simulated step does not time the layers apart. */
#include "tests/bench/gpu_model.h"

#include "core/config.h"
#include "core/trainer.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpu {
    const char *name;
    double tc_peak;        /* dense fp16 tensor-core FLOP/s */
    double fp16_peak;      /* fp16 FLOP/s without tensor cores */
    double fp32_peak;      /* fp32 FLOP/s */
    double dram_bw, l2_bw; /* bytes/s */
    int sms;
    double latency_s;                  /* global memory load latency */
    double launch_s;                   /* per kernel or cuBLAS call, or graph launch */
    double node_s;                     /* per call replayed as a node of a CUDA Graph */
    double gemm_eff;                   /* achieved fraction of peak for large GEMMs */
    double pcie_pinned, pcie_pageable; /* bytes/s, host<->device */
    double busbw8, busbw64;            /* all-reduce bus bandwidth, bytes/s */
    double coll_latency_s;             /* one small collective */
};

/* Sources:
 *  [V1] NVIDIA Tesla V100 datasheet (SXM2): 125 TF tensor, 31.4 TF fp16, 15.7 TF fp32, 900 GB/s.
 *  [H1] NVIDIA H100 datasheet / H100 whitepaper (SXM5): 989 TF dense fp16 tensor, 134 TF fp16
 *       (non-tensor), 67 TF fp32, 3.35 TB/s.
 *  [L2] Jia et al., "Dissecting the NVIDIA Volta GPU Architecture via Microbenchmarking"
 *       (arXiv:1804.06826): V100 L2 ~2.1 TB/s, global latency ~400 cycles (~0.28 us);
 *       Luo et al., "Benchmarking and Dissecting the Nvidia Hopper GPU Architecture"
 *       (arXiv:2402.13499): H100 global latency of the same order; H100 L2 ~5.5 TB/s
 *       (approximate: read off their figures).
 *  [LA] NVIDIA developer blog, "Getting Started with CUDA Graphs" (2019): a few microseconds
 *       per kernel launch; 3 us used.
 *  [LG] The same blog (A. Gray, 2019; V100, CUDA 10.1): kernels of about 2.9 us each took
 *       3.8 us apiece issued back to back on a stream and 3.4 us apiece replayed as the nodes of
 *       a CUDA Graph, i.e. about 0.5 us per node beyond the kernel's own run time; 0.5 us per
 *       node used for both GPUs (an assumption: newer drivers and H100 are not slower), and
 *       the graph launch itself at the launch overhead above.
 *  [GE] NVIDIA Deep Learning Performance Guide, "Matrix Multiplication Background" and GTC 2019
 *       S9926 "Tensor Core Performance: The Ultimate Guide": tensor cores need dimensions
 *       that are multiples of 8 fp16 elements (16 bytes); 0.7 of peak for large aligned GEMMs
 *       is an assumption within the range those guides show.
 *  [PC] PCIe 3.0 x16 (DGX-1 V100) 15.75 GB/s, PCIe 5.0 x16 (H100 SXM) 63 GB/s raw; pinned at
 *       ~80 % of raw (CUDA samples bandwidthTest typical), pageable at half of pinned (NVIDIA
 *       blog "How to Optimize Data Transfers in CUDA C/C++": pageable copies go through a
 *       pinned staging buffer): assumptions.
 *  [NC] nccl-tests all_reduce_perf bus bandwidth: DGX-1 V100, 8 GPUs NVLink ~130 GB/s
 *       (assumed from NVIDIA's NCCL 2 DGX-1 figures); 64 V100 over 4xEDR per node ~40 GB/s
 *       (NCCL GTC 2017 S7155, quoted in NVIDIA/nccl-tests issue #29); 8xH100 NVLink 460 GB/s
 *       (nccl-tests reference table, docs.alayanew.com 2026 "NCCL-tests in practice"); H100
 *       NVLink + NDR IB multi-node 400 GB/s (saturncloud.io "Validating Multi-Node GPU
 *       Clusters with NCCL Tests"); small-message latency ~20/40 us (nccl-tests tables). */
static const struct gpu GPUS[2] = {
    {"V100-SXM2", 125e12, 31.4e12, 15.7e12, 900e9, 2.1e12, 80, 0.28e-6, 3e-6, 0.5e-6, 0.7, 12.6e9,
     6.3e9, 130e9, 40e9, 40e-6},
    {"H100-SXM", 989e12, 134e12, 67e12, 3.35e12, 5.5e12, 132, 0.28e-6, 3e-6, 0.5e-6, 0.7, 50e9,
     25e9, 460e9, 400e9, 20e-6},
};

/* Achieved fraction of the fp32 peak for the FLOPs of our own kernels. 1.0: their arithmetic
 * time is a lower bound (scalar FMAs from shared memory reach less; no measurement here). */
#define SIMT_EFF 1.0
/* Achieved fraction of the dense fp16 tensor-core peak for our own kernels' mma_sync work (the
 * fused attention): an assumption, below what FlashAttention-2 reaches: 50-73 % of the A100
 * peak (Dao, "FlashAttention-2", arXiv:2307.08691, abstract) and 35 % of the H100 peak (Shah et
 * al., "FlashAttention-3", arXiv:2407.08608, abstract), because ours stage every tile product
 * through shared memory with no asynchronous copies. */
#define TC_KERNEL_EFF 0.25

/* ---- one priced row: a kernel name or a GEMM class, in one phase ---- */
enum { PH_PRE, PH_MICRO, PH_APPLY, PH_COUNT };
struct row {
    char label[80];
    int gemm;
    double launches, flops, dram, sectors, requests, t;
    double graphs;   /* graph launches (a launch is one of launches) */
    double in_graph; /* of launches: calls replayed as graph nodes */
    double overhead; /* launch and node overheads in t */
};
struct table {
    struct row *r;
    int n, cap;
};

static struct row *table_row(struct table *tb, const char *label, int gemm) {
    for (int i = 0; i < tb->n; i++)
        if (!strcmp(tb->r[i].label, label)) return &tb->r[i];
    if (tb->n == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        tb->r = xrealloc(tb->r, (size_t)tb->cap * sizeof *tb->r);
    }
    struct row *r = &tb->r[tb->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    r->gemm = gemm;
    return r;
}

/* ovh: the launch or graph-node overhead of the call */
static double gemm_time(const struct gpu *g, const struct cudasim_record *e, double ovh,
                        double *flops) {
    double f = 2.0 * e->m * e->n * (double)e->k * e->batch;
    double peak = e->atype == 0 ? g->fp32_peak : e->align_bytes >= 16 ? g->tc_peak : g->fp16_peak;
    double bytes =
        ((double)e->m * e->k + (double)e->k * e->n + 2.0 * e->m * e->n) * e->elem_bytes * e->batch;
    *flops = f;
    return fmax(f / (g->gemm_eff * peak), bytes / g->dram_bw) + ovh;
}

static double kernel_time(const struct gpu *g, const struct cudasim_record *e, double ovh) {
    double waves = ceil(e->threads / (g->sms * 2048.0));
    double sectors = e->load_sectors + e->store_sectors;
    double t = fmax(e->dram_bytes / g->dram_bw, 32.0 * sectors / g->l2_bw);
    t = fmax(t, e->flops / (SIMT_EFF * g->fp32_peak) + e->tc_flops / (TC_KERNEL_EFF * g->tc_peak));
    return fmax(t, waves * e->max_thread_accesses * g->latency_s) + ovh;
}

/* x = a + w (b - a), rounded for the integer shapes */
static double lerp(double a, double b, double w) {
    return a + w * (b - a);
}
static int lerp_int(int a, int b, double w) {
    return (int)lround(lerp(a, b, w));
}

/* The run at the target batch: each call of run a (B_a rows) paired with the same call of run b
 * (B_b rows), its counts extrapolated by w = (B_target - B_a) / (B_b - B_a). Returns -1 when the
 * two logs differ in their calls. */
static int extrapolate_run(struct sim_run *x, const struct sim_run *a, const struct sim_run *b,
                           double w) {
    if (a->n != b->n) return -1;
    *x = *a;
    x->rec = xmalloc((a->n + 1) * sizeof *x->rec);
    for (size_t i = 0; i < a->n; i++) {
        const struct cudasim_record *p = &a->rec[i], *q = &b->rec[i];
        if (p->kind != q->kind || strcmp(p->name, q->name) || p->in_graph != q->in_graph ||
            p->nodes != q->nodes) {
            free(x->rec);
            return -1;
        }
        struct cudasim_record *e = &x->rec[i];
        *e = *p;
        double *fa[] = {&e->load_bytes,        &e->store_bytes,
                        &e->unique_load_bytes, &e->unique_store_bytes,
                        &e->dram_bytes,        &e->load_requests,
                        &e->load_sectors,      &e->store_requests,
                        &e->store_sectors,     &e->max_thread_accesses,
                        &e->threads,           &e->flops,
                        &e->tc_flops};
        const double *fb[] = {&q->load_bytes,        &q->store_bytes,
                              &q->unique_load_bytes, &q->unique_store_bytes,
                              &q->dram_bytes,        &q->load_requests,
                              &q->load_sectors,      &q->store_requests,
                              &q->store_sectors,     &q->max_thread_accesses,
                              &q->threads,           &q->flops,
                              &q->tc_flops};
        for (size_t f = 0; f < sizeof fa / sizeof fa[0]; f++)
            *fa[f] = fmax(0.0, lerp(*fa[f], *fb[f], w));
        e->m = lerp_int(p->m, q->m, w);
        e->n = lerp_int(p->n, q->n, w);
        e->k = lerp_int(p->k, q->k, w);
        e->batch = lerp_int(p->batch, q->batch, w);
        e->align_bytes = p->align_bytes < q->align_bytes ? p->align_bytes : q->align_bytes;
        e->bytes = (size_t)fmax(0.0, lerp((double)p->bytes, (double)q->bytes, w));
    }
    x->wall_s = 0;
    return 0;
}

/* Prices every record of a run; fills per-phase tables; micro-phase compute time at each
 * started all-reduce (ar_t, n_ar of them) and at the end of the phase (*t_end). */
static void price_run(const struct gpu *g, const struct sim_run *run, struct table tb[PH_COUNT],
                      double *ar_t, double *t_end, double *h2d, double *d2h, int *hosts) {
    int ph = PH_PRE;
    size_t ar = 0;
    double t_micro = 0;
    *h2d = *d2h = 0;
    *hosts = 0;
    for (size_t i = 0; i < run->n; i++) {
        const struct cudasim_record *e = &run->rec[i];
        if (e->kind == CUDASIM_EV_MARK) {
            if (!strcmp(e->name, "micro"))
                ph = PH_MICRO;
            else if (!strcmp(e->name, "ar_wait"))
                ph = PH_APPLY, *t_end = t_micro;
            else if (!strcmp(e->name, "ar_start") && ar < run->n_ar)
                ar_t[ar++] = t_micro;
            else if (!strcmp(e->name, "host"))
                (*hosts)++;
            continue;
        }
        char label[80];
        double t = 0, flops = 0;
        double ovh = e->in_graph ? g->node_s : g->launch_s;
        int gemm = 0;
        if (e->kind == CUDASIM_EV_KERNEL) {
            t = kernel_time(g, e, ovh);
            flops = e->flops + e->tc_flops;
            snprintf(label, sizeof label, "%s", e->name);
        } else if (e->kind == CUDASIM_EV_GEMM) {
            t = gemm_time(g, e, ovh, &flops);
            gemm = 1;
            snprintf(label, sizeof label, "cuBLAS %s, ld %dB-aligned%s", e->name, e->align_bytes,
                     e->align_bytes >= 16 ? "" : " (no tensor-core kernel)");
        } else if (e->kind == CUDASIM_EV_COPY) {
            double rate = e->pinned ? g->pcie_pinned : g->pcie_pageable;
            if (e->dir == CUDASIM_H2D || e->dir == CUDASIM_D2H)
                t = (double)e->bytes / rate;
            else
                t = 2.0 * (double)e->bytes / g->dram_bw;
            t += ovh;
            if (e->dir == CUDASIM_H2D) *h2d += (double)e->bytes;
            if (e->dir == CUDASIM_D2H) *d2h += (double)e->bytes;
            snprintf(label, sizeof label, "memcpy %s %s",
                     e->dir == CUDASIM_H2D   ? "H2D"
                     : e->dir == CUDASIM_D2H ? "D2H"
                                             : "D2D",
                     e->pinned               ? "pinned"
                     : e->dir == CUDASIM_D2D ? ""
                                             : "pageable");
        } else if (e->kind == CUDASIM_EV_MEMSET) {
            t = (double)e->bytes / g->dram_bw + ovh;
            snprintf(label, sizeof label, "memset");
        } else if (e->kind == CUDASIM_EV_GRAPH) {
            t = ovh; /* its nodes are priced as they come */
            snprintf(label, sizeof label, "CUDA Graph launch (nodes in their own rows)");
        } else {
            continue; /* NCCL calls: priced by the all-reduce model */
        }
        struct row *r = table_row(&tb[ph], label, gemm);
        r->launches += 1;
        r->graphs += e->kind == CUDASIM_EV_GRAPH;
        r->in_graph += e->in_graph;
        r->overhead += ovh;
        r->flops += flops;
        r->dram += e->kind == CUDASIM_EV_KERNEL ? e->dram_bytes : 0;
        r->sectors += e->load_sectors + e->store_sectors;
        r->requests += e->load_requests + e->store_requests;
        r->t += t;
        if (ph == PH_MICRO) t_micro += t;
    }
}

/* out += src, row by row (rows matched by label) */
static void table_add(struct table *out, const struct table *src) {
    for (int i = 0; i < src->n; i++) {
        const struct row *s = &src->r[i];
        struct row *o = table_row(out, s->label, s->gemm);
        o->launches += s->launches;
        o->graphs += s->graphs;
        o->in_graph += s->in_graph;
        o->overhead += s->overhead;
        o->flops += s->flops;
        o->dram += s->dram;
        o->sectors += s->sectors;
        o->requests += s->requests;
        o->t += s->t;
    }
}

static int by_time(const void *x, const void *y) {
    double a = ((const struct row *)x)->t, b = ((const struct row *)y)->t;
    return (a < b) - (a > b);
}

/* all-reduces (or the sharded optimizer's transfers to the owners) of bytes[i] fp32 bytes
 * started at ar_t[i] (compute clock of the last micro-batch), run in order on their own
 * stream, each taking factor x bytes / busbw + latency; returns how long after t_end the last
 * one finishes, and in *late_bytes the gradient bytes still to be reduced at t_end (each bucket's
 * bytes pro rata of its time after t_end) */
static double exposed_comm(const double *ar_t, const size_t *bytes, size_t n, double t_end,
                           double factor, double busbw, double latency, double *late_bytes) {
    double c = 0;
    *late_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        double start = fmax(ar_t[i], c);
        double d = factor * (double)bytes[i] / busbw + latency;
        c = start + d;
        if (c > t_end) *late_bytes += (double)bytes[i] * fmin(1.0, (c - t_end) / d);
    }
    return fmax(0.0, c - t_end);
}

/* The sharded optimizer's weight broadcast during the next forward: buckets of fp16 bytes
 * half of the fp32 gradient buckets ar_bytes (backward's order: layers L-1 ... 0, then the
 * non-layer tensors), sent non-layer first, then layer 0 ... L-1, back to back; the forward
 * waits for the non-layer and layer 0 buckets, then for layer l's before layer l, each layer
 * taking layer_t. Returns the time the forward spends waiting. */
static double exposed_gather(const size_t *ar_bytes, int L, double busbw, double latency,
                             double layer_t) {
    double comm = (double)ar_bytes[L] / 2.0 / busbw + latency, fwd = 0, waited = 0;
    for (int l = 0; l < L; l++) {
        comm += (double)ar_bytes[L - 1 - l] / 2.0 / busbw + latency;
        if (comm > fwd) waited += comm - fwd, fwd = comm;
        fwd += layer_t;
    }
    return waited;
}

/* The output bias's gradient as the CUDA backend computes it at the target rows N. Past
 * N x Vp > 2 N Cp + 4 Vp Cp (wide_db in kernels/cuda/matmul.cu, Cp = C + 1 rounded up to 8;
 * at the ende size past 4264 rows) it rides in the vocabulary's weight-gradient GEMM as one
 * more input column of ones; the 256 and 512 rows simulated take the cuBLAS GEMV instead. That
 * path is priced here from its shapes and bytes, per micro-batch: the GEMM grows by Cp / C, the
 * GEMV goes (*d_gemm), and two passes come (*d_kern): X' = [x | 1 | 0 ...] (x read, X' written)
 * and the finish (dW' fp32 read, dw and db read and written). 0 when the rule does not hold or
 * the calls are not found. */
static int wide_bias_shift(const struct gpu *g, const struct sim_run *x, int N, int C, int Vp,
                           double *d_gemm, double *d_kern) {
    *d_gemm = *d_kern = 0;
    double cp = (C + 1 + 7) / 8 * 8;
    if ((double)N * Vp <= 2.0 * N * cp + 4.0 * Vp * cp) return 0;
    double gemv_t = -1, dw_t = -1, es = 0, ovh = g->node_s, f;
    for (size_t i = 0; i < x->n; i++) {
        const struct cudasim_record *e = &x->rec[i];
        if (e->kind != CUDASIM_EV_GEMM || e->batch != 1 || e->k != N) continue;
        double o = e->in_graph ? g->node_s : g->launch_s;
        if ((e->m == Vp && e->n == 1) || (e->m == 1 && e->n == Vp)) gemv_t = gemm_time(g, e, o, &f);
        if ((e->m == C && e->n == Vp) || (e->m == Vp && e->n == C)) {
            dw_t = gemm_time(g, e, o, &f) - o;
            es = e->elem_bytes;
        }
    }
    if (gemv_t < 0 || dw_t < 0) return 0;
    *d_gemm = dw_t * (cp / C - 1.0) - gemv_t;
    double widen = (double)N * C * es + (double)N * cp * es;
    double finish = (double)Vp * cp * 4 + 2.0 * Vp * C * es + 2.0 * Vp * es;
    *d_kern = (widen + finish) / g->dram_bw + 2 * ovh;
    return 1;
}

/* The accumulator's passes of a step of n micro-batches with k gradient buffers: f passes
 * (each priced as the simulated one, pass_t, which initializes the accumulator from one
 * buffer), the accumulator read by all but the first, and n - f further buffers read. */
static double acc_step_t(int n, int k, double pass_t, double acc_read_t, double src_read_t) {
    int f = (n + k - 1) / k;
    return f * pass_t + (f - 1) * acc_read_t + (n - f) * src_read_t;
}

/* the GPU backend as trainer_grad_buffers sees it: device memory */
static const struct ops gpu_ops = {.host_memory = 0};

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s CONFIG [SAMPLE_BLOCKS]\n", argv[0]);
        return 2;
    }
    /* 16: a whole row of the attention kernels' query (key) tiles at T 256, whose causal work
     * grows along the row; fewer blocks bias their counts (see tests/bench/CMakeLists.txt) */
    int sample = argc > 2 ? atoi(argv[2]) : 16;
    struct xlmc_config cfg;
    if (config_load(argv[1], &cfg)) return 1;
    const int BA = 1, BB = 2, Bt = cfg.train.micro_batch, T = cfg.train.seq_len;
    const double w = (double)(Bt - BA) / (BB - BA);
    double t0 = now_seconds();
    struct sim_run runs[2];
    const int Bs[2] = {BA, BB};
    if (gpu_model_simulate(argv[1], Bs, 2, 8, sample, runs)) return 1;
    struct sim_run ra = runs[0], rb = runs[1], rx;
    if (ra.n_ar != rb.n_ar || extrapolate_run(&rx, &ra, &rb, w)) {
        fprintf(stderr, "gpu_model: the runs at %d and %d rows made different calls\n", BA, BB);
        return 1;
    }
    const struct model_config *mc = &cfg.model;
    double C = mc->dim, L = mc->n_layers, F = mc->ffn_dim, V = mc->vocab_size;
    /* model FLOPs per token: 6 x matmul parameters + 12 L T C for attention (PaLM's MFU) */
    double flops_tok = 6.0 * (L * (4 * C * C + 2 * C * F) + V * C) + 12.0 * L * T * C;
    const int global_rows = (int)(cfg.train.batch_tokens / T);

    printf("MODEL, NOT A MEASUREMENT: GPU time of one xlmc training step priced from cudasim "
           "counts with a roofline model (tests/bench/gpu_model.c)\n");
    char sampled[32] = "all";
    if (sample > 1) snprintf(sampled, sizeof sampled, "at most %d", sample);
    printf(
        "config %s: V %d, C %d, L %d, T %d, micro_batch %d, fp16. Simulated at micro_batch "
        "%d and %d (%s blocks per launch sampled); each call's counts extrapolated linearly to %d "
        "rows and priced there.\n",
        argv[1], mc->vocab_size, mc->dim, mc->n_layers, T, Bt, BA, BB, sampled, Bt);
    for (int gi = 0; gi < 2; gi++) {
        const struct gpu *g = &GPUS[gi];
        struct table tx[PH_COUNT] = {{0}};
        double *ar_a = xmalloc((rx.n_ar + 1) * sizeof(double));
        double t_end = 0, h2d, d2h;
        int hosts;
        price_run(g, &rx, tx, ar_a, &t_end, &h2d, &d2h, &hosts);

        /* the step at 64 GPUs (the config's: one micro-batch per GPU) */
        struct table step = {0};
        for (int p = 0; p < PH_COUNT; p++)
            table_add(&step, &tx[p]);
        double micro_t = 0, apply_t = 0, gemm_t = 0, kern_t = 0, launch_t = 0, copy_t = 0;
        /* our kernels' arithmetic and its time: SIMT, tensor cores */
        double kern_flops = 0, kern_flop_t = 0, kern_tc = 0, kern_tc_t = 0;
        /* host launches (eager calls and graph launches), graphs, calls replayed in them */
        double launches_micro = 0, graphs_micro = 0, nodes_micro = 0;
        for (int i = 0; i < tx[PH_MICRO].n; i++) {
            micro_t += tx[PH_MICRO].r[i].t;
            launches_micro += tx[PH_MICRO].r[i].launches - tx[PH_MICRO].r[i].in_graph;
            graphs_micro += tx[PH_MICRO].r[i].graphs;
            nodes_micro += tx[PH_MICRO].r[i].in_graph;
        }
        for (int p = PH_PRE; p < PH_COUNT; p += 2)
            for (int i = 0; i < tx[p].n; i++)
                apply_t += tx[p].r[i].t;
        for (int i = 0; i < step.n; i++) {
            struct row *r = &step.r[i];
            launch_t += r->overhead;
            if (r->gemm)
                gemm_t += r->t;
            else if (!strncmp(r->label, "memcpy", 6))
                copy_t += r->t;
            else
                kern_t += r->t;
        }
        for (size_t i = 0; i < rx.n; i++)
            if (rx.rec[i].kind == CUDASIM_EV_KERNEL) {
                kern_flops += rx.rec[i].flops;
                kern_flop_t += rx.rec[i].flops / (SIMT_EFF * g->fp32_peak);
                kern_tc += rx.rec[i].tc_flops;
                kern_tc_t += rx.rec[i].tc_flops / (TC_KERNEL_EFF * g->tc_peak);
            }
        /* The simulated step has one micro-batch, whose gradient initializes the fp32
         * accumulator (grad_accumulate_list with first set: fp16 read, fp32 written): the
         * pass's time acc_pass_t. A step of n micro-batches with k gradient buffers
         * (trainer_grad_buffers) makes f = ceil(n / k) such passes; each but the first also
         * reads the accumulator, and each adds up to k buffers, reading them all: those reads
         * are priced apart, at the DRAM rate (acc_step_t below). The last pass runs in the
         * last micro-batch's grad_ready hooks, bucket by bucket: its extra reads delay every
         * bucket's all-reduce as much as the end of backward, so the exposed time is taken as
         * the one-buffer step's. */
        double acc_bytes = 0, src_bytes = 0, acc_pass_t = 0;
        for (size_t i = 0; i < rx.n; i++)
            if (rx.rec[i].kind == CUDASIM_EV_KERNEL &&
                !strncmp(rx.rec[i].name, "grad_accumulate_list_kernel", 27)) {
                acc_bytes += rx.rec[i].unique_store_bytes;
                src_bytes += rx.rec[i].unique_load_bytes;
            }
        for (int i = 0; i < tx[PH_MICRO].n; i++)
            if (!strncmp(tx[PH_MICRO].r[i].label, "grad_accumulate_list_kernel", 27))
                acc_pass_t += tx[PH_MICRO].r[i].t;
        double acc_read_t = acc_bytes / g->dram_bw, src_read_t = src_bytes / g->dram_bw;
        qsort(step.r, (size_t)step.n, sizeof *step.r, by_time);
        double step_t = micro_t + apply_t;
        printf("\n== %s (MODEL) ==\n", g->name);
        printf("per-kernel table, one optimizer step at 64 GPUs (1 micro-batch of %d x %d per "
               "GPU + the update); modelled:\n",
               Bt, T);
        printf("%-58s %9s %9s %10s %7s %10s %6s\n", "kernel / call", "launches", "GFLOP", "DRAM MB",
               "sec/req", "model us", "share");
        for (int i = 0; i < step.n; i++) {
            struct row *r = &step.r[i];
            if (r->t < 0.001 * step_t && i >= 15) continue;
            printf("%-58.58s %9.0f %9.2f %10.2f %7.2f %10.1f %5.1f%%\n", r->label, r->launches,
                   r->flops / 1e9, r->dram / 1e6, r->requests > 0 ? r->sectors / r->requests : 0,
                   r->t * 1e6, 100 * r->t / step_t);
        }
        printf("(rows under 0.1%% of the step after the first 15 are not shown)\n");
        /* the update's kernels (not copies, not overhead): what sharding divides */
        double upd_kern = 0;
        for (int i = 0; i < tx[PH_APPLY].n; i++) {
            const struct row *r = &tx[PH_APPLY].r[i];
            if (!r->gemm && strncmp(r->label, "memcpy", 6)) upd_kern += r->t - r->overhead;
        }
        int shard = cfg.train.shard_optimizer;
        double step_at[2] = {0, 0}, micro_at[2] = {0, 0}; /* 8 and 64 GPUs */
        double upd_saved[2] = {0, 0};                     /* update time sharding saves */
        double acc_shift[2] = {0, 0}; /* the owners' sum instead of the accumulator pass */
        for (int G = 8; G <= 64; G *= 8) {
            int n_micro = global_rows / (G * Bt);
            if (n_micro < 1) n_micro = 1;
            double busbw = G == 8 ? g->busbw8 : g->busbw64;
            double late = 0, ar_total = 0;
            for (size_t i = 0; i < ra.n_ar; i++)
                ar_total += (double)ra.ar_bytes[i];
            /* sharded with one micro-batch per GPU: the fp16 gradients to their owners, each
             * GPU sending (G-1)/G of its fp16 bytes, half the fp32 ones */
            int owner = shard && n_micro == 1;
            double factor = owner ? 0.5 * (G - 1) / G : shard ? 1.0 : 2.0 * (G - 1) / G;
            double exposed = exposed_comm(ar_a, ra.ar_bytes, ra.n_ar, t_end, factor, busbw,
                                          g->coll_latency_s, &late);
            double host = hosts * g->coll_latency_s;
            int k = trainer_grad_buffers(&cfg.train, &gpu_ops, n_micro);
            double acc_t = acc_step_t(n_micro, k, acc_pass_t, acc_read_t, src_read_t);
            if (owner) {
                /* no accumulator pass in the backward; after the transfers the owner adds the
                 * G fp16 rows of its shard (all of them: the arena's fp16 bytes) into its fp32
                 * shard, 8 rows per pass (OPS_GRAD_SOURCES_MAX), the shard read and written
                 * by each pass but the first's read */
                double params = ar_total / 4.0, q = params / G;
                int passes = (G + OPS_GRAD_SOURCES_MAX - 1) / OPS_GRAD_SOURCES_MAX;
                acc_t = (params * 2.0 + (2.0 * passes - 1.0) * q * 4.0) / g->dram_bw +
                        passes * g->launch_s;
                acc_shift[G == 8 ? 0 : 1] = acc_t - acc_pass_t;
            }
            /* sharded: the update on 1/G of the arena, then the fp16 weights (half the fp32
             * gradient's bytes) broadcast by their owners */
            double saved = shard ? upd_kern * (1.0 - 1.0 / G) : 0.0;
            /* (buckets other than one per layer and one more: the whole broadcast exposed) */
            double gather = !shard ? 0.0
                            : (int)ra.n_ar == (int)L + 1
                                ? exposed_gather(ra.ar_bytes, (int)L, busbw, g->coll_latency_s,
                                                 micro_t / 3.0 / L)
                                : ar_total / 2.0 / busbw + g->coll_latency_s;
            upd_saved[G == 8 ? 0 : 1] = saved;
            double upd_t = apply_t - saved;
            double total =
                n_micro * (micro_t - acc_pass_t) + acc_t + upd_t + gather + exposed + host;
            double tok = (double)n_micro * Bt * T / total;
            step_at[G == 8 ? 0 : 1] = total;
            micro_at[G == 8 ? 0 : 1] = n_micro;
            char gathered[96] = "";
            if (shard)
                snprintf(gathered, sizeof gathered,
                         " + %.2f ms waiting for the updated weights (broadcast from their "
                         "shards during the forward)",
                         gather * 1e3);
            char added[160];
            if (owner)
                snprintf(added, sizeof added,
                         "%.2f ms adding the %d GPUs' fp16 gradients of this GPU's shard in fp32",
                         acc_t * 1e3, G);
            else
                snprintf(added, sizeof added,
                         "%.2f ms adding %d gradient buffer%s into the accumulator (%d pass%s)",
                         acc_t * 1e3, n_micro, n_micro > 1 ? "s" : "", (n_micro + k - 1) / k,
                         (n_micro + k - 1) / k > 1 ? "es" : "");
            printf("%2d GPUs (%d micro-batch%s per GPU): step %.2f ms = %d x %.2f ms "
                   "micro-batch + %s + %.2f ms update%s (incl. host<->device %.2f ms)%s + %.2f "
                   "ms exposed %s + %.2f ms host collectives; %.0f tokens/s per GPU, "
                   "MFU %.1f%% (MODEL)\n",
                   G, n_micro, n_micro > 1 ? "es" : "", total * 1e3, n_micro,
                   (micro_t - acc_pass_t) * 1e3, added, upd_t * 1e3,
                   shard ? " of this GPU's shard" : "", copy_t * 1e3, gathered, exposed * 1e3,
                   owner   ? "fp16 gradient transfer to the owners"
                   : shard ? "gradient reduce"
                           : "all-reduce",
                   host * 1e3, tok, 100 * tok * flops_tok / g->tc_peak);
            printf("   %s at %d GPUs: %zu buckets, %.0f MB per step (as fp32), %.0f MB (%.1f%%) "
                   "still to send when the backward ends (MODEL)\n",
                   owner   ? "fp16 gradients to the shards' owners"
                   : shard ? "gradient reduce to the shards' owners"
                           : "all-reduce",
                   G, ra.n_ar, ar_total / 1e6, late / 1e6, 100 * late / fmax(ar_total, 1));
        }
        /* the same split per micro-batch and for the update, for the 8-GPU step; the fused
         * attention kernels (tensor-core products with their softmax) shown apart */
        double mg = 0, mk = 0, ma = 0, ak = 0, sa = 0;
        for (int i = 0; i < tx[PH_MICRO].n; i++) {
            const struct row *r = &tx[PH_MICRO].r[i];
            if (r->gemm)
                mg += r->t;
            else if (strncmp(r->label, "memcpy", 6))
                mk += r->t;
            if (!r->gemm && strstr(r->label, "attention")) ma += r->t;
        }
        for (int p = PH_PRE; p < PH_COUNT; p += 2)
            for (int i = 0; i < tx[p].n; i++)
                if (!tx[p].r[i].gemm && strncmp(tx[p].r[i].label, "memcpy", 6)) ak += tx[p].r[i].t;
        for (int i = 0; i < step.n; i++)
            if (!step.r[i].gemm && strstr(step.r[i].label, "attention")) sa += step.r[i].t;
        int m8 = global_rows / (8 * Bt) < 1 ? 1 : global_rows / (8 * Bt);
        double acc8 = acc_step_t(m8, trainer_grad_buffers(&cfg.train, &gpu_ops, m8), acc_pass_t,
                                 acc_read_t, src_read_t);
        /* a sharded update's kernels run on 1/G of the arena */
        double kern8 = m8 * (mk - acc_pass_t) + ak + acc8 - upd_saved[0] + acc_shift[0];
        kern_t += acc_shift[1] - upd_saved[1];
        printf("totals at 64 GPUs: GEMM %.2f ms, non-GEMM kernels+memsets %.2f ms "
               "(non-GEMM/GEMM %.2f; the fused attention kernels %.2f ms of it), of which launch "
               "overhead %.2f ms, host<->device %.2f ms%s\n",
               gemm_t * 1e3, kern_t * 1e3, kern_t / gemm_t, sa * 1e3, launch_t * 1e3, copy_t * 1e3,
               shard ? "; the update's kernels at 1/64 of the arena (the table above prices "
                       "them on the whole of it, as simulated)"
                     : "");
        printf("totals at 8 GPUs (%d micro-batches + the update): GEMM %.2f ms, non-GEMM "
               "kernels+memsets %.2f ms (non-GEMM/GEMM %.2f; the fused attention kernels %.2f ms "
               "of it)\n",
               m8, m8 * mg * 1e3, kern8 * 1e3, kern8 / (m8 * mg), m8 * ma * 1e3);
        double dg, dk;
        if (wide_bias_shift(g, &rx, Bt * T, (int)C, (mc->vocab_size + 127) / 128 * 128, &dg, &dk)) {
            double r64 = (kern_t + dk) / (gemm_t + dg);
            double r8 = (kern8 + m8 * dk) / (m8 * (mg + dg));
            printf("with the output bias's gradient as a GPU computes it at %d rows (in the "
                   "weight-gradient GEMM; the rows simulated take a GEMV): per micro-batch GEMM "
                   "%+.2f ms, non-GEMM %+.2f ms; non-GEMM/GEMM %.2f at 64 GPUs, %.2f at 8; MFU "
                   "%.1f%% at 64 GPUs, %.1f%% at 8 (MODEL)\n",
                   Bt * T, dg * 1e3, dk * 1e3, r64, r8,
                   100 * Bt * T / (step_at[1] + micro_at[1] * (dg + dk)) * flops_tok / g->tc_peak,
                   100 * micro_at[0] * Bt * T / (step_at[0] + micro_at[0] * (dg + dk)) * flops_tok /
                       g->tc_peak);
        }
        printf("our kernels' arithmetic: %.1f GFLOP per step in fp32 without tensor cores, "
               "%.2f ms at %.0f%% of the %.1f TFLOP/s fp32 peak (MODEL: a lower bound); "
               "%.1f GFLOP on tensor cores (wmma), %.2f ms at %.0f%% of the %.0f TFLOP/s fp16 "
               "tensor peak (MODEL: an assumed efficiency)\n",
               kern_flops / 1e9, kern_flop_t * 1e3, 100 * SIMT_EFF, g->fp32_peak / 1e12,
               kern_tc / 1e9, kern_tc_t * 1e3, 100 * TC_KERNEL_EFF, g->tc_peak / 1e12);
        if (graphs_micro > 0)
            printf("launches per micro-batch (kernels + cuBLAS calls + copies + memsets + CUDA "
                   "Graph launches): %.0f (%.0f graph%s replaying %.0f nodes at %.1f us each, + "
                   "%.0f outside graphs); ",
                   launches_micro, graphs_micro, graphs_micro > 1 ? "s" : "", nodes_micro,
                   g->node_s * 1e6, launches_micro - graphs_micro);
        else
            printf("launches per micro-batch (kernels + cuBLAS calls + copies + memsets): %.0f; ",
                   launches_micro);
        printf("host<->device bytes per optimizer step: %.0f MB H2D + %.0f MB D2H\n", h2d / 1e6,
               d2h / 1e6);
        for (int p = 0; p < PH_COUNT; p++)
            free(tx[p].r);
        free(step.r);
        free(ar_a);
    }
    printf("\nsimulation: %.0f s + %.0f s; report wall time %.0f s\n", ra.wall_s, rb.wall_s,
           now_seconds() - t0);
    free(rx.rec);
    sim_run_free(&ra);
    sim_run_free(&rb);
    return 0;
}
