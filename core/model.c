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
 * With causal=False every position attends to the row's real keys (t < lengths[b]).
 * The forward is in model_forward.c, the backward in model_backward.c (core/model_plan.h). */
#include "core/model.h"
#include "core/model_plan.h"
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
    m->grads = m->grad_arena = ops->alloc(off * ops->storage_bytes);
    m->grad_stride = off * ops->storage_bytes;
    m->grad_buffers = 1;
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

/* The recorded segments (they hold the buffers' addresses). */
static void plan_drop_graphs(struct model *m) {
    struct model_plan *pl = m->backend_state;
    if (!pl) return;
    for (size_t i = 0; pl->graphs && i < pl->n_graphs; i++)
        if (pl->graphs[i]) m->ops->graph_destroy(pl->graphs[i]);
    free(pl->graphs);
    pl->graphs = NULL;
    pl->n_graphs = 0;
}

static void plan_free(struct model *m) {
    struct model_plan *pl = m->backend_state;
    if (!pl) return;
    const struct ops *ops = m->ops;
    plan_drop_graphs(m);
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

int model_grad_buffers(struct model *m, int k) {
    const struct ops *ops = m->ops;
    if (k <= m->grad_buffers) return 0;
    if (k > OPS_GRAD_SOURCES_MAX)
        return xlmc_error("model_grad_buffers: %d gradient buffers, at most %d", k,
                          OPS_GRAD_SOURCES_MAX);
    /* 256-byte strides keep every buffer's tensors aligned as the first's */
    size_t stride = (m->num_params * ops->storage_bytes + 255) / 256 * 256;
    void *arena = ops->alloc(stride * (size_t)k);
    if (!arena)
        return xlmc_error("%s backend: cannot allocate %d gradient buffers of %zu bytes "
                          "(train.grad_buffers: fewer take less memory)",
                          ops->name, k, stride);
    plan_drop_graphs(m);
    ops->free(m->grad_arena);
    m->grad_arena = m->grads = arena;
    m->grad_stride = stride;
    m->grad_buffers = k;
    m->grad_buffer = 0;
    return 0;
}

void model_use_grad_buffer(struct model *m, int j) {
    m->grad_buffer = j;
    m->grads = (char *)m->grad_arena + (size_t)j * m->grad_stride;
}

void model_destroy(struct model *m) {
    plan_free(m);
    if (m->weights_are_master) {
        if (m->master) m->ops->free(m->master);
    } else {
        if (m->weights) m->ops->free(m->weights);
        free(m->master);
    }
    if (m->grad_arena) m->ops->free(m->grad_arena);
    m->weights = m->grads = m->grad_arena = NULL;
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

struct model_plan *model_reserve(struct model *m, int B, int T) {
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
