/* model_plan.h — what model.c, model_forward.c and model_backward.c share and nothing else
 * includes: the per-shape activation buffers of a model (struct model_plan, in
 * m->backend_state) and small helpers over the parameter arena. */
#ifndef XLMC_MODEL_PLAN_H
#define XLMC_MODEL_PLAN_H

#include "core/model.h"
#include "core/util.h"

#include <stddef.h>
#include <stdint.h>

/* Per-layer activations, all storage (N = B*T) unless noted. */
struct layer_acts {
    void *q, *k, *v; /* (N,C) projections */
    float *lse;      /* (B,NH,T) fp32 log-sum-exp of each attention row's scores */
    void *y;         /* (N,C) attention output before out_lin */
    void *r1, *h1;   /* (N,C) first residual sum, its LayerNorm */
    void *f1, *g;    /* (N,F) lin1 output without its bias, GELU of it plus the bias */
    void *r2, *h2;   /* (N,C) second residual sum, its LayerNorm (masked): layer output */
    float *mean1, *rstd1, *mean2, *rstd2; /* (N) fp32 */
};

struct model_plan {
    int B, T, L;
    void *emb, *x0;       /* (N,C) embedding sum, its LayerNorm (dropped, masked) */
    float *mean0, *rstd0; /* (N) */
    struct layer_acts *layers;
    void *logits;       /* (N,V), overwritten by its gradient in backward */
    float *losses;      /* (N) fp32 device */
    float *losses_host; /* (N) */
    float *logits_f32;  /* (N,V) fp32 device, only for logits_out; allocated on demand */
    int32_t *ids, *langs, *targets, *lengths; /* device: (N) (N) (N) (B) */
    int32_t *positions;                       /* device (N): the batch's, when it has them */
    /* The classifier's rows: all N, or (MLM, TLM) only the R positions with a target, gathered
     * into x_sel (R,C) by sel_index with their targets sel_targets (R), so that the (R,Vp)
     * logits of the others are never computed. */
    int cls_rows, gathered;
    void *x_sel;                                /* (N,C) storage, R rows used */
    int32_t *sel_index, *sel_targets, *correct; /* device (N) each */
    int32_t *sel_host;                          /* (2N): index, then targets */
    double loss_sum;                            /* of the last forward's counted targets */
    /* backward */
    void *g_h, *g_r, *g_t, *g_q, *g_k, *g_v; /* (N,C) */
    void *g_f;                               /* (N,F) */
    void *f32_block, *int_block;
    /* what the last forward did, for its backward */
    int training, have_targets;
    int has_positions, bidirectional;
    float logits_grad_scale; /* != 0: logits already hold their gradient at this dscale, and
                              * m->grads is zeroed (grads_zero_unset) but for the output bias's
                              * gradient */
    float p_hidden, p_attn;
    void **graphs;   /* (n_graphs) or NULL: the training micro-batch's segments, see segment() */
    size_t n_graphs; /* (L + 2) per gradient buffer */
};

/* The plan for (B, T): the existing one, or a new one (the old one's buffers freed); NULL
 * after an error was reported. */
struct model_plan *model_reserve(struct model *m, int B, int T);

/* Zero the tensors of m->grads that the backward only adds into (biases, LayerNorms, WPE,
 * WLANG, PB): a few contiguous ranges. The weight matrices' gradients are overwritten by their
 * one GEMM each (dw_set), WTE's by the vocabulary GEMM (or zeroed when it has no rows). */
void grads_zero_unset(struct model *m);

/* storage pointer of tensor id, layer l, in the weights (or grads) arena */
static inline void *param_at(const struct model *m, void *arena, int id, int l) {
    const struct param_tensor *t = &m->params[id];
    return ops_at(m->ops, arena, t->offset + (size_t)l * (t->numel / (size_t)t->layers));
}

/* Elements from a layer's QW to its KW, and from KW to VW: the tensors are laid out
 * QW QB KW KB VW VB, each over all layers, so both strides are L*C*(C+1), and the biases'
 * the same. The batched q/k/v ops rely on it. */
static inline size_t qkv_stride(const struct model *m) {
    return m->params[P_KW].offset - m->params[P_QW].offset;
}

static inline struct dropout_key dkey(uint64_t seed, uint64_t step, uint32_t row0,
                                      uint32_t tensor) {
    struct dropout_key k = {seed, step, row0, tensor};
    return k;
}

/* The training micro-batch in graph segments (graph_begin in kernels/ops.h), recorded once
 * and replayed: 0 the forward with the loss (with m->weights_wait: 0 ... L-1 the forward of
 * layer 0 with the embeddings before it, ..., of layer L-1 with the output layer and the loss
 * after it, one segment per layer because the weights wait comes before each), L + i the
 * backward of layer L-1-i (the first with the output layer's), 2L the embeddings'. A backward
 * segment ends where the trainer's grad_ready hook starts an all-reduce. NULL: eager (a backend
 * without graphs, train.cuda_graphs off, or MLM/TLM, whose gathered rows change the calls from
 * batch to batch). Each gradient buffer (model_grad_buffers) has its own segments, as they write to
 * its addresses. */
static inline void *segment(struct model *m, struct model_plan *pl, int i) {
    const struct ops *ops = m->ops;
    if (!ops->graph_begin || !m->cfg.train.cuda_graphs || pl->gathered) return NULL;
    if (!pl->graphs) {
        pl->n_graphs = (size_t)(2 * pl->L + 1) * (size_t)m->grad_buffers;
        pl->graphs = xcalloc(pl->n_graphs, sizeof *pl->graphs);
    }
    size_t k = (size_t)(2 * pl->L + 1) * (size_t)m->grad_buffer + (size_t)i; /* per buffer */
    if (!pl->graphs[k]) pl->graphs[k] = ops->graph_create();                 /* NULL: eager */
    return pl->graphs[k];
}

/* The gradient scale of the logits: loss_scale / denom, 0 when nothing is counted. */
static inline float logits_dscale(float loss_scale, double denom) {
    return denom > 0.0 ? (float)((double)loss_scale / denom) : 0.0f;
}

#endif
