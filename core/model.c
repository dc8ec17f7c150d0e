/* model.c — the XLM LM on top of the op table: parameter arena, HF names, init, and
 * forward/backward exactly as transformers' XLMWithLMHeadModel computes them, with causal=True
 * (CLM) or causal=False (MLM, TLM: struct batch's bidirectional, positions):
 *
 *   emb = wte[ids] + wpe[pos] (+ wlang[langs])  -> LayerNorm -> dropout -> zero padding  = x0
 *   per layer (post-LN):  r1 = x + dropout(out_lin(attn(q_lin x, k_lin x, v_lin x)))
 *                         h1 = LN1(r1)
 *                         r2 = h1 + dropout(lin2(gelu(lin1 h1))) (lin1's bias added in
 *                              the GELU's pass: bias_gelu)
 *                         x' = LN2(r2) with padded positions zeroed
 *   logits = xL @ wte^T + pb (no final LayerNorm; tied output projection)
 *   loss = mean cross-entropy over targets >= 0.
 * With causal=True HF's attention mask is the causal mask only: padded positions still attend
 * to earlier ones; their outputs are zeroed after each layer and their targets are ignored.
 * With causal=False every position attends to the row's real keys (t < lengths[b]). */
#include "core/model.h"
#include "core/util.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- parameters and names */

static const char *const HF_FORMAT[P_COUNT] = {
    [P_WTE] = "transformer.embeddings.weight",
    [P_WPE] = "transformer.position_embeddings.weight",
    [P_WLANG] = "transformer.lang_embeddings.weight",
    [P_LNE_W] = "transformer.layer_norm_emb.weight",
    [P_LNE_B] = "transformer.layer_norm_emb.bias",
    [P_QW] = "transformer.attentions.%d.q_lin.weight",
    [P_QB] = "transformer.attentions.%d.q_lin.bias",
    [P_KW] = "transformer.attentions.%d.k_lin.weight",
    [P_KB] = "transformer.attentions.%d.k_lin.bias",
    [P_VW] = "transformer.attentions.%d.v_lin.weight",
    [P_VB] = "transformer.attentions.%d.v_lin.bias",
    [P_OW] = "transformer.attentions.%d.out_lin.weight",
    [P_OB] = "transformer.attentions.%d.out_lin.bias",
    [P_LN1W] = "transformer.layer_norm1.%d.weight",
    [P_LN1B] = "transformer.layer_norm1.%d.bias",
    [P_F1W] = "transformer.ffns.%d.lin1.weight",
    [P_F1B] = "transformer.ffns.%d.lin1.bias",
    [P_F2W] = "transformer.ffns.%d.lin2.weight",
    [P_F2B] = "transformer.ffns.%d.lin2.bias",
    [P_LN2W] = "transformer.layer_norm2.%d.weight",
    [P_LN2B] = "transformer.layer_norm2.%d.bias",
    [P_PB] = "pred_layer.proj.bias",
};

static const char *const SHORT_NAME[P_COUNT] = {
    "wte", "wpe", "wlang", "lne_w", "lne_b", "qw",  "qb",  "kw",  "kb",   "vw",   "vb",
    "ow",  "ob",  "ln1w",  "ln1b",  "f1w",   "f1b", "f2w", "f2b", "ln2w", "ln2b", "pb",
};

static int model_has_lang_emb(const struct model_config *mc) {
    return mc->use_lang_emb && mc->n_langs > 1;
}

