/* graph.cu — CUDA Graphs for the training micro-batch: segments recorded once by stream
 * capture and replayed with one cudaGraphLaunch each, and the device-resident vars (dropout key,
 * gradient scale) that let one recording serve every micro-batch.
 *
 * A segment (one per struct cuda_graph) goes cold -> warm -> ready:
 *   cold:  run eagerly (first use: cuBLAS picks its kernels, the scratch buffers reach their
 *          size, so the capture that follows allocates nothing);
 *   warm:  captured, instantiated, launched;
 *   ready: the host runs the same op calls again, each fingerprinted and compared with the
 *          recording but not issued; if every call matches, the graph is launched. A mismatch
 *          (a buffer moved, a shape changed) drops the graph and asks the caller to run the
 *          segment again, which then captures anew: a stale graph never runs. */
#include "kernels/cuda/common.cuh"

#include <stdlib.h>

enum { SEG_NONE, SEG_CAPTURE, SEG_REPLAY };
enum { G_COLD, G_WARM, G_READY };

struct cuda_graph {
    int state;
    cudaGraphExec_t exec;
    uint64_t *prints; /* the recorded calls' fingerprints */
    size_t n, cap;
};

int g_cuda_seg_active;
static struct {
    int mode;
    struct cuda_graph *g;
    size_t pos;   /* replay: calls checked so far */
    int diverged; /* replay: a call differed from the recording */
} seg;

int cuda_seg_admit(uint64_t fingerprint) {
    struct cuda_graph *g = seg.g;
    if (seg.mode == SEG_CAPTURE) {
        if (g->n == g->cap) {
            g->cap = g->cap ? 2 * g->cap : 256;
            g->prints = (uint64_t *)realloc(g->prints, g->cap * sizeof *g->prints);
            if (!g->prints) {
                fprintf(stderr, "xlmc: out of host memory recording a CUDA graph\n");
                exit(1);
            }
        }
        g->prints[g->n++] = fingerprint;
        return 1;
    }
    if (seg.mode == SEG_REPLAY) {
        if (!seg.diverged && seg.pos < g->n && g->prints[seg.pos] == fingerprint)
            seg.pos++;
        else
            seg.diverged = 1;
        return 0;
    }
    return 1;
}

__global__ void set_vars_kernel(struct cuda_vars *vars, struct cuda_vars v) {
    *vars = v;
}

static int vars_equal(const struct cuda_vars *a, const struct cuda_vars *b) {
    return a->seed == b->seed && a->step == b->step && a->row0 == b->row0 &&
           !memcmp(&a->dscale, &b->dscale, sizeof a->dscale);
}

const struct cuda_vars *cuda_vars_for(const struct dropout_key *key, int with_dscale,
                                      float dscale) {
    struct cuda_vars want = g_cuda.vars_host;
    if (key) {
        want.seed = key->seed;
        want.step = key->step;
        want.row0 = key->row0;
    }
    if (with_dscale) want.dscale = dscale;
    if (g_cuda.vars_set && vars_equal(&want, &g_cuda.vars_host)) return g_cuda.vars;
    if (seg.mode == SEG_REPLAY) {
        seg.diverged = 1;
    } else if (seg.mode == SEG_CAPTURE) {
        fprintf(stderr, "xlmc: a dropout key or gradient scale inside a CUDA graph segment "
                        "differs from the one its graph_begin set\n");
        exit(1);
    } else {
        XLMC_LAUNCH(set_vars_kernel, 1, 1, 0, g_cuda.stream)(g_cuda.vars, want);
        cudaLaunchCheck();
        g_cuda.vars_host = want;
        g_cuda.vars_set = 1;
    }
    return g_cuda.vars;
}

/* ---- the ops table's graph entries ---- */
static void *cuda_graph_create(void) {
    return calloc(1, sizeof(struct cuda_graph));
}

static void drop_exec(struct cuda_graph *g) {
    if (g->exec) cudaCheck(cudaGraphExecDestroy(g->exec));
    g->exec = NULL;
    g->n = 0;
}

static void cuda_graph_destroy(void *p) {
    struct cuda_graph *g = (struct cuda_graph *)p;
    if (!g) return;
    drop_exec(g);
    free(g->prints);
    free(g);
}

static void cuda_graph_begin(void *p, const struct dropout_key *key, float dscale) {
    struct cuda_graph *g = (struct cuda_graph *)p;
    if (seg.mode != SEG_NONE) {
        fprintf(stderr, "xlmc: CUDA graph segments cannot nest\n");
        exit(1);
    }
    cuda_vars_for(key, dscale != 0.f, dscale); /* eagerly, before any capture */
    seg.g = g;
    seg.pos = 0;
    seg.diverged = 0;
    if (g->state == G_WARM) {
        g->n = 0;
        cudaCheck(cudaStreamBeginCapture(g_cuda.stream, cudaStreamCaptureModeThreadLocal));
        seg.mode = SEG_CAPTURE;
    } else if (g->state == G_READY) {
        seg.mode = SEG_REPLAY;
    }
    g_cuda_seg_active = seg.mode != SEG_NONE;
}

static int cuda_graph_end(void *p) {
    struct cuda_graph *g = (struct cuda_graph *)p;
    int mode = seg.mode, again = 0;
    seg.mode = SEG_NONE;
    g_cuda_seg_active = 0;
    seg.g = NULL;
    if (mode == SEG_NONE) { /* cold: ran eagerly */
        g->state = G_WARM;
        g_cuda.graph_counts[0]++;
    } else if (mode == SEG_CAPTURE) {
        cudaGraph_t graph;
        cudaCheck(cudaStreamEndCapture(g_cuda.stream, &graph));
        cudaCheck(cudaGraphInstantiateWithFlags(&g->exec, graph, 0)); /* CUDA 11.4 and 12 alike */
        cudaCheck(cudaGraphDestroy(graph));
        cudaCheck(cudaGraphLaunch(g->exec, g_cuda.stream));
        g->state = G_READY;
        g_cuda.graph_counts[1]++;
    } else if (!seg.diverged && seg.pos == g->n) {
        cudaCheck(cudaGraphLaunch(g->exec, g_cuda.stream));
        g_cuda.graph_counts[2]++;
    } else { /* nothing was issued: the caller runs the segment again, which captures */
        drop_exec(g);
        g->state = G_WARM;
        g_cuda.graph_counts[3]++;
        again = 1;
    }
    return again;
}

static void cuda_graph_counts(long counts[4]) {
    memcpy(counts, g_cuda.graph_counts, sizeof g_cuda.graph_counts);
}

void cuda_graph_fill(struct ops *o) {
    o->graph_create = cuda_graph_create;
    o->graph_destroy = cuda_graph_destroy;
    o->graph_begin = cuda_graph_begin;
    o->graph_end = cuda_graph_end;
    o->graph_counts = cuda_graph_counts;
}
