/* model_forward.c — the forward of the model (model.c's header comment has the equations):
 * the batch to the device, embeddings, layers, the output layer and the loss; on a backend
 * with graphs a training forward is one recorded segment (segment() in model_plan.h). */
#include "core/model.h"
#include "core/model_plan.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* forward's device work, from the embeddings to the loss op (part < 0), or its part-th
 * piece: layer `part`, with the embeddings before layer 0 and the output layer and the loss
 * after the last. The classifier's row count (0 for a piece without it), -1 on failure. */
static int forward_device(struct model *m, struct model_plan *pl, const struct batch *b,
                          uint64_t seed, uint64_t step, float *logits_out, int fused, float dscale,
                          int part) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    int B = b->B, T = b->T, N = B * T, C = mc->dim, F = mc->ffn_dim, V = mc->vocab_size;
    int NH = mc->n_heads;
    void *W = m->weights;
    const int32_t *pos = pl->has_positions ? pl->positions : NULL;
    const int32_t *att_len = pl->bidirectional ? pl->lengths : NULL; /* NULL: causal */

    int l0 = part < 0 ? 0 : part, l1 = part < 0 ? pl->L : part + 1;
    struct dropout_key k = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    if (l0 == 0) {
        ops->embed_forward(pl->emb, pl->ids, pl->langs, pos, param_at(m, W, P_WTE, 0),
                           param_at(m, W, P_WPE, 0),
                           m->params[P_WLANG].numel ? param_at(m, W, P_WLANG, 0) : NULL, B, T, C);
        /* padding zeroed in the LayerNorm's pass: dropout keeps the zeros */
        ops->layernorm_forward(pl->x0, pl->mean0, pl->rstd0, pl->emb, param_at(m, W, P_LNE_W, 0),
                               param_at(m, W, P_LNE_B, 0), N, C, mc->layer_norm_eps, pl->lengths,
                               T);
        ops->dropout(pl->x0, B, T, C, pl->p_hidden, &k);
    }
    void *x = l0 == 0 ? pl->x0 : pl->layers[l0 - 1].h2;
    for (int l = l0; l < l1; l++) {
        struct layer_acts *a = &pl->layers[l];
        /* q, k, v (3,N,C) in one batched product */
        ops->matmul_forward_batched(a->q, x, param_at(m, W, P_QW, l), param_at(m, W, P_QB, l), N, C,
                                    C, 3, qkv_stride(m), (size_t)N * C);
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_PROBS(l));
        ops->attention_forward(a->y, a->lse, a->q, a->k, a->v, att_len, B, T, C, NH, pl->p_attn,
                               &k);
        /* the out-projection's and lin2's biases ride in the residual + LayerNorm pass */
        ops->matmul_forward(a->r1, a->y, param_at(m, W, P_OW, l), NULL, N, C, C);
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_OUT(l));
        ops->residual_layernorm_forward(a->h1, a->mean1, a->rstd1, a->r1, x, a->r1,
                                        param_at(m, W, P_OB, l), param_at(m, W, P_LN1W, l),
                                        param_at(m, W, P_LN1B, l), B, T, C, mc->layer_norm_eps,
                                        NULL, pl->p_hidden, &k);
        /* f1 holds lin1's output before its bias: the bias rides in the GELU's pass */
        ops->matmul_forward(a->f1, a->h1, param_at(m, W, P_F1W, l), NULL, N, C, F);
        ops->bias_gelu_forward(a->g, a->f1, param_at(m, W, P_F1B, l), N, F);
        ops->matmul_forward(a->r2, a->g, param_at(m, W, P_F2W, l), NULL, N, F, C);
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_FFN_OUT(l));
        /* the layer's output with its padding zeroed */
        ops->residual_layernorm_forward(a->h2, a->mean2, a->rstd2, a->r2, a->h1, a->r2,
                                        param_at(m, W, P_F2B, l), param_at(m, W, P_LN2W, l),
                                        param_at(m, W, P_LN2B, l), B, T, C, mc->layer_norm_eps,
                                        pl->lengths, pl->p_hidden, &k);
        x = a->h2;
    }
    if (l1 < pl->L) return 0;
    int R = N, Vp = m->vocab_rows;
    if (pl->gathered) {
        R = 0;
        for (int n = 0; n < N; n++)
            if (b->targets[n] >= 0) {
                pl->sel_host[R] = n;
                pl->sel_host[N + R++] = b->targets[n];
            }
        ops->to_device(pl->sel_index, pl->sel_host, (size_t)R * sizeof(int32_t));
        ops->to_device(pl->sel_targets, pl->sel_host + N, (size_t)R * sizeof(int32_t));
        ops->gather_rows(pl->x_sel, x, pl->sel_index, R, C);
    }
    pl->cls_rows = R;
    m->classified = R;
    if (R)
        ops->matmul_forward(pl->logits, pl->gathered ? pl->x_sel : x, param_at(m, W, P_WTE, 0),
                            fused ? NULL : param_at(m, W, P_PB, 0), R, C, Vp);
    if (logits_out) {
        size_t bytes = (size_t)N * Vp * sizeof(float);
        if (!pl->logits_f32 && !(pl->logits_f32 = ops->alloc(bytes))) {
            xlmc_error("%s backend: cannot allocate %zu bytes for the logits", ops->name, bytes);
            return -1;
        }
        ops->storage_to_f32(pl->logits_f32, pl->logits, (size_t)N * Vp);
        if (Vp == V) {
            ops->to_host(logits_out, pl->logits_f32, bytes);
        } else { /* (N,V) out of (N,Vp): the padding never leaves the model */
            for (int n = 0; n < N; n++)
                ops->to_host(logits_out + (size_t)n * V, pl->logits_f32 + (size_t)n * Vp,
                             (size_t)V * sizeof(float));
        }
    }
    if (b->targets) {
        if (fused) grads_zero_unset(m); /* PB's included: the classifier adds into it */
        /* the bias's gradient here, or (ops->db_in_gemm) in backward_output's GEMM */
        ops->classifier(pl->losses, pl->logits, fused ? param_at(m, W, P_PB, 0) : NULL,
                        fused && !ops->db_in_gemm ? param_at(m, m->grads, P_PB, 0) : NULL,
                        pl->gathered ? pl->sel_targets : pl->targets, R, V, Vp,
                        fused ? dscale : 0.0f);
        pl->logits_grad_scale = fused ? dscale : 0.0f;
    }
    return R;
}