int model_create(struct model *m, const struct xlmc_config *cfg, const struct ops *ops) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->ops = ops;
    const struct model_config *mc = &cfg->model;
    int V = mc->vocab_size, C = mc->dim, L = mc->n_layers, F = mc->ffn_dim;
    int P = mc->max_positions, NL = model_has_lang_emb(mc) ? mc->n_langs : 0;
    if (V <= 0 || C <= 0 || L <= 0 || F <= 0 || P <= 0 || mc->n_heads <= 0 || C % mc->n_heads != 0)
        return xlmc_error("%s: model needs vocab_size, dim, n_layers, ffn_dim, max_positions > 0 "
                          "and n_heads dividing dim (got V=%d C=%d L=%d F=%d P=%d NH=%d)",
                          cfg->path, V, C, L, F, P, mc->n_heads);
    /* rows, cols (0 for a vector), layers, decay */
    const int spec[P_COUNT][4] = {
        [P_WTE] = {V, C, 1, 1},   [P_WPE] = {P, C, 1, 1},   [P_WLANG] = {NL, C, 1, 1},
        [P_LNE_W] = {C, 0, 1, 0}, [P_LNE_B] = {C, 0, 1, 0}, [P_QW] = {C, C, L, 1},
        [P_QB] = {C, 0, L, 0},    [P_KW] = {C, C, L, 1},    [P_KB] = {C, 0, L, 0},
        [P_VW] = {C, C, L, 1},    [P_VB] = {C, 0, L, 0},    [P_OW] = {C, C, L, 1},
        [P_OB] = {C, 0, L, 0},    [P_LN1W] = {C, 0, L, 0},  [P_LN1B] = {C, 0, L, 0},
        [P_F1W] = {F, C, L, 1},   [P_F1B] = {F, 0, L, 0},   [P_F2W] = {C, F, L, 1},
        [P_F2B] = {C, 0, L, 0},   [P_LN2W] = {C, 0, L, 0},  [P_LN2B] = {C, 0, L, 0},
        [P_PB] = {V, 0, 1, 0},
    };
    m->vocab_rows = (V + 127) / 128 * 128;
    size_t off = 0;
    for (int i = 0; i < P_COUNT; i++) {
        struct param_tensor *t = &m->params[i];
        t->name = SHORT_NAME[i];
        t->offset = off;
        t->layers = spec[i][2];
        t->ndim = spec[i][1] ? 2 : 1;
        t->shape[0] = spec[i][0];
        t->shape[1] = spec[i][1] ? spec[i][1] : 1;
        t->numel = (size_t)spec[i][0] * (size_t)t->shape[1] * (size_t)t->layers;
        t->decay = spec[i][3];
        off += t->numel;
        m->num_weights += t->numel;
        /* the vocabulary padding: zero from the (zeroing) allocations below, kept zero */
        if (i == P_WTE || i == P_PB) off += (size_t)(m->vocab_rows - V) * (size_t)t->shape[1];
    }
    m->num_params = off;
    m->weights_are_master =
        ops->host_memory && ops->precision == OPS_FP32 && ops->storage_bytes == sizeof(float);
    if (m->weights_are_master) {
        m->master = ops->alloc(off * sizeof(float)); /* host memory on this backend */
        m->weights = m->master;
    } else {
        m->master = calloc(off, sizeof(float));
        m->weights = ops->alloc(off * ops->storage_bytes);
    }
    m->grads = ops->alloc(off * ops->storage_bytes);
    if (!m->master || !m->weights || !m->grads) {
        model_destroy(m);
        return xlmc_error("%s backend: cannot allocate %zu parameters (3 copies)", ops->name, off);
    }
    return 0;
}

