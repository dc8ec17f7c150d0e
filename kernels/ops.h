/* ops.h — the one interface between the model (core/) and the compute backends.
 *
 * Every non-matmul op of the XLM causal LM has a forward and a backward here; the CPU backend
 * (kernels/cpu/, the reference) and the CUDA backend (kernels/cuda/) each fill one
 * `struct ops` table. core/ calls only through this table and never includes a CUDA header.
 *
 * Storage types. Two kinds of buffers cross this interface:
 *   - `float *`  : fp32 everywhere, on every backend: master weights, Adam moments,
 *                  accumulated gradients, per-row losses, statistics (LayerNorm mean/rstd).
 *   - `void *`   : "storage" tensors in the backend's storage type `ops->storage_bytes`:
 *                  the weights copy used by forward/backward, activations and per-micro-batch
 *                  gradients. The CPU backend stores float (in fp16 precision it rounds every
 *                  storage write to the nearest IEEE half, so it computes what the GPU stores);
 *                  the CUDA backend stores __half in fp16 precision and float in fp32.
 *   core/ never dereferences a storage pointer; it offsets them with ops_at().
 * All pointers are device pointers of the backend (host memory for the CPU backend).
 * Integer inputs (token ids, languages, targets, lengths) are int32 device buffers.
 *
 * Accumulation convention: ops that produce a parameter gradient ADD into it (`+=`), so one
 * zeroing per micro-batch serves the tensors that several ops (or none) write; ops that produce
 * an activation gradient OVERWRITE it unless the comment says `+=`. The one exception: the
 * matmul backwards' weight gradient dw, which dw_set != 0 OVERWRITES (what `+=` onto a zeroed dw
 * gives, bit for bit: the GEMM's beta 0), so that the weight matrices, each written by exactly
 * one GEMM per micro-batch, need no zeroing pass; dw_set == 0 adds. Their db always adds.
 *
 * Shapes use B (batch rows), T (sequence length), C (model dim), NH (heads), HS = C/NH,
 * F (FFN dim), V (vocabulary), P (max positions), NL (languages), N = B*T.
 * Padding is on the right: row b has lengths[b] real positions, 0 <= lengths[b] <= T.
 */
#ifndef XLMC_OPS_H
#define XLMC_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ops_precision { OPS_FP32 = 0, OPS_FP16 = 1 };

/* Where a dropout mask comes from. Masks are drawn from Philox-4x32-10 (kernels/philox.h)
 * keyed by (seed, step) and countered by (global row, tensor id, element within the row), so
 * the mask of a sequence does not depend on how the global batch is split over ranks and
 * micro-batches, and both backends draw the same bits. */
struct dropout_key {
    uint64_t seed;   /* the run's seed */
    uint64_t step;   /* optimizer step (0-based) */
    uint32_t row0;   /* global index, within the step's global batch, of this call's row 0 */
    uint32_t tensor; /* which dropout site: see DROPOUT_TENSOR_* */
};
/* Dropout sites: embeddings, then per layer l: attention probabilities, attention output,
 * FFN output. */
#define DROPOUT_TENSOR_EMB 0u
#define DROPOUT_TENSOR_ATTN_PROBS(l) (1u + 3u * (uint32_t)(l))
#define DROPOUT_TENSOR_ATTN_OUT(l) (2u + 3u * (uint32_t)(l))
#define DROPOUT_TENSOR_FFN_OUT(l) (3u + 3u * (uint32_t)(l))

/* What a LayerNorm backward may also do in its own pass over the rows (layernorm_backward's
 * `extra`; NULL: none of it). A pre-LN block's LayerNorm backward reads and writes the rows
 * that the residual branch's dropout backward and the next linear layer's bias gradient would
 * otherwise each read again in a launch of their own. The masks are those of `dropout` on the
 * (N/T, T, C) tensor: row n is position n % T of global row key->row0 + n / T. */