/* model_forward; with dscale != 0 the loss op also overwrites the logits by their gradient */
static float forward(struct model *m, const struct batch *b, int training, uint64_t seed,
                     uint64_t step, float *logits_out, long *count, float dscale) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    int B = b->B, T = b->T, N = B * T, V = mc->vocab_size;
    /* the lookups below index tables by these: a bad batch must not read out of bounds */
    if (T > mc->max_positions) {
        xlmc_error("model_forward: T = %d exceeds max_positions = %d", T, mc->max_positions);
        return -1.0f;
    }
    for (int n = 0; n < N; n++) {
        int lang_ok = !m->params[P_WLANG].numel || (b->langs[n] >= 0 && b->langs[n] < mc->n_langs);
        int target_ok = !b->targets || b->targets[n] < V;
        if (b->positions && (b->positions[n] < 0 || b->positions[n] >= mc->max_positions)) {
            xlmc_error("model_forward: token %d of the batch: position %d outside "
                       "max_positions = %d",
                       n, b->positions[n], mc->max_positions);
            return -1.0f;
        }
        if (b->ids[n] < 0 || b->ids[n] >= V || !lang_ok || !target_ok) {
            xlmc_error("model_forward: token %d of the batch: id %d or target %d outside the "
                       "vocabulary of %d, or language %d outside n_langs = %d",
                       n, b->ids[n], b->targets ? b->targets[n] : -1, V, b->langs[n], mc->n_langs);
            return -1.0f;
        }
    }
    struct model_plan *pl = model_reserve(m, B, T);
    if (!pl) return -1.0f;
    pl->training = training;
    pl->p_hidden = training ? mc->dropout : 0.0f;
    pl->p_attn = training ? mc->attention_dropout : 0.0f;
    pl->have_targets = b->targets != NULL;
    pl->logits_grad_scale = 0.0f;
    ops->to_device(pl->ids, b->ids, (size_t)N * sizeof(int32_t));
    ops->to_device(pl->langs, b->langs, (size_t)N * sizeof(int32_t));
    ops->to_device(pl->lengths, b->lengths, (size_t)B * sizeof(int32_t));
    if (b->targets) ops->to_device(pl->targets, b->targets, (size_t)N * sizeof(int32_t));
    pl->has_positions = b->positions != NULL;
    pl->bidirectional = b->bidirectional;
    if (b->positions) ops->to_device(pl->positions, b->positions, (size_t)N * sizeof(int32_t));
    /* A training forward leaves the output bias to the loss op, which also sums its gradient
     * while each row of the logits' gradient is at hand (unless the backward's GEMM does:
     * ops->db_in_gemm): two passes over (N,V) fewer. */
    int fused = dscale != 0.0f && b->targets && !logits_out;
    /* MLM/TLM predict a few positions per row: their rows only (not when all logits are
     * asked for) */
    pl->gathered = b->targets && b->bidirectional && !logits_out;
    struct dropout_key k0 = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    /* with a weights wait: a piece per layer, each after its wait (segment()) */
    int split = m->weights_wait && pl->L > 1, parts = split ? pl->L : 1, R = 0;
    for (int part = 0; part < parts; part++) {
        /* the non-layer tensors (-1) first; one piece waits for every layer */
        for (int l = part == 0 ? -1 : part; m->weights_wait && l <= (split ? part : pl->L - 1); l++)
            if (m->weights_wait(m->weights_wait_ctx, l)) return -1.0f;
        void *g = fused ? segment(m, pl, part) : NULL;
        do {
            if (g) ops->graph_begin(g, &k0, dscale);
            R = forward_device(m, pl, b, seed, step, logits_out, fused, dscale, split ? part : -1);
        } while (g && ops->graph_end(g));
        if (R < 0) return -1.0f;
    }
    long counted = 0;
    double sum = 0.0;
    if (b->targets) {
        ops->to_host(pl->losses_host, pl->losses, (size_t)R * sizeof(float));
        ops->synchronize();
        for (int n = 0; n < R; n++) {
            if (!pl->gathered && b->targets[n] < 0) continue;
            sum += pl->losses_host[n];
            counted++;
        }
    }
    ops->synchronize();
    pl->loss_sum = sum;
    if (count) *count = counted;
    return counted ? (float)(sum / (double)counted) : 0.0f;
}

