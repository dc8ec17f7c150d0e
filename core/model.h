/* model.h — the XLM LM (Lample & Conneau 2019; HF XLMWithLMHeadModel): causal (CLM) or
 * bidirectional (MLM, TLM), per batch.
 *
 * Parameters live in one contiguous arena of named tensors, stacked per layer; gradients,
 * Adam moments and the storage copy use the same layout, so zeroing, all-reducing and
 * checkpointing are one loop over one buffer. Tensor order and shapes (PyTorch (out,in)):
 *
 *   wte    (V, C)     transformer.embeddings.weight      (tied: pred_layer.proj.weight)
 *   wpe    (P, C)     transformer.position_embeddings.weight
 *   wlang  (NL, C)    transformer.lang_embeddings.weight (absent unless use_lang_emb, NL > 1)
 *   lne_w, lne_b (C)  transformer.layer_norm_emb.{weight,bias}
 *   qw (L,C,C) qb (L,C) kw kb vw vb ow ob   transformer.attentions.{l}.{q,k,v,out}_lin.*
 *   ln1w, ln1b (L,C)  transformer.layer_norm1.{l}.*
 *   f1w (L,F,C) f1b (L,F) f2w (L,C,F) f2b (L,C)   transformer.ffns.{l}.lin{1,2}.*
 *   ln2w, ln2b (L,C)  transformer.layer_norm2.{l}.*
 *   pb     (V)        pred_layer.proj.bias
 */
#ifndef XLMC_MODEL_H
#define XLMC_MODEL_H

#include "core/config.h"
#include "kernels/ops.h"

#include <stddef.h>
#include <stdint.h>

/* The mask word of MLM and TLM: XLM's <special1>, id 5 of its dictionary (after <s> </s>
 * <pad> <unk> <special0>). */
#define XLMC_MASK_INDEX 5

enum param_id {
    P_WTE,
    P_WPE,
    P_WLANG,
    P_LNE_W,
    P_LNE_B,
    P_QW,
    P_QB,
    P_KW,
    P_KB,
    P_VW,
    P_VB,
    P_OW,
    P_OB,
    P_LN1W,
    P_LN1B,
    P_F1W,
    P_F1B,
    P_F2W,
    P_F2B,
    P_LN2W,
    P_LN2B,
    P_PB,
    P_COUNT
};

struct param_tensor {
    const char *name; /* short name: "wte", "qw", ... */
    size_t offset;    /* elements from the arena start */
    size_t numel;     /* all layers together */
    int layers;       /* L for stacked tensors, 1 otherwise */
    int ndim;         /* of one layer's slice: 1 or 2 */
    int shape[2];     /* one layer's slice, PyTorch layout */
    int decay;        /* 1: weight decay applies (matrices and embeddings) */
};

struct model {
    struct xlmc_config cfg;
    const struct ops *ops;
    struct param_tensor params[P_COUNT]; /* numel 0 for absent tensors (wlang) */
    size_t num_params;                   /* elements in the arena */
    /* Vp: vocab_size rounded up to a multiple of 128. The arena gives wte Vp rows and pb Vp
     * entries so that the output GEMMs and the loss op run on (N,Vp) logits with aligned
     * leading dimensions; the rows past vocab_size are zero, never get a gradient, and are
     * in no tensor's numel/shape (checkpoints, HF files and logits_out keep vocab_size). */
    int vocab_rows;
    size_t num_weights; /* true parameter count: num_params less padding */

    float *master; /* (num_params) fp32 master weights, host memory */
    void *weights; /* (num_params) storage copy on the backend's device; on the CPU
                    * backend in fp32 the master weights themselves (the copy would
                    * be identical: Adam's pass then writes one array, not two) */
    int weights_are_master;
    void *grads; /* (num_params) storage, one micro-batch's gradient: gradient buffer
                  * grad_buffer of grad_buffers, each grad_stride bytes from the next in
                  * grad_arena (model_grad_buffers; one unless a trainer asks for more) */
    void *grad_arena;
    size_t grad_stride;
    int grad_buffers, grad_buffer;
    long classified; /* rows the last forward ran the output layer on: every position, or
                      * the predicted ones when it gathers them (MLM, TLM) */
    /* activations: owned by model.c, sized by model_reserve() for (B, T) */
    void *acts;
    size_t acts_bytes;
    int acts_B, acts_T;
    void *backend_state; /* model.c's private per-shape buffers */
    /* Optional (NULL: none). model_backward calls grad_ready(grad_ready_ctx, l) as soon as
     * the gradients of layer l's stacked tensors are final in m->grads (l = L-1 ... 0, in
     * that order, on the backend's stream: kernels queued after it see them), then once with
     * l = -1 when the rest (wte, wpe, wlang, lne_*, pb) is final too, wte and pb only then
     * because wte is tied to the output projection. The trainer starts the gradient
     * all-reduce from it while backward goes on. */
    void (*grad_ready)(void *ctx, int layer);
    void *grad_ready_ctx;
    /* Optional (NULL: none). Every forward calls weights_wait(weights_wait_ctx, l) before it
     * issues work that reads the weights of layer l's stacked tensors (l = 0 ... L-1), and
     * with l = -1 first, before the rest (wte, wpe, wlang, lne_*, pb); nonzero fails the
     * forward. The sharded optimizer's trainer lets each layer's updated weights arrive
     * while the layers below compute. With it set, a training forward on a backend with
     * graphs is recorded in one segment per layer (see segment() in model_plan.h). */
    int (*weights_wait)(void *ctx, int layer);
    void *weights_wait_ctx;
};