struct ln_backward_extra {
    float p; /* dropout probability of the masks below (0: none) */
    /* non-NULL (and p > 0): dout is taken as dropout(dout) under this key, rounded to storage
     * as `dropout` stores it, without dout being written (the embeddings' dropout, which the
     * forward applies after their LayerNorm) */
    const struct dropout_key *dout_key;
    /* (N,C) or NULL: dropout(dinp) under dinp_key (p == 0: a copy of dinp), exactly what
     * dropout_residual(dinp_dropped, NULL, dinp, NULL, ...) stores: the gradient of the
     * residual branch whose output was dropped in the forward. Not dinp itself. */
    void *dinp_dropped;
    const struct dropout_key *dinp_key;
    /* (C) or NULL: += the column sums of dinp_dropped (of dinp when dinp_dropped is NULL):
     * the branch's last linear layer's bias gradient, one fp32 sum of the stored values per
     * column rounded once (what matmul_backward's db gives, in an order of the backend's) */
    void *dbias_next;
    /* dout_key and dinp_key, when both are given, differ only in their tensor */
};

/* Many gradient tensors into the fp32 accumulator in one call (one launch on a GPU): entry i
 * is acc (n) fp32 and grad (n) storage, and with sources > 1 further gradients of the same
 * shape at grad + j * stride bytes (j = 1 .. sources - 1: the trainer's gradient buffers,
 * one micro-batch each). first: acc = weight[0] * grad (weight 1: grad converted exactly, as
 * storage_to_f32), else acc += weight[0] * grad (as grad_accumulate); then acc += weight[j] *
 * source j in the order of j. The bits are those of one call per source, in that order; a GPU
 * reads and writes acc once. Passed to a kernel by value, so it holds at most
 * OPS_TENSOR_LIST_MAX entries (a caller with more splits them); entries must not overlap. */
#define OPS_TENSOR_LIST_MAX 24
#define OPS_GRAD_SOURCES_MAX 8
struct ops_tensor_list {
    int count;
    int first;
    int sources;   /* 0 or 1: grad alone */
    size_t stride; /* bytes from a source to the next */
    float weight[OPS_GRAD_SOURCES_MAX];
    struct {
        float *acc;
        const void *grad;
        size_t n;
    } t[OPS_TENSOR_LIST_MAX];
};

/* The op list: every compute op of the table, once. X(name, (parameters), (arguments)) is an
 * op without a result, XR(type, name, (parameters), (arguments)) one with; the arguments
 * repeat the parameter names so that a backend can forward a call. The list generates the
 * slots of struct ops below, the CPU tables (kernels/cpu/ops_cpu.c, which calls
 * cpu_<name>(ctx, arguments...)) and the CUDA tables (kernels/cuda/backend.cu, which takes
 * cuda_<name>_f32 / _f16 exported by CUDA_EXPORT_OP in the op's .cu file). Adding an op: one
 * entry here, cpu_<name> in kernels/cpu, cuda_<name> + CUDA_EXPORT_OP in kernels/cuda, and
 * one row of the op test table (train/selftest.c). */