int model_evaluate(struct model *m, const struct batch *b, double *loss_sum, long *count,
                   long *correct) {
    if (!b->targets) return xlmc_error("model_evaluate: the batch has no targets");
    if (forward(m, b, 0, 0, 0, NULL, count, 0.0f) < 0.0f) return -1;
    const struct ops *ops = m->ops;
    struct model_plan *pl = m->backend_state;
    int R = pl->cls_rows;
    ops->argmax_correct(pl->correct, pl->logits, pl->gathered ? pl->sel_targets : pl->targets, R,
                        m->cfg.model.vocab_size, m->vocab_rows);
    int32_t *hits = pl->sel_host; /* free now: R <= N ints */
    ops->to_host(hits, pl->correct, (size_t)R * sizeof(int32_t));
    ops->synchronize();
    long c = 0;
    for (int r = 0; r < R; r++)
        c += hits[r];
    *correct = c;
    *loss_sum = pl->loss_sum;
    return 0;
}

float model_forward(struct model *m, const struct batch *b, int training, uint64_t seed,
                    uint64_t step, float *logits_out, long *count) {
    return forward(m, b, training, seed, step, logits_out, count, 0.0f);
}

float model_forward_train(struct model *m, const struct batch *b, uint64_t seed, uint64_t step,
                          float loss_scale, double denom, long *count) {
    if (!b->targets) {
        xlmc_error("model_forward_train: the batch has no targets");
        return -1.0f;
    }
    return forward(m, b, 1, seed, step, NULL, count, logits_dscale(loss_scale, denom));
}
