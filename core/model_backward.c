/* model_backward.c — the backward of the model, layer by layer from the loss op's logits
 * gradient down to the embeddings, in graph segments that end where the trainer's grad_ready
 * hook starts a layer's all-reduce. */
#include "core/model.h"
#include "core/model_plan.h"
#include "core/util.h"

#include <string.h>

/* The LayerNorm backward at the top of a residual branch also gives the branch's gradient,
 * dropout(d) into the temp buffer (the residual path keeps d itself; no dropout: d), and the
 * bias gradient of the branch's last linear layer dbias, in its own pass (see struct
 * ln_backward_extra). *branch: where the branch's gradient is. */
static struct ln_backward_extra branch_extra(struct model_plan *pl, const struct dropout_key *k,
                                             void *dbias, void *d, const void **branch) {
    int drop = pl->p_hidden > 0.0f;
    struct ln_backward_extra x = {pl->p_hidden, NULL, drop ? pl->g_t : NULL, k, dbias};
    *branch = drop ? pl->g_t : d;
    return x;
}

/* The backward of layer l: g_h holds d h2 on entry and d x (the layer's input) on return. */
static void backward_layer(struct model *m, struct model_plan *pl, const struct batch *b, int l,
                           uint64_t seed, uint64_t step) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    int T = b->T, N = b->B * T, C = mc->dim, F = mc->ffn_dim, NH = mc->n_heads;
    void *W = m->weights, *G = m->grads;
    struct layer_acts *a = &pl->layers[l];
    const void *x = l ? pl->layers[l - 1].h2 : pl->x0;
    /* g_h = d h2 -> g_r = d r2; the forward's mask of h2 as a zero dout on the padding; in
     * the same pass the FFN branch's gradient d (dropout of g_r) and lin2's bias gradient */
    const void *d;
    struct dropout_key k = dkey(seed, step, b->row0, DROPOUT_TENSOR_FFN_OUT(l));
    struct ln_backward_extra ex = branch_extra(pl, &k, param_at(m, G, P_F2B, l), pl->g_r, &d);
    ops->layernorm_backward(pl->g_r, param_at(m, G, P_LN2W, l), param_at(m, G, P_LN2B, l), pl->g_h,
                            a->r2, param_at(m, W, P_LN2W, l), a->mean2, a->rstd2, N, C, pl->lengths,
                            T, &ex);
    /* FFN branch: d lin2 out -> d g -> d f1 -> d h1 (branch part) */
    ops->matmul_backward(pl->g_f, param_at(m, G, P_F2W, l), NULL, d, a->g, param_at(m, W, P_F2W, l),
                         N, F, C, 1);
    ops->bias_gelu_backward(pl->g_f, param_at(m, G, P_F1B, l), pl->g_f, a->f1,
                            param_at(m, W, P_F1B, l), N, F);
    /* g_r += lin1's input gradient: d h1 (the residual path's share already there) */
    ops->matmul_backward_add(pl->g_r, param_at(m, G, P_F1W, l), NULL, pl->g_f, a->h1,
                             param_at(m, W, P_F1W, l), N, C, F, 1);
    /* d r1, with the attention branch's gradient and the out-projection's bias gradient */
    k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_OUT(l));
    ex = branch_extra(pl, &k, param_at(m, G, P_OB, l), pl->g_h, &d);
    ops->layernorm_backward(pl->g_h, param_at(m, G, P_LN1W, l), param_at(m, G, P_LN1B, l), pl->g_r,
                            a->r1, param_at(m, W, P_LN1W, l), a->mean1, a->rstd1, N, C, NULL, T,
                            &ex);
    /* attention branch */
    ops->matmul_backward(pl->g_r, param_at(m, G, P_OW, l), NULL, d, a->y, param_at(m, W, P_OW, l),
                         N, C, C, 1); /* d y */
    k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_PROBS(l));
    ops->attention_backward(pl->g_q, pl->g_k, pl->g_v, pl->g_r, a->y, a->lse, a->q, a->k, a->v,
                            pl->bidirectional ? pl->lengths : NULL, b->B, T, C, NH, pl->p_attn, &k);
    /* d x = d r1 + the three projections' input gradients, added onto g_h by the GEMMs */
    ops->matmul_backward_add_batched(pl->g_h, param_at(m, G, P_QW, l), param_at(m, G, P_QB, l),
                                     pl->g_q, x, param_at(m, W, P_QW, l), N, C, C, 3, qkv_stride(m),
                                     (size_t)N * C, 1);
}

/* Whether the backward overwrites tensor id's gradient in a GEMM (dw_set) rather than adding */
static int grad_set_by_gemm(int id) {
    return id == P_WTE || id == P_QW || id == P_KW || id == P_VW || id == P_OW || id == P_F1W ||
           id == P_F2W;
}

void grads_zero_unset(struct model *m) {
    size_t es = m->ops->storage_bytes;
    for (int i = 0; i < P_COUNT;) {
        if (grad_set_by_gemm(i)) {
            i++;
            continue;
        }
        int j = i; /* [i, j): a run of adjacent tensors to zero, their padding included */
        while (j < P_COUNT && !grad_set_by_gemm(j))
            j++;
        size_t end = j < P_COUNT ? m->params[j].offset : m->num_params;
        m->ops->memset0(param_at(m, m->grads, i, 0), (end - m->params[i].offset) * es);
        i = j;
    }
}