#define OPS_LIST(X, XR)                                                                            \
    /* ---- storage <-> fp32 (fp32 master weights -> weights copy, grads -> accumulator) ---- */   \
    /* dst (n) storage */                                                                          \
    X(storage_from_f32, (void *dst, const float *src, size_t n), (dst, src, n))                    \
    /* dst (n) fp32 */                                                                             \
    X(storage_to_f32, (float *dst, const void *src, size_t n), (dst, src, n))                      \
    /* acc (n) += scale * grad (n); grad in storage type */                                        \
    X(grad_accumulate, (float *acc, const void *grad, size_t n, float scale),                      \
      (acc, grad, n, scale))                                                                       \
    /* every entry of l, see struct ops_tensor_list */                                             \
    X(grad_accumulate_list, (const struct ops_tensor_list *l), (l))                                \
                                                                                                   \
    /* ---- embeddings ----                                                                        \
     * out (B,T,C) = wte[ids] + wpe[pos] + (wlang ? wlang[langs] : 0)                              \
     * ids, langs, pos: (B,T) int32, pos NULL: position t of a row is t (TLM restarts positions    \
     * at the second sentence); wte (V,C), wpe (P,C), wlang (NL,C) or NULL. */                     \
    X(embed_forward,                                                                               \
      (void *out, const int32_t *ids, const int32_t *langs, const int32_t *pos, const void *wte,   \
       const void *wpe, const void *wlang, int B, int T, int C),                                   \
      (out, ids, langs, pos, wte, wpe, wlang, B, T, C))                                            \
    /* dwte (V,C) +=, dwpe (P,C) +=, dwlang (NL,C) += (or NULL), from dout (B,T,C); pos as in      \
     * the forward (with pos, every row of dwpe is one fp32 sum over its positions in ascending    \
     * order, rounded once). Deterministic: the result does not depend on thread scheduling. */    \
    X(embed_backward,                                                                              \
      (void *dwte, void *dwpe, void *dwlang, const void *dout, const int32_t *ids,                 \
       const int32_t *langs, const int32_t *pos, int B, int T, int C, int V, int NL),              \
      (dwte, dwpe, dwlang, dout, ids, langs, pos, B, T, C, V, NL))                                 \
                                                                                                   \
    /* ---- LayerNorm over the last dim, fp32 statistics ----                                      \
     * out (N,C), mean (N), rstd (N) fp32 saved for backward, inp (N,C), w (C), b (C).             \
     * lengths (N/T) int32 or NULL: rows n with n % T >= lengths[n / T] are padding, what          \
     * mask_padding zeroes: the forward writes 0 there (statistics still saved), the backward      \
     * takes their dout as 0 (dinp 0, nothing added to dw, db); the mask rides in the pass. */     \
    X(layernorm_forward,                                                                           \
      (void *out, float *mean, float *rstd, const void *inp, const void *w, const void *b, int N,  \
       int C, float eps, const int32_t *lengths, int T),                                           \
      (out, mean, rstd, inp, w, b, N, C, eps, lengths, T))                                         \
    /* r (B,T,C) = res + dropout(x + bias) exactly as dropout_residual stores it (r may be x),     \
     * then out, mean, rstd = layernorm_forward(r, w, b, B T, C, eps, lengths, T): the two ops     \
     * in one pass over the rows where the backend can (the residual branches of a layer). */      \
    X(residual_layernorm_forward,                                                                  \
      (void *out, float *mean, float *rstd, void *r, const void *res, const void *x,               \
       const void *bias, const void *w, const void *b, int B, int T, int C, float eps,             \
       const int32_t *lengths, float p, const struct dropout_key *key),                            \
      (out, mean, rstd, r, res, x, bias, w, b, B, T, C, eps, lengths, p, key))                     \
    /* dinp (N,C) overwritten, dw (C) +=, db (C) +=; extra (NULL: none): the dropouts and the      \
     * next layer's bias gradient done in the same pass, see struct ln_backward_extra */           \
    X(layernorm_backward,                                                                          \
      (void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w,           \
       const float *mean, const float *rstd, int N, int C, const int32_t *lengths, int T,          \
       const struct ln_backward_extra *extra),                                                     \
      (dinp, dw, db, dout, inp, w, mean, rstd, N, C, lengths, T, extra))                           \
                                                                                                   \
    /* ---- linear layers (matrix products: cblas on cpu, cuBLAS on cuda) ----                     \
     * out (N,OC) = inp (N,C) @ w(OC,C)^T + b (OC, or NULL). w is PyTorch's (out,in) layout. */    \
    X(matmul_forward,                                                                              \
      (void *out, const void *inp, const void *w, const void *b, int N, int C, int OC),            \
      (out, inp, w, b, N, C, OC))                                                                  \
    /* dinp (N,C) overwritten (skipped if NULL), dw (OC,C) += (dw_set: overwritten, N == 0         \
     * included: zeroed), db (OC) += (skipped if NULL) */                                          \
    X(matmul_backward,                                                                             \
      (void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, int N,    \
       int C, int OC, int dw_set),                                                                 \
      (dinp, dw, db, dout, inp, w, N, C, OC, dw_set))                                              \
    /* as matmul_backward, but dinp (N,C) += dout @ w, rounded once: the residual path's           \
     * gradient already in dinp takes the branch's without a separate add */                       \
    X(matmul_backward_add,                                                                         \
      (void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, int N,    \
       int C, int OC, int dw_set),                                                                 \
      (dinp, dw, db, dout, inp, w, N, C, OC, dw_set))                                              \
    /* A layer's q, k and v at once: for i < batch, out + i*out_stride (N,OC) = inp (N,C) @        \
     * (w + i*w_stride) (OC,C)^T + (b + i*w_stride) (OC; b NULL: none), each member computed as    \
     * matmul_forward computes it. Strides in elements; the biases share the weights' stride       \
     * (QW QB KW KB VW VB lie at one stride in the arena). One strided-batched GEMM on cuda. */    \
    X(matmul_forward_batched,                                                                      \
      (void *out, const void *inp, const void *w, const void *b, int N, int C, int OC, int batch,  \
       size_t w_stride, size_t out_stride),                                                        \
      (out, inp, w, b, N, C, OC, batch, w_stride, out_stride))                                     \
    /* its backward: for i = 0, 1, .. in order, what matmul_backward_add(dinp, dw + i*w_stride,    \
     * db + i*w_stride (db NULL: none), dout + i*out_stride, inp, w + i*w_stride, N, C, OC,        \
     * dw_set) does: dinp (N,C) += each member's input gradient, rounded after each. */            \
    X(matmul_backward_add_batched,                                                                 \
      (void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, int N,    \
       int C, int OC, int batch, size_t w_stride, size_t out_stride, int dw_set),                  \
      (dinp, dw, db, dout, inp, w, N, C, OC, batch, w_stride, out_stride, dw_set))                 \
                                                                                                   \
    /* ---- multi-head attention core, causal or bidirectional ----                                \
     * q, k, v (B,T,C) already projected (q NOT yet scaled); per head, P = softmax(q k^T /         \
     * sqrt(HS) + mask) in fp32, P' = dropout(P) with probability p (p == 0: none) keyed by        \
     * *key: the mask of sequence b uses global row key->row0 + b and element (h*T + t)*T + s;     \
     * out (B,T,C) = P' @ v. The mask: lengths NULL is causal (CLM): key s is visible to query t   \
     * iff s <= t. lengths (B) int32 is bidirectional (MLM, TLM): every query t of row b, padded   \
     * ones too, sees the keys s < max(1, min(lengths[b], T)) (a row of length 0 keeps key 0 so    \
     * that its softmax is defined; padded outputs are the caller's to zero). P and P' stay fp32   \
     * and are never stored: lse (B,NH,T) fp32 saves each query row's log-sum-exp of the scaled    \
     * scores, and the backward recomputes P from q, k and lse (FlashAttention). No backend        \
     * holds a (B,NH,T,T) tensor. */                                                               \
    X(attention_forward,                                                                           \
      (void *out, float *lse, const void *q, const void *k, const void *v, const int32_t *lengths, \
       int B, int T, int C, int NH, float p, const struct dropout_key *key),                       \
      (out, lse, q, k, v, lengths, B, T, C, NH, p, key))                                           \
    /* dq, dk, dv (B,T,C) overwritten, from dout (B,T,C); out (B,T,C) and lse (B,NH,T) as the      \
     * forward wrote them (sum_s P dP of a row is dout . out); lengths as in the forward (keys     \
     * no query sees get dk = dv = 0) */                                                           \
    X(attention_backward,                                                                          \
      (void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,          \
       const void *q, const void *k, const void *v, const int32_t *lengths, int B, int T, int C,   \
       int NH, float p, const struct dropout_key *key),                                            \
      (dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, C, NH, p, key))                         \
                                                                                                   \
    /* ---- pointwise ---- */                                                                      \
    /* out (n) = gelu(inp), erf form: 0.5 x (1 + erf(x / sqrt 2)) */                               \
    X(gelu_forward, (void *out, const void *inp, size_t n), (out, inp, n))                         \
    /* dinp (n) = dout * gelu'(inp) */                                                             \
    X(gelu_backward, (void *dinp, const void *inp, const void *dout, size_t n),                    \
      (dinp, inp, dout, n))                                                                        \
    /* The FFN's bias and GELU in one pass: out (N,F) = gelu(inp + bias), inp (N,F) the product    \
     * without its bias, bias (F); the sum is formed in fp32 and not stored. */                    \
    X(bias_gelu_forward, (void *out, const void *inp, const void *bias, int N, int F),             \
      (out, inp, bias, N, F))                                                                      \
    /* dinp (N,F) = dout * gelu'(inp + bias) (overwritten), dbias (F) += its column sums           \
     * (deterministic): the bias gradient that matmul_backward would otherwise sum. */             \
    X(bias_gelu_backward,                                                                          \
      (void *dinp, void *dbias, const void *dout, const void *inp, const void *bias, int N,        \
       int F),                                                                                     \
      (dinp, dbias, dout, inp, bias, N, F))                                                        \
    /* out (n) = a + b (out may alias a or b) */                                                   \
    X(residual_forward, (void *out, const void *a, const void *b, size_t n), (out, a, b, n))       \
    /* x (B,T,C): in place, keep with probability 1-p and scale by 1/(1-p); rows of T*C            \
     * elements; row r of this call is global row key->row0 + r. p == 0: no-op. Used for           \
     * forward and, on the gradient, for backward (the same mask). */                              \
    X(dropout, (void *x, int B, int T, int C, float p, const struct dropout_key *key),             \
      (x, B, T, C, p, key))                                                                        \
    /* out (B,T,C) = res + dropout(x + bias), the dropout drawn and rounded to storage as          \
     * `dropout` does it (p == 0: x + bias itself); res NULL: out = dropout(x + bias). bias (C)    \
     * or NULL (none): a linear layer's bias, added in fp32 to its product without the bias (one   \
     * rounding fewer, a pass over memory fewer). out may be x or res. One pass over memory for    \
     * what dropout then residual_forward do in two. */                                            \
    X(dropout_residual,                                                                            \
      (void *out, const void *res, const void *x, const void *bias, int B, int T, int C, float p,  \
       const struct dropout_key *key),                                                             \
      (out, res, x, bias, B, T, C, p, key))                                                        \
    /* x (B,T,C): zero the padded positions t >= lengths[b]; forward and backward alike. */        \
    X(mask_padding, (void *x, const int32_t *lengths, int B, int T, int C), (x, lengths, B, T, C)) \
                                                                                                   \
    /* ---- output layer and loss ----                                                             \
     * logits (N,Vp) already computed by matmul_forward, Vp >= V the row stride (the model pads    \
     * the vocabulary to a multiple of 128 for aligned GEMMs): columns V..Vp-1 are padding, left   \
     * out of the softmax and never read. bias (V) or NULL: first added to columns < V of every    \
     * row in place (a training forward leaves the output bias to this op rather than to           \
     * matmul_forward, which saves a pass over the (N,V) logits).                                  \
     * losses (N) fp32 = -log softmax(logits[:V])[t] for targets t >= 0, 0 where the target is     \
     * < 0 (ignored).                                                                              \
     * If dscale != 0 the logits are overwritten in place by their gradient                        \
     * dscale * (softmax - onehot) (rows with an ignored target and padding columns get 0); the    \
     * probabilities are never stored separately. dbias (V) or NULL, only with dscale != 0: +=     \
     * the column sums of that gradient, deterministic (what matmul_backward would give). */       \
    X(classifier,                                                                                  \
      (float *losses, void *logits, const void *bias, void *dbias, const int32_t *targets, int N,  \
       int V, int Vp, float dscale),                                                               \
      (losses, logits, bias, dbias, targets, N, V, Vp, dscale))                                    \
    /* The positions the classifier predicts (MLM, TLM: a few of each row): out (M,C) = rows       \
     * index[m] of inp (N,C), so that the vocabulary GEMM and the loss run on M rows only. */      \
    X(gather_rows, (void *out, const void *inp, const int32_t *index, int M, int C),               \
      (out, inp, index, M, C))                                                                     \
    /* Its backward: out (N,C) := 0, then row index[m] of out = row m of inp (M,C); the indices    \
     * are distinct. */                                                                            \
    X(scatter_rows, (void *out, const void *inp, const int32_t *index, int N, int M, int C),       \
      (out, inp, index, N, M, C))                                                                  \
    /* Evaluation without the logits on the host: correct (N) int32 = 1 where targets[n] >= 0      \
     * and the first maximum of row n of logits (N,Vp), columns < V (bias already added), is at    \
     * column targets[n], else 0. */                                                               \
    X(argmax_correct,                                                                              \
      (int32_t * correct, const void *logits, const int32_t *targets, int N, int V, int Vp),       \
      (correct, logits, targets, N, V, Vp))                                                        \
                                                                                                   \
    /* ---- optimizer side, all fp32 ----                                                          \
     * grad (n) *= inv_scale; returns 1 if any element of the result is inf or NaN, else 0. */     \
    XR(int, unscale_check, (float *grad, size_t n, float inv_scale), (grad, n, inv_scale))         \
    /* returns sum of grad[i]^2 in fp64 accumulation */                                            \
    XR(double, norm_squared, (const float *grad, size_t n), (grad, n))                             \
    /* Adam with decoupled weight decay (AdamW when wd > 0) on fp32 master (n), moments m, v,      \
     * using grad * grad_scale; t is the 1-based step for bias correction. Writes the storage      \
     * weights copy (n) (NULL: skip). decay_mask (n) or NULL: weight decay only where 1. */        \
    X(adam_update,                                                                                 \
      (float *master, void *copy, const float *grad, float *m, float *v, size_t n, float lr,       \
       float beta1, float beta2, float eps, float wd, float grad_scale, int t,                     \
       const uint8_t *decay_mask),                                                                 \
      (master, copy, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t, decay_mask))