/* A batch of B rows of T positions, right padded. All host int32 arrays (B*T or B).
 * targets: next-token ids, < 0 where ignored (padding). langs: per position. */
struct batch {
    int B, T;
    const int32_t *ids;     /* (B,T) */
    const int32_t *langs;   /* (B,T) */
    const int32_t *lengths; /* (B) real positions per row */
    const int32_t *targets; /* (B,T) or NULL for forward without loss */
    uint32_t row0;          /* global row index of row 0 within the step (dropout keying) */
    /* MLM and TLM (zero-initialised: CLM, positions 0..T-1). */
    const int32_t *positions; /* (B,T) position ids, or NULL: position t at column t (TLM
                               * restarts them at 0 for the second sentence) */
    int bidirectional;        /* 0: causal attention (CLM); 1: every real key of the row
                               * (MLM, TLM), keys at or past lengths[b] masked */
};

/* Fill m->params from the config and allocate master/weights/grads (zeroed). 0 or -1. */
int model_create(struct model *m, const struct xlmc_config *cfg, const struct ops *ops);
void model_destroy(struct model *m);

/* At least k gradient buffers (k <= OPS_GRAD_SOURCES_MAX), so that k micro-batches' gradients
 * can be added into the accumulator by one pass; the first is then in use. Recorded graphs
 * are dropped when the buffers move. 0, or -1 after printing an error (out of memory). */
int model_grad_buffers(struct model *m, int k);
/* Backward writes buffer j (< m->grad_buffers) from now on: m->grads points at it. */
void model_use_grad_buffer(struct model *m, int j);

/* XLM's initialization: embeddings N(0, dim^-0.5) with the pad row zero, LayerNorm 1/0,
 * linear layers as documented in model.c, biases 0. Deterministic from seed. */
int model_init_weights(struct model *m, uint64_t seed); /* 0, or -1 as model_sync_weights */

/* Copy master (fp32) -> weights (storage) after master changes outside the optimizer.
 * 0, or -1 after printing an error (out of backend memory). */
int model_sync_weights(struct model *m);

/* HF state-dict name of tensor id for layer l (l ignored for unstacked). Returns 0 or -1 if
 * the buffer is too small. */
int model_param_hf_name(const struct model *m, int id, int layer, char *buf, size_t len);
/* Look up an HF name; sets *id, *layer. Returns 0, or -1 when unknown. */
int model_param_from_hf_name(const struct model *m, const char *name, int *id, int *layer);

/* Forward pass. training: dropout on (keyed by seed, step, b->row0). Returns the mean loss over
 * non-ignored targets (0 if none or targets NULL) and the number of counted targets in *count.
 * logits_out (B,T,V) fp32 host array, or NULL. A batch the model cannot take (T above
 * max_positions, an id, target or language out of range) or a failed allocation returns -1
 * after printing an error: a loss is never negative (a diverged one is NaN, not -1). */
float model_forward(struct model *m, const struct batch *b, int training, uint64_t seed,
                    uint64_t step, float *logits_out, long *count);

/* The forward of a training step whose backward follows with these loss_scale and denom:
 * model_forward(m, b, 1, seed, step, NULL, count), but the output layer's loss op also leaves
 * the logits' gradient in place, so the backward does not pass over the (B,T,V) logits again.
 * b must have targets. -1 on error, as model_forward. */
float model_forward_train(struct model *m, const struct batch *b, uint64_t seed, uint64_t step,
                          float loss_scale, double denom, long *count);

/* Evaluation on the device: an eval forward (no dropout) of b, which must have targets, and
 * over its counted targets the summed loss (*loss_sum, fp64 sum of the fp32 per-position
 * losses), their number (*count) and how many have their first argmax at the target
 * (*correct). Only per-position scalars reach the host, never the (B,T,V) logits; with
 * b->bidirectional only the predicted positions' logits are computed. 0, or -1 as
 * model_forward. */
int model_evaluate(struct model *m, const struct batch *b, double *loss_sum, long *count,
                   long *correct);

/* Backward of the last model_forward or model_forward_train (with targets): SETS m->grads
 * (storage) to the gradient of loss_scale * sum_loss / denom, where sum_loss is this batch's
 * summed token loss and denom the number of counted targets over the whole global step, so
 * that micro-batches and ranks summed together give the gradient of the step's mean loss.
 * 0, or -1 after printing an error (no matching forward). */
int model_backward(struct model *m, const struct batch *b, uint64_t seed, uint64_t step,
                   float loss_scale, double denom);

#endif