/* dlogits (R,Vp) -> g_h = dx (N,C), dwte (Vp rows) = dlogits^T x (R = 0: zeroed), dpb += (the
 * forward's loss op summed dpb already when fused, unless ops->db_in_gemm: then the GEMM does);
 * the padding columns of dlogits are 0, so the GEMM writes dwte's padding rows 0. R = N, or the
 * gathered predicted rows, whose dx goes back to their positions (zero elsewhere). */
static void backward_output(struct model *m, struct model_plan *pl, int fused) {
    const struct ops *ops = m->ops;
    int N = pl->B * pl->T, C = m->cfg.model.dim;
    void *W = m->weights, *G = m->grads;
    const void *x_last = pl->L ? pl->layers[pl->L - 1].h2 : pl->x0;
    if (pl->cls_rows)
        ops->matmul_backward(pl->gathered ? pl->g_t : pl->g_h, param_at(m, G, P_WTE, 0),
                             fused && !ops->db_in_gemm ? NULL : param_at(m, G, P_PB, 0), pl->logits,
                             pl->gathered ? pl->x_sel : x_last, param_at(m, W, P_WTE, 0),
                             pl->cls_rows, C, m->vocab_rows, 1);
    else /* no GEMM overwrites dwte: embed_backward adds into it */
        ops->memset0(param_at(m, G, P_WTE, 0), (size_t)m->vocab_rows * C * ops->storage_bytes);
    if (pl->gathered) /* the predicted rows' gradient back in place, zero elsewhere */
        ops->scatter_rows(pl->g_h, pl->g_t, pl->sel_index, N, pl->cls_rows, C);
    else if (!pl->cls_rows)
        ops->memset0(pl->g_h, (size_t)N * C * ops->storage_bytes);
}

/* embeddings: dropout and mask (both in the LayerNorm's backward pass: the mask commutes with
 * dropout), LayerNorm, lookup */
static void backward_embeddings(struct model *m, struct model_plan *pl, const struct batch *b,
                                uint64_t seed, uint64_t step) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    int T = b->T, N = b->B * T, C = mc->dim;
    void *W = m->weights, *G = m->grads;
    struct dropout_key k = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    struct ln_backward_extra ex = {pl->p_hidden, &k, NULL, NULL, NULL};
    ops->layernorm_backward(pl->g_r, param_at(m, G, P_LNE_W, 0), param_at(m, G, P_LNE_B, 0),
                            pl->g_h, pl->emb, param_at(m, W, P_LNE_W, 0), pl->mean0, pl->rstd0, N,
                            C, pl->lengths, T, &ex);
    int lang = m->params[P_WLANG].numel != 0;
    ops->embed_backward(param_at(m, G, P_WTE, 0), param_at(m, G, P_WPE, 0),
                        lang ? param_at(m, G, P_WLANG, 0) : NULL, pl->g_r, pl->ids, pl->langs,
                        pl->has_positions ? pl->positions : NULL, b->B, T, C, mc->vocab_size,
                        lang ? mc->n_langs : 0);
}

int model_backward(struct model *m, const struct batch *b, uint64_t seed, uint64_t step,
                   float loss_scale, double denom) {
    const struct ops *ops = m->ops;
    struct model_plan *pl = m->backend_state;
    if (!pl || pl->B != b->B || pl->T != b->T || !b->targets) {
        return xlmc_error("model_backward: needs a forward of the same (B,T) shape with "
                          "targets");
    }
    int N = b->B * b->T;
    float dscale = logits_dscale(loss_scale, denom);
    int fused = pl->logits_grad_scale != 0.0f;
    if (fused && pl->logits_grad_scale != dscale) {
        return xlmc_error("model_backward: loss scale %g / %g differs from "
                          "model_forward_train's",
                          (double)loss_scale, denom);
    }
    pl->logits_grad_scale = 0.0f; /* the logits hold a gradient: no second backward */
    if (!fused) {
        grads_zero_unset(m);
        if (!pl->have_targets) ops->to_device(pl->targets, b->targets, (size_t)N * sizeof(int32_t));
        ops->classifier(pl->losses, pl->logits, NULL, NULL,
                        pl->gathered ? pl->sel_targets : pl->targets, pl->cls_rows,
                        m->cfg.model.vocab_size, m->vocab_rows, dscale);
    }
    /* segments (segment()) end where grad_ready starts a layer's all-reduce */
    struct dropout_key k0 = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    for (int l = pl->L - 1; l >= -1; l--) {
        void *g = fused ? segment(m, pl, l >= 0 ? 2 * pl->L - 1 - l : 2 * pl->L) : NULL;
        do {
            if (g) ops->graph_begin(g, &k0, dscale);
            if (l == pl->L - 1) backward_output(m, pl, fused);
            if (l >= 0)
                backward_layer(m, pl, b, l, seed, step);
            else
                backward_embeddings(m, pl, b, seed, step);
        } while (g && ops->graph_end(g));
        if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, l);
    }
    ops->synchronize();
    return 0;
}