/* (a, b, c) -> a, b, c: how a backend splices the list's parameters and arguments */
#define OPS_UNPAREN(...) __VA_ARGS__
#define OPS_SLOT(name, params, args) void(*name) params;
#define OPS_SLOT_R(type, name, params, args) type(*name) params;

struct ops {
    const char *name; /* "cpu" or "cuda", for messages */
    enum ops_precision precision;
    size_t storage_bytes; /* bytes per element of a storage tensor: 4, or 2 (cuda fp16) */
    int host_memory;      /* 1: the backend's buffers are host memory (CPU) */
    /* 1: matmul_backward's db for a wide output (many more output columns and rows than input
     * columns: the vocabulary) comes out of its weight-gradient GEMM, without a pass over dout
     * of its own (cuda); a training forward then leaves the output bias's gradient to it
     * rather than to the classifier. 0: the classifier's sums, in the pass that writes the
     * logits' gradient, cost less (cpu). */
    int db_in_gemm;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes); /* zeroed; NULL on failure */
    void (*free)(void *p);
    void (*to_device)(void *dst, const void *src_host, size_t bytes);
    void (*to_host)(void *dst_host, const void *src, size_t bytes);
    void (*memset0)(void *p, size_t bytes);
    void (*synchronize)(void);
    /* host buffers that to_host / to_device move at full speed: page-locked on a GPU (no
     * staging copy through a pageable bounce buffer), plain memory on the CPU. Zeroed; NULL
     * on failure (the caller may fall back to malloc) */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);

    /* ---- graphs: NULL where the backend has none (the CPU) ----
     * The op calls between graph_begin(g, ...) and graph_end(g) form a segment: recorded once
     * (a CUDA Graph) and then replayed with one launch, as long as the calls are the recorded
     * ones (the same ops, shapes and buffers; a changed call is detected, never replayed).
     * key (seed, step, row0; NULL: unchanged) and dscale (0: unchanged) are the values every
     * dropout key and the loss op's dscale inside the segment must have: they may change
     * from one replay to the next. No to_host, to_device, synchronize, alloc or free inside.
     * graph_end returns 1 when the recording no longer matched: nothing ran, and the caller
     * must run the segment again (which records it anew); 0 when it ran. */
    void *(*graph_create)(void); /* NULL: out of host memory */
    void (*graph_destroy)(void *g);
    void (*graph_begin)(void *g, const struct dropout_key *key, float dscale);
    int (*graph_end)(void *g);
    /* segments run eagerly (first use), recorded, replayed, and replays refused since start */
    void (*graph_counts)(long counts[4]);

    /* ---- compute: one slot per entry of OPS_LIST ---- */
    OPS_LIST(OPS_SLOT, OPS_SLOT_R)
};

/* The backends. ops_cpu() never fails. ops_cuda() returns NULL and fills why (if non-NULL,
 * why_len bytes) when the build has no CUDA or no GPU is usable. device: the local rank (or a
 * GPU index); the GPU opened is device modulo the number of visible GPUs, and a process opens
 * one GPU only (a later call must map to the same one). */
const struct ops *ops_cpu(enum ops_precision precision);
const struct ops *ops_cuda(enum ops_precision precision, int device, char *why, size_t why_len);

/* p + n storage elements */
static inline void *ops_at(const struct ops *ops, const void *p, size_t n) {
    return (char *)p + n * ops->storage_bytes;
}

#ifdef __cplusplus
}
#endif
#endif
