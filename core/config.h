/* config.h — the model and training configuration, read from configs/NAME.ini with libinih.
 *
 * Comments: whole lines starting with # or ;, inline after ' ;'.
 * Every key is listed in the table in config.c with its type, range and default; a key that
 * is not in the table, a value that does not parse or is out of range, and a missing
 * required key are errors naming the file, the line and the key. */
#ifndef XLMC_CONFIG_H
#define XLMC_CONFIG_H

#include <stddef.h>

#define XLMC_MAX_LANGS 8
#define XLMC_LANG_LEN 8
#define XLMC_MAX_OBJECTIVES 16

struct model_config {
    int vocab_size;    /* V, words in the dictionary including the 14 specials; 0 = take it
                        * from the data directory (train) or checkpoint */
    int dim;           /* C */
    int n_layers;      /* L */
    int n_heads;       /* NH, divides dim */
    int ffn_dim;       /* F, 4*dim in XLM */
    int max_positions; /* P, learned position embeddings */
    int n_langs;       /* NL */
    char langs[XLMC_MAX_LANGS][XLMC_LANG_LEN]; /* language codes by id: de=0, en=1 in XLM */
    float dropout;
    float attention_dropout;
    float layer_norm_eps;
    int use_lang_emb; /* add language embeddings (only when n_langs > 1) */
    int pad_index;    /* <pad> = 2 in XLM's dictionary */
};

enum schedule_kind { SCHEDULE_INVERSE_SQRT, SCHEDULE_COSINE, SCHEDULE_CONSTANT };
enum precision_kind { PRECISION_FP32, PRECISION_FP16 };

/* The objectives of Lample & Conneau (2019): causal LM, masked LM, translation LM (MLM on an
 * aligned sentence pair). */
enum objective_kind { OBJ_CLM, OBJ_MLM, OBJ_TLM };
struct objective {
    enum objective_kind kind;
    int lang;  /* language id; -1: every language, one drawn per block by lang_ratio */
    int lang2; /* TLM: the pair's second language (its sentence comes second); else -1 */
};

struct train_config {
    long batch_tokens; /* global tokens per optimizer step (all ranks, all micro-batches) */
    int micro_batch;   /* rows per rank per micro-batch */
    int seq_len;       /* T, stream length in tokens (windows are T+1 long) */
    float lr;          /* peak learning rate */
    float beta1, beta2, adam_eps;
    float weight_decay; /* decoupled (AdamW); 0 = plain Adam as in XLM */
    enum schedule_kind schedule;
    int warmup;           /* warm-up updates */
    float warmup_init_lr; /* inverse_sqrt starts here (XLM: 1e-7) */
    float min_lr;         /* cosine floor */
    long max_steps;       /* optimizer steps of the run */
    float clip_norm;      /* global gradient norm clip; 0 = off (XLM default 5) */
    enum precision_kind precision;
    float loss_scale_init; /* fp16: initial dynamic loss scale (2^16) */
    int loss_scale_growth; /* fp16: clean steps before the scale doubles (2000) */
    float loss_scale_min;  /* fp16: training stops with an error below this */
    unsigned long seed;
    float lang_ratio[XLMC_MAX_LANGS]; /* sampling weight per language id; all 0 = by size */
    int log_every, eval_every, checkpoint_every, keep_last;
    int eval_batches;       /* valid windows per language at each evaluation (0 = all) */
    int overlap_allreduce;  /* with several ranks, sum each layer's gradient while backward
                             * computes the layers below (default); false sums it in one call
                             * after backward: bit-identical updates, slower (for debugging) */
    int shard_optimizer;    /* with several ranks, each keeps and updates 1/world of the
                             * optimizer's work: its gradient shard is summed on it alone,
                             * it alone runs Adam there, then the updated weights are gathered
                             * (ZeRO stage 1 / Megatron's distributed optimizer); false
                             * (default): every rank updates everything */
    int cuda_graphs;        /* on a GPU, replay each micro-batch's kernels as recorded CUDA
                             * Graphs (default); false launches them one by one: bit-identical
                             * results, slower (for debugging) */
    int grad_buffers;       /* micro-batch gradients kept apart (one storage copy of the
                             * parameters each) and added into the fp32 accumulator by one pass
                             * (1 .. 8); 0 (default) = 8 on a GPU, 1 on the CPU backend; never
                             * more than a step's micro-batches. Bit-identical either way */
    float watchdog_seconds; /* a rank without progress this long (or 20 median steps, if
                             * longer) ends the job with exit 76; 0 = no watchdog */
    /* objectives = clm:de, clm:en, mlm:de, tlm:de-en, ...: one per optimizer step, taken in
     * turn (step s trains objectives[s % n_objectives]), as XLM alternates its objectives.
     * "clm" / "mlm" without a language mix the languages by lang_ratio. Default "clm". */
    char objectives_text[256];
    int n_objectives;
    struct objective objectives[XLMC_MAX_OBJECTIVES];
    float word_pred;              /* MLM/TLM: fraction of positions predicted (XLM: 0.15) */
    float word_mask_keep_rand[3]; /* of those: mask word, unchanged, random word (0.8,0.1,0.1) */
};

struct xlmc_config {
    struct model_config model;
    struct train_config train;
    char path[512]; /* the file it was read from */
};

/* Read and validate `path`. Returns 0, or -1 after printing an error. */
int config_load(const char *path, struct xlmc_config *cfg);
/* Parse from a string (same rules; `name` is used in messages). */
int config_parse_string(const char *text, const char *name, struct xlmc_config *cfg);
/* Write the config as INI text (what config_parse_string reads back). Returns a malloc'd
 * string. */
char *config_to_string(const struct xlmc_config *cfg);
/* 1 when the config trains a CLM objective (its model can generate text). */
int config_has_clm(const struct xlmc_config *cfg);
/* Language id of a code such as "de", or -1. */
int config_lang_id(const struct model_config *m, const char *code);

#endif