int model_param_hf_name(const struct model *m, int id, int layer, char *buf, size_t len) {
    if (id < 0 || id >= P_COUNT) return -1;
    int n = snprintf(buf, len, HF_FORMAT[id], layer); /* unstacked formats ignore it */
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int model_param_from_hf_name(const struct model *m, const char *name, int *id, int *layer) {
    if (strcmp(name, "pred_layer.proj.weight") == 0) {
        *id = P_WTE;
        *layer = 0;
        return 0;
    }
    char buf[128];
    for (int i = 0; i < P_COUNT; i++) {
        if (m->params[i].numel == 0) continue;
        for (int l = 0; l < m->params[i].layers; l++) {
            if (model_param_hf_name(m, i, l, buf, sizeof buf) == 0 && strcmp(buf, name) == 0) {
                *id = i;
                *layer = l;
                return 0;
            }
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- initialization */

/* Two uniforms in (0,1] for element i of tensor id, from Philox: independent of thread count
 * and of the other tensors' sizes. */
static void init_uniform2(uint64_t seed, int id, size_t i, double u[2]) {
    struct philox4 r = philox4x32_10((uint32_t)i, (uint32_t)(i >> 32), (uint32_t)id, 0x1417u,
                                     (uint32_t)seed, (uint32_t)(seed >> 32));
    u[0] = ((double)r.v[0] + 1.0) / 4294967296.0;
    u[1] = ((double)r.v[1] + 1.0) / 4294967296.0;
}

static void init_normal(float *w, size_t n, double std, uint64_t seed, int id) {
    for (size_t i = 0; i < n; i++) {
        double u[2];
        init_uniform2(seed, id, i, u);
        w[i] = (float)(std * sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
    }
}

static void init_uniform(float *w, size_t n, double bound, uint64_t seed, int id) {
    for (size_t i = 0; i < n; i++) {
        double u[2];
        init_uniform2(seed, id, i, u);
        w[i] = (float)(bound * (2.0 * u[0] - 1.0));
    }
}

/* Embeddings N(0, C^-0.5) with the <pad> row of wte zero (XLM's Embedding()); LayerNorm
 * weight 1, bias 0. Linear weights: PyTorch's nn.Linear default, which XLM uses,
 * kaiming_uniform(a=sqrt 5) = uniform(-1/sqrt(in), 1/sqrt(in)); all biases 0 (nn.Linear would
 * draw them too; zero biases are the usual choice and keep early training symmetric). */
int model_init_weights(struct model *m, uint64_t seed) {
    const struct model_config *mc = &m->cfg.model;
    for (int i = 0; i < P_COUNT; i++) {
        struct param_tensor *t = &m->params[i];
        float *w = m->master + t->offset;
        switch (i) {
        case P_WTE:
        case P_WPE:
        case P_WLANG:
            init_normal(w, t->numel, 1.0 / sqrt((double)mc->dim), seed, i);
            break;
        case P_LNE_W:
        case P_LN1W:
        case P_LN2W:
            for (size_t j = 0; j < t->numel; j++)
                w[j] = 1.0f;
            break;
        case P_QW:
        case P_KW:
        case P_VW:
        case P_OW:
        case P_F1W:
        case P_F2W:
            init_uniform(w, t->numel, 1.0 / sqrt((double)t->shape[1]), seed, i);
            break;
        default:
            memset(w, 0, t->numel * sizeof(float));
        }
    }
    if (mc->pad_index >= 0 && mc->pad_index < mc->vocab_size)
        memset(m->master + m->params[P_WTE].offset + (size_t)mc->pad_index * mc->dim, 0,
               (size_t)mc->dim * sizeof(float));
    return model_sync_weights(m);
}

int model_sync_weights(struct model *m) {
    const struct ops *ops = m->ops;
    if (m->weights_are_master) return 0;
    size_t bytes = m->num_params * sizeof(float);
    float *dev = ops->alloc(bytes); /* master is host memory; the conversion runs on device */
    if (!dev)
        return xlmc_error("%s backend: cannot allocate %zu bytes to sync weights", ops->name,
                          bytes);
    ops->to_device(dev, m->master, bytes);
    ops->storage_from_f32(m->weights, dev, m->num_params);
    ops->synchronize();
    ops->free(dev);
    return 0;
}

/* ---------------------------------------------------------------- activations */

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
                              * m->grads is zeroed but for the output bias's gradient */
    float p_hidden, p_attn;
};

static void plan_free(struct model *m) {
    struct model_plan *pl = m->backend_state;
    if (!pl) return;
    const struct ops *ops = m->ops;
    if (m->acts) ops->free(m->acts);
    if (pl->f32_block) ops->free(pl->f32_block);
    if (pl->int_block) ops->free(pl->int_block);
    if (pl->logits_f32) ops->free(pl->logits_f32);
    free(pl->losses_host);
    free(pl->sel_host);
    free(pl->layers);
    free(pl);
    m->backend_state = NULL;
    m->acts = NULL;
    m->acts_bytes = 0;
    m->acts_B = m->acts_T = 0;
}

void model_destroy(struct model *m) {
    plan_free(m);
    if (m->weights_are_master) {
        if (m->master) m->ops->free(m->master);
    } else {
        if (m->weights) m->ops->free(m->weights);
        free(m->master);
    }
    if (m->grads) m->ops->free(m->grads);
    m->weights = m->grads = NULL;
    m->master = NULL;
}

/* Plan every buffer for (B,T) once: three allocations (storage, fp32, int32) carved by offset.
 * First pass (base NULL) counts, second assigns. */
static size_t carve(char **cursor, size_t bytes) {
    size_t aligned = (bytes + 63) & ~(size_t)63;
    char *p = *cursor;
    *cursor += aligned;
    return (size_t)p;
}
#define CARVE(cur, n, elem) ((void *)carve(&(cur), (size_t)(n) * (elem)))

static void plan_layout(struct model *m, struct model_plan *pl, char *sbase, char *fbase,
                        char *ibase, size_t *sbytes, size_t *fbytes, size_t *ibytes) {
    const struct model_config *mc = &m->cfg.model;
    size_t es = m->ops->storage_bytes, B = (size_t)pl->B, T = (size_t)pl->T, N = B * T;
    size_t C = (size_t)mc->dim, F = (size_t)mc->ffn_dim;
    size_t NHT = B * (size_t)mc->n_heads * T;
    char *s = sbase, *f = fbase, *i = ibase;
    pl->emb = CARVE(s, N * C, es);
    pl->x0 = CARVE(s, N * C, es);
    pl->mean0 = CARVE(f, N, sizeof(float));
    pl->rstd0 = CARVE(f, N, sizeof(float));
    for (int l = 0; l < pl->L; l++) {
        struct layer_acts *a = &pl->layers[l];
        /* q, k, v one (3,N,C) block: the batched projections write them at one stride */
        a->q = CARVE(s, 3 * N * C, es);
        a->k = (char *)a->q + N * C * es;
        a->v = (char *)a->q + 2 * N * C * es;
        a->y = CARVE(s, N * C, es);
        a->r1 = CARVE(s, N * C, es);
        a->h1 = CARVE(s, N * C, es);
        a->f1 = CARVE(s, N * F, es);
        a->g = CARVE(s, N * F, es);
        a->r2 = CARVE(s, N * C, es);
        a->h2 = CARVE(s, N * C, es);
        a->mean1 = CARVE(f, N, sizeof(float));
        a->rstd1 = CARVE(f, N, sizeof(float));
        a->mean2 = CARVE(f, N, sizeof(float));
        a->rstd2 = CARVE(f, N, sizeof(float));
        a->lse = CARVE(f, NHT, sizeof(float));
    }
    pl->logits = CARVE(s, N * (size_t)m->vocab_rows, es); /* (N,Vp): padded for the GEMMs */
    pl->g_h = CARVE(s, N * C, es);
    pl->g_r = CARVE(s, N * C, es);
    pl->g_t = CARVE(s, N * C, es);
    pl->g_q = CARVE(s, 3 * N * C, es); /* (3,N,C) like q, k, v */
    pl->g_k = (char *)pl->g_q + N * C * es;
    pl->g_v = (char *)pl->g_q + 2 * N * C * es;
    pl->g_f = CARVE(s, N * F, es);
    pl->losses = CARVE(f, N, sizeof(float));
    pl->ids = CARVE(i, N, sizeof(int32_t));
    pl->langs = CARVE(i, N, sizeof(int32_t));
    pl->targets = CARVE(i, N, sizeof(int32_t));
    pl->lengths = CARVE(i, B, sizeof(int32_t));
    pl->positions = CARVE(i, N, sizeof(int32_t));
    pl->x_sel = CARVE(s, N * C, es);
    pl->sel_index = CARVE(i, N, sizeof(int32_t));
    pl->sel_targets = CARVE(i, N, sizeof(int32_t));
    pl->correct = CARVE(i, N, sizeof(int32_t));
    *sbytes = (size_t)(s - sbase);
    *fbytes = (size_t)(f - fbase);
    *ibytes = (size_t)(i - ibase);
}

static struct model_plan *model_reserve(struct model *m, int B, int T) {
    struct model_plan *pl = m->backend_state;
    if (pl && pl->B == B && pl->T == T) return pl;
    plan_free(m);
    pl = xcalloc(1, sizeof *pl);
    pl->B = B;
    pl->T = T;
    pl->L = m->cfg.model.n_layers;
    pl->layers = xcalloc((size_t)pl->L, sizeof *pl->layers);
    pl->losses_host = xcalloc((size_t)B * T + 1, sizeof(float));
    pl->sel_host = xcalloc(2 * (size_t)B * T + 1, sizeof(int32_t));
    size_t sb, fb, ib;
    plan_layout(m, pl, NULL, NULL, NULL, &sb, &fb, &ib);
    m->acts = m->ops->alloc(sb);
    pl->f32_block = m->ops->alloc(fb);
    pl->int_block = m->ops->alloc(ib);
    m->backend_state = pl;
    if (!m->acts || !pl->f32_block || !pl->int_block) {
        xlmc_error("%s backend: cannot allocate activations for B=%d T=%d (%zu bytes)",
                   m->ops->name, B, T, sb + fb + ib);
        plan_free(m);
        return NULL;
    }
    plan_layout(m, pl, m->acts, pl->f32_block, pl->int_block, &sb, &fb, &ib);
    m->acts_bytes = sb;
    m->acts_B = B;
    m->acts_T = T;
    return pl;
}

/* ---------------------------------------------------------------- forward */

/* storage pointer of tensor id, layer l, in the weights (or grads) arena */
static void *param_at(const struct model *m, void *arena, int id, int l) {
    const struct param_tensor *t = &m->params[id];
    return ops_at(m->ops, arena, t->offset + (size_t)l * (t->numel / (size_t)t->layers));
}

/* Elements from a layer's QW to its KW, and from KW to VW: the tensors are laid out
 * QW QB KW KB VW VB, each over all layers, so both strides are L*C*(C+1), and the biases'
 * the same. The batched q/k/v ops rely on it. */
static size_t qkv_stride(const struct model *m) {
    return m->params[P_KW].offset - m->params[P_QW].offset;
}

static struct dropout_key dkey(uint64_t seed, uint64_t step, uint32_t row0, uint32_t tensor) {
    struct dropout_key k = {seed, step, row0, tensor};
    return k;
}

/* The gradient scale of the logits: loss_scale / denom, 0 when nothing is counted. */
static float logits_dscale(float loss_scale, double denom) {
    return denom > 0.0 ? (float)((double)loss_scale / denom) : 0.0f;
}

/* model_forward; with dscale != 0 the loss op also overwrites the logits by their gradient */
static float forward(struct model *m, const struct batch *b, int training, uint64_t seed,
                     uint64_t step, float *logits_out, long *count, float dscale) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    int B = b->B, T = b->T, N = B * T, C = mc->dim, F = mc->ffn_dim, V = mc->vocab_size;
    int NH = mc->n_heads;
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
    void *W = m->weights;
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
    const int32_t *pos = pl->has_positions ? pl->positions : NULL;
    const int32_t *att_len = pl->bidirectional ? pl->lengths : NULL; /* NULL: causal */

    struct dropout_key k = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    ops->embed_forward(pl->emb, pl->ids, pl->langs, pos, param_at(m, W, P_WTE, 0),
                       param_at(m, W, P_WPE, 0),
                       m->params[P_WLANG].numel ? param_at(m, W, P_WLANG, 0) : NULL, B, T, C);
    /* padding zeroed in the LayerNorm's pass: dropout keeps the zeros */
    ops->layernorm_forward(pl->x0, pl->mean0, pl->rstd0, pl->emb, param_at(m, W, P_LNE_W, 0),
                           param_at(m, W, P_LNE_B, 0), N, C, mc->layer_norm_eps, pl->lengths, T);
    ops->dropout(pl->x0, B, T, C, pl->p_hidden, &k);
    void *x = pl->x0;
    for (int l = 0; l < pl->L; l++) {
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
    /* A training forward leaves the output bias to the loss op, which also sums its gradient
     * while each row of the logits' gradient is at hand: two passes over (N,V) fewer. */
    int fused = dscale != 0.0f && b->targets && !logits_out, Vp = m->vocab_rows;
    /* MLM/TLM predict a few positions per row: their rows only (not when all logits are
     * asked for) */
    int R = N;
    pl->gathered = b->targets && b->bidirectional && !logits_out;
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
    if (R)
        ops->matmul_forward(pl->logits, pl->gathered ? pl->x_sel : x, param_at(m, W, P_WTE, 0),
                            fused ? NULL : param_at(m, W, P_PB, 0), R, C, Vp);
    if (logits_out) {
        size_t bytes = (size_t)N * Vp * sizeof(float);
        if (!pl->logits_f32 && !(pl->logits_f32 = ops->alloc(bytes))) {
            xlmc_error("%s backend: cannot allocate %zu bytes for the logits", ops->name, bytes);
            return -1.0f;
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
    long counted = 0;
    double sum = 0.0;
    if (b->targets) {
        if (fused) ops->memset0(m->grads, m->num_params * ops->storage_bytes);
        ops->classifier(pl->losses, pl->logits, fused ? param_at(m, W, P_PB, 0) : NULL,
                        fused ? param_at(m, m->grads, P_PB, 0) : NULL,
                        pl->gathered ? pl->sel_targets : pl->targets, R, V, Vp,
                        fused ? dscale : 0.0f);
        pl->logits_grad_scale = fused ? dscale : 0.0f;
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

/* ---------------------------------------------------------------- backward */

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

int model_backward(struct model *m, const struct batch *b, uint64_t seed, uint64_t step,
                   float loss_scale, double denom) {
    const struct ops *ops = m->ops;
    const struct model_config *mc = &m->cfg.model;
    struct model_plan *pl = m->backend_state;
    if (!pl || pl->B != b->B || pl->T != b->T || !b->targets) {
        return xlmc_error("model_backward: needs a forward of the same (B,T) shape with "
                          "targets");
    }
    int B = b->B, T = b->T, N = B * T, C = mc->dim, F = mc->ffn_dim, V = mc->vocab_size;
    int NH = mc->n_heads;
    void *W = m->weights, *G = m->grads;
    float dscale = logits_dscale(loss_scale, denom);
    int fused = pl->logits_grad_scale != 0.0f;
    if (fused && pl->logits_grad_scale != dscale) {
        return xlmc_error("model_backward: loss scale %g / %g differs from "
                          "model_forward_train's",
                          (double)loss_scale, denom);
    }
    pl->logits_grad_scale = 0.0f; /* the logits hold a gradient: no second backward */
    if (!fused) {
        ops->memset0(G, m->num_params * ops->storage_bytes);
        if (!pl->have_targets) ops->to_device(pl->targets, b->targets, (size_t)N * sizeof(int32_t));
        ops->classifier(pl->losses, pl->logits, NULL, NULL,
                        pl->gathered ? pl->sel_targets : pl->targets, pl->cls_rows, V,
                        m->vocab_rows, dscale);
    }
    const void *x_last = pl->L ? pl->layers[pl->L - 1].h2 : pl->x0;
    /* dlogits (R,Vp) -> dx (N,C), dwte (Vp rows) += dlogits^T x, dpb += (the forward's loss op
     * summed dpb already when fused); the padding columns of dlogits are 0. R = N, or the
     * gathered predicted rows, whose dx goes back to their positions (zero elsewhere). */
    if (pl->cls_rows)
        ops->matmul_backward(pl->gathered ? pl->g_t : pl->g_h, param_at(m, G, P_WTE, 0),
                             fused ? NULL : param_at(m, G, P_PB, 0), pl->logits,
                             pl->gathered ? pl->x_sel : x_last, param_at(m, W, P_WTE, 0),
                             pl->cls_rows, C, m->vocab_rows);
    if (pl->gathered) /* the predicted rows' gradient back in place, zero elsewhere */
        ops->scatter_rows(pl->g_h, pl->g_t, pl->sel_index, N, pl->cls_rows, C);
    else if (!pl->cls_rows)
        ops->memset0(pl->g_h, (size_t)N * C * ops->storage_bytes);
    struct dropout_key k;
    for (int l = pl->L - 1; l >= 0; l--) {
        struct layer_acts *a = &pl->layers[l];
        const void *x = l ? pl->layers[l - 1].h2 : pl->x0;
        /* g_h = d h2 -> g_r = d r2; the forward's mask of h2 as a zero dout on the padding; in
         * the same pass the FFN branch's gradient d (dropout of g_r) and lin2's bias gradient */
        const void *d;
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_FFN_OUT(l));
        struct ln_backward_extra ex = branch_extra(pl, &k, param_at(m, G, P_F2B, l), pl->g_r, &d);
        ops->layernorm_backward(pl->g_r, param_at(m, G, P_LN2W, l), param_at(m, G, P_LN2B, l),
                                pl->g_h, a->r2, param_at(m, W, P_LN2W, l), a->mean2, a->rstd2, N, C,
                                pl->lengths, T, &ex);
        /* FFN branch: d lin2 out -> d g -> d f1 -> d h1 (branch part) */
        ops->matmul_backward(pl->g_f, param_at(m, G, P_F2W, l), NULL, d, a->g,
                             param_at(m, W, P_F2W, l), N, F, C);
        ops->bias_gelu_backward(pl->g_f, param_at(m, G, P_F1B, l), pl->g_f, a->f1,
                                param_at(m, W, P_F1B, l), N, F);
        /* g_r += lin1's input gradient: d h1 (the residual path's share already there) */
        ops->matmul_backward_add(pl->g_r, param_at(m, G, P_F1W, l), NULL, pl->g_f, a->h1,
                                 param_at(m, W, P_F1W, l), N, C, F);
        /* d r1, with the attention branch's gradient and the out-projection's bias gradient */
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_OUT(l));
        ex = branch_extra(pl, &k, param_at(m, G, P_OB, l), pl->g_h, &d);
        ops->layernorm_backward(pl->g_h, param_at(m, G, P_LN1W, l), param_at(m, G, P_LN1B, l),
                                pl->g_r, a->r1, param_at(m, W, P_LN1W, l), a->mean1, a->rstd1, N, C,
                                NULL, T, &ex);
        /* attention branch */
        ops->matmul_backward(pl->g_r, param_at(m, G, P_OW, l), NULL, d, a->y,
                             param_at(m, W, P_OW, l), N, C, C); /* d y */
        k = dkey(seed, step, b->row0, DROPOUT_TENSOR_ATTN_PROBS(l));
        ops->attention_backward(pl->g_q, pl->g_k, pl->g_v, pl->g_r, a->y, a->lse, a->q, a->k, a->v,
                                pl->bidirectional ? pl->lengths : NULL, B, T, C, NH, pl->p_attn,
                                &k);
        /* d x = d r1 + the three projections' input gradients, added onto g_h by the GEMMs */
        ops->matmul_backward_add_batched(pl->g_h, param_at(m, G, P_QW, l), param_at(m, G, P_QB, l),
                                         pl->g_q, x, param_at(m, W, P_QW, l), N, C, C, 3,
                                         qkv_stride(m), (size_t)N * C);
        if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, l);
    }
    /* embeddings: dropout and mask (both in the LayerNorm's backward pass: the mask commutes
     * with dropout), LayerNorm, lookup */
    k = dkey(seed, step, b->row0, DROPOUT_TENSOR_EMB);
    struct ln_backward_extra ex = {pl->p_hidden, &k, NULL, NULL, NULL};
    ops->layernorm_backward(pl->g_r, param_at(m, G, P_LNE_W, 0), param_at(m, G, P_LNE_B, 0),
                            pl->g_h, pl->emb, param_at(m, W, P_LNE_W, 0), pl->mean0, pl->rstd0, N,
                            C, pl->lengths, T, &ex);
    ops->embed_backward(param_at(m, G, P_WTE, 0), param_at(m, G, P_WPE, 0),
                        m->params[P_WLANG].numel ? param_at(m, G, P_WLANG, 0) : NULL, pl->g_r,
                        pl->ids, pl->langs, pl->has_positions ? pl->positions : NULL, B, T, C, V,
                        m->params[P_WLANG].numel ? mc->n_langs : 0);
    if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, -1);
    ops->synchronize();
    return 0;
}
