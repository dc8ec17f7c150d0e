/* cmd_hf.c — `xlmc import-hf` and `xlmc export-hf`: Hugging Face XLM model directories
 * (config.json, model.safetensors, vocab.json, merges.txt) <-> an xlmc weights-only checkpoint
 * plus the fastBPE codes/vocab pair. No Python: safetensors and JSON are parsed here. */
#include "train/commands.h"

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/util.h"
#include "data/hf_vocab.h"
#include "data/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char IMPORT_USAGE[] =
    "usage: xlmc import-hf DIR --out OUTDIR [--objective clm|mlm]\n"
    "\n"
    "Imports a Hugging Face XLM model directory (config.json, model.safetensors with F32 or\n"
    "F16 tensors, vocab.json, merges.txt) into OUTDIR (created if needed):\n"
    "  OUTDIR/model.h5    weights-only xlmc checkpoint (for train --init-from, eval, generate)\n"
    "  OUTDIR/codes       fastBPE codes   } the vocabulary, for xlmc prep --codes/--vocab;\n"
    "  OUTDIR/vocab       fastBPE vocab   } ids equal the Hugging Face tokenizer's\n"
    "  OUTDIR/config.ini  the model's config with fine-tuning defaults in [train]: edit it\n"
    "                     and pass it to xlmc train --config together with --init-from\n"
    "Every tensor is checked by name, shape and dtype; all problems are listed.\n"
    "The objective (config.ini [train] objectives) is clm for a config saying causal: true.\n"
    "The released configs all say causal: false (or nothing), the causally trained xlm-clm-*\n"
    "models too, so for those the directory's name decides: a name containing \"mlm\" (as\n"
    "xlm-mlm-ende-1024) is imported as a masked LM (objectives = mlm, bidirectional), any\n"
    "other as a causal LM, with a note. --objective clm|mlm says it explicitly.\n";

static const char EXPORT_USAGE[] =
    "usage: xlmc export-hf CKPT --vocab-dir VDIR --out DIR\n"
    "\n"
    "Writes DIR (created if needed) for transformers' XLMWithLMHeadModel and XLMTokenizer:\n"
    "config.json (model_type xlm, causal true unless the checkpoint's config trains no clm\n"
    "objective), model.safetensors (F32, the output layer tied\n"
    "to the embeddings), vocab.json, merges.txt, tokenizer_config.json and fastbpe_counts.txt.\n"
    "VDIR holds the fastBPE `codes` and `vocab` the model was trained with (checked against the\n"
    "checkpoint's vocabulary hash).\n";

/* ---------------------------------------------------------------- import */

static int json_num(json_t *cfg, const char *key, double *out, int required, const char *path) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required) return xlmc_error("%s: missing key \"%s\"", path, key);
        return 0;
    }
    if (json_is_boolean(v))
        *out = json_is_true(v);
    else if (json_is_number(v))
        *out = json_number_value(v);
    else
        return xlmc_error("%s: \"%s\" is not a number", path, key);
    return 0;
}

/* config.json -> xlmc_config (with [train] defaults for fine-tuning). objective: "clm",
 * "mlm" or NULL (from causal and the directory's name, see IMPORT_USAGE). */
static int import_config(const char *dir, const char *objective, struct xlmc_config *cfg,
                         char **ini_out) {
    char path[XLMC_PATH_MAX];
    if (xlmc_path(path, sizeof path, "%s/config.json", dir)) return -1;
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return xlmc_error("%s:%d: cannot read a JSON object (%s)", path, err.line,
                          j ? "wrong type" : err.text);
    }
    int rc = -1;
    json_t *mt = json_object_get(j, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "xlm"))) {
        xlmc_error("%s: model_type is not \"xlm\"; xlmc imports XLM models only", path);
        goto done;
    }
    double V = 0, C = 0, L = 0, NH = 0, P = 512, NL = 1, lang_emb = 1, drop = 0.1, adrop = 0.1;
    double eps = 1e-12, causal = 0, sinus = 0, gelu = 1, asm_ = 0, pad = 2;
    if (json_num(j, "vocab_size", &V, 1, path) || json_num(j, "emb_dim", &C, 1, path) ||
        json_num(j, "n_layers", &L, 1, path) || json_num(j, "n_heads", &NH, 1, path) ||
        json_num(j, "max_position_embeddings", &P, 0, path) ||
        json_num(j, "n_langs", &NL, 0, path) || json_num(j, "use_lang_emb", &lang_emb, 0, path) ||
        json_num(j, "dropout", &drop, 0, path) ||
        json_num(j, "attention_dropout", &adrop, 0, path) ||
        json_num(j, "layer_norm_eps", &eps, 0, path) || json_num(j, "causal", &causal, 0, path) ||
        json_num(j, "sinusoidal_embeddings", &sinus, 0, path) ||
        json_num(j, "gelu_activation", &gelu, 0, path) || json_num(j, "asm", &asm_, 0, path) ||
        json_num(j, "pad_index", &pad, 0, path))
        goto done;
    if (sinus || !gelu || asm_) {
        xlmc_error("%s: %s is not supported by xlmc (learned positions, GELU, full softmax)", path,
                   sinus   ? "sinusoidal_embeddings"
                   : !gelu ? "ReLU activation"
                           : "asm");
        goto done;
    }
    if (NL > XLMC_MAX_LANGS) {
        xlmc_error("%s: n_langs = %g; xlmc supports up to %d", path, NL, XLMC_MAX_LANGS);
        goto done;
    }
    char name[XLMC_PATH_MAX]; /* the directory's own name, trailing slashes dropped */
    snprintf(name, sizeof name, "%s", dir);
    for (size_t n = strlen(name); n > 1 && name[n - 1] == '/'; n--)
        name[n - 1] = 0;
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    int mlm = objective ? !strcmp(objective, "mlm") : !causal && strstr(base, "mlm") != NULL;
    if (!objective && !causal && mlm)
        printf("note: %s says causal: false and the directory's name says mlm: imported as a "
               "masked LM (objectives = mlm; --objective clm imports it as causal)\n",
               path);
    else if (!objective && !causal)
        printf("note: %s says causal: false; xlmc imports every XLM as a causal LM (the released "
               "xlm-clm-* models were trained causally although their configs say otherwise) "
               "unless the directory's name says mlm or --objective mlm is given\n",
               path);
    /* lang2id: language code by id, carried into [model] langs */
    char langs[XLMC_MAX_LANGS][XLMC_LANG_LEN] = {{0}};
    json_t *l2i = json_object_get(j, "lang2id");
    if (json_is_object(l2i)) {
        const char *code;
        json_t *idv;
        json_object_foreach(l2i, code, idv) {
            json_int_t id = json_is_integer(idv) ? json_integer_value(idv) : -1;
            if (id < 0 || id >= (json_int_t)NL || strlen(code) >= XLMC_LANG_LEN || langs[id][0]) {
                xlmc_error("%s: lang2id[\"%s\"] is not a unique id below n_langs = %g (or the "
                           "code is longer than %d)",
                           path, code, NL, XLMC_LANG_LEN - 1);
                goto done;
            }
            snprintf(langs[id], XLMC_LANG_LEN, "%s", code);
        }
    }
    char lang_list[XLMC_MAX_LANGS * XLMC_LANG_LEN + 8] = "";
    for (int i = 0; i < (int)NL; i++) {
        if (!langs[i][0]) { /* no lang2id entry: a placeholder code "l<id>" */
            langs[i][0] = 'l';
            langs[i][1] = (char)('0' + i);
        }
        strcat(lang_list, i ? "," : "");
        strcat(lang_list, langs[i]);
    }
    double seq = P - 1 < 256 ? P - 1 : 256; /* tokens per row; windows are seq + 1 */
    char *ini = xmalloc(8192);
    snprintf(ini, 8192,
             "# imported from %s by xlmc import-hf\n"
             "[model]\nvocab_size = %.0f\ndim = %.0f\nn_layers = %.0f\nn_heads = %.0f\n"
             "ffn_dim = %.0f\nmax_positions = %.0f\nn_langs = %.0f\nlangs = %s\n"
             "dropout = %g\nattention_dropout = %g\nlayer_norm_eps = %g\nuse_lang_emb = %s\n"
             "pad_index = %.0f\n\n"
             "# fine-tuning defaults: adjust to the corpus and the machines\n"
             "[train]\nbatch_tokens = %.0f\nmicro_batch = 8\nseq_len = %.0f\nlr = 0.0001\n"
             "schedule = inverse_sqrt\nwarmup = 500\nmax_steps = 10000\nclip_norm = 5\n"
             "precision = fp32\nseed = 1\nlog_every = 10\neval_every = 500\n"
             "checkpoint_every = 500\nkeep_last = 3\neval_batches = 50\nobjectives = %s\n",
             path, V, C, L, NH, 4 * C, P, NL, lang_list, drop, adrop, eps,
             lang_emb ? "true" : "false", pad, 32 * seq, seq, mlm ? "mlm" : "clm");
    if (config_parse_string(ini, path, cfg)) {
        free(ini);
        goto done;
    }
    *ini_out = ini;
    rc = 0;
done:
    json_decref(j);
    return rc;
}

/* Copy every tensor of the safetensors file into m->master, listing every problem. */
static int import_weights(struct model *m, const struct safetensors *st) {
    unsigned char *seen = xcalloc(m->num_params ? m->num_params : 1, 1);
    int problems = 0;
    char name[160];
    const struct st_tensor *tied = NULL;
    for (size_t i = 0; i < st->n; i++) {
        const struct st_tensor *t = &st->t[i];
        int id, layer;
        if (!strcmp(t->name, "pred_layer.proj.weight")) {
            tied = t;
            continue;
        }
        if (!strcmp(t->name, "transformer.position_ids")) continue; /* a buffer, not weights */
        if (model_param_from_hf_name(m, t->name, &id, &layer)) {
            xlmc_error("%s: unexpected tensor '%s' (not part of this config's model)", st->path,
                       t->name);
            problems++;
            continue;
        }
        const struct param_tensor *p = &m->params[id];
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] &&
                 (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            xlmc_error("%s: tensor '%s' has %d dims [%lld, %lld], the config needs %s[%d, %d]",
                       st->path, t->name, t->ndim, t->ndim > 0 ? (long long)t->shape[0] : 0LL,
                       t->ndim > 1 ? (long long)t->shape[1] : 0LL, p->ndim == 1 ? "1 dim " : "",
                       p->shape[0], p->ndim > 1 ? p->shape[1] : 1);
            problems++;
            continue;
        }
        size_t per = p->numel / (size_t)p->layers, at = p->offset + (size_t)layer * per;
        st_read_f32(st, t, m->master + at);
        seen[at] = 1;
    }
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &m->params[id];
        for (int l = 0; p->numel && l < p->layers; l++) {
            if (seen[p->offset + (size_t)l * (p->numel / (size_t)p->layers)]) continue;
            model_param_hf_name(m, id, l, name, sizeof name);
            xlmc_error("%s: missing tensor '%s' (shape [%d%s%.0d])", st->path, name, p->shape[0],
                       p->ndim > 1 ? ", " : "", p->ndim > 1 ? p->shape[1] : 0);
            problems++;
        }
    }
    free(seen);
    if (!problems && tied) {
        /* xlmc ties the output layer to the embeddings; an untied one cannot be imported */
        const struct param_tensor *p = &m->params[P_WTE];
        int same = tied->ndim == 2 && tied->numel == p->numel;
        if (same) {
            float *w = xmalloc(p->numel * sizeof(float));
            st_read_f32(st, tied, w);
            same = !memcmp(w, m->master + p->offset, p->numel * sizeof(float));
            free(w);
        }
        if (!same) {
            xlmc_error("%s: pred_layer.proj.weight differs from transformer.embeddings.weight; "
                       "xlmc ties them",
                       st->path);
            problems++;
        }
    }
    if (problems)
        return xlmc_error("%s: %d problem%s with the weights (listed above); nothing written",
                          st->path, problems, problems > 1 ? "s" : "");
    return 0;
}

/* mkdir -p; *created (may be NULL) is set when the last component did not exist. */
static int make_dir(const char *dir, int *created) {
    char path[XLMC_PATH_MAX];
    if (xlmc_path(path, sizeof path, "%s", dir)) return -1;
    for (char *p = path + 1;; p++) {
        int last = *p == '\0';
        if (*p != '/' && !last) continue;
        *p = '\0';
        int rc = mkdir(path, 0777);
        if (rc != 0 && errno != EEXIST)
            return xlmc_error("cannot create directory %s: %s", path, strerror(errno));
        if (last) {
            if (created) *created = rc == 0;
            return 0;
        }
        *p = '/';
    }
}

/* Remove what a failed export wrote into dir (and dir itself when export created it). */
static void export_cleanup(const char *dir, int created) {
    static const char *const files[] = {"config.json", "model.safetensors",     "vocab.json",
                                        "merges.txt",  "tokenizer_config.json", HFV_COUNTS_FILE};
    char path[XLMC_PATH_MAX];
    for (size_t i = 0; i < XLMC_ARRAY_LEN(files); i++)
        if (!xlmc_path(path, sizeof path, "%s/%s", dir, files[i])) unlink(path);
    if (created) rmdir(dir);
}

static int write_text(const char *path, const char *text) {
    char tmp[XLMC_PATH_MAX];
    if (xlmc_path(tmp, sizeof tmp, "%s.tmp", path)) return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return xlmc_error("cannot create %s: %s", tmp, strerror(errno));
    int ok = fputs(text, f) >= 0;
    if (fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) == 0) return 0;
    unlink(tmp);
    return xlmc_error("cannot write %s", path);
}

static int hf_parse_args(int argc, char **argv, const char *usage, const char **pos,
                         const char **out, const char **vocab_dir, const char **objective) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 1;
        } else if (!strcmp(a, "--out") || (vocab_dir && !strcmp(a, "--vocab-dir"))) {
            if (i + 1 >= argc) return xlmc_error("%s: option %s needs a value", argv[0], a);
            *(!strcmp(a, "--out") ? out : vocab_dir) = argv[++i];
        } else if (objective && !strcmp(a, "--objective")) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "clm") && strcmp(argv[i + 1], "mlm")))
                return xlmc_error("%s: --objective needs clm or mlm", argv[0]);
            *objective = argv[++i];
        } else if (a[0] != '-' && !*pos) {
            *pos = a;
        } else {
            fputs(usage, stderr);
            return xlmc_error("%s: unexpected argument '%s'", argv[0], a);
        }
    }
    if (!*pos || !*out || (vocab_dir && !*vocab_dir)) {
        fputs(usage, stderr);
        return xlmc_error("%s: missing arguments", argv[0]);
    }
    return 0;
}

int cmd_import_hf(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *objective = NULL;
    int a = hf_parse_args(argc, argv, IMPORT_USAGE, &dir, &out, NULL, &objective);
    if (a) return a > 0 ? 0 : 2;
    struct xlmc_config cfg;
    char *ini = NULL;
    if (import_config(dir, objective, &cfg, &ini)) return 1;
    char path[XLMC_PATH_MAX], codes[XLMC_PATH_MAX], vocab[XLMC_PATH_MAX], ckpt[XLMC_PATH_MAX];
    char cfg_path[XLMC_PATH_MAX];
    if (xlmc_path(path, sizeof path, "%s/model.safetensors", dir) ||
        xlmc_path(codes, sizeof codes, "%s/codes", out) ||
        xlmc_path(vocab, sizeof vocab, "%s/vocab", out) ||
        xlmc_path(ckpt, sizeof ckpt, "%s/model.h5", out) ||
        xlmc_path(cfg_path, sizeof cfg_path, "%s/config.ini", out)) {
        free(ini);
        return 1;
    }
    struct model m;
    struct safetensors st;
    struct tokenizer *tok = NULL;
    int rc = 1, synthesized = 0, created = 0;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) {
        free(ini);
        return 1;
    }
    if (st_open(&st, path)) goto out_model;
    if (import_weights(&m, &st) || make_dir(out, &created)) goto out_st;
    if (hfv_to_fastbpe(dir, codes, vocab, &synthesized)) goto out_st;
    if (!(tok = tokenizer_load(codes, vocab))) goto out_files;
    if (tokenizer_vocab_size(tok) != cfg.model.vocab_size) {
        xlmc_error("%s/vocab.json has %d words but config.json says vocab_size = %d", dir,
                   tokenizer_vocab_size(tok), cfg.model.vocab_size);
        goto out_files;
    }
    if (model_sync_weights(&m) || ckpt_save(ckpt, &m, NULL, NULL, tokenizer_vocab_hash(tok)) ||
        write_text(cfg_path, ini))
        goto out_files;
    if (synthesized)
        printf("note: %s has no %s: the counts in %s and %s are synthesized (only their order "
               "matters)\n",
               dir, HFV_COUNTS_FILE, codes, vocab);
    char langs[XLMC_MAX_LANGS * XLMC_LANG_LEN + 8] = "";
    for (int i = 0; i < cfg.model.n_langs; i++) {
        strcat(langs, i ? "," : "");
        strcat(langs, cfg.model.langs[i]);
    }
    printf("imported %s: %d layers, dim %d, %d heads, vocab %d, langs %s (by id) -> %s, %s, "
           "%s, %s\n",
           dir, cfg.model.n_layers, cfg.model.dim, cfg.model.n_heads, cfg.model.vocab_size, langs,
           ckpt, codes, vocab, cfg_path);
    rc = 0;
out_files:
    if (rc) {
        unlink(codes);
        unlink(vocab);
        unlink(ckpt);
        if (created) rmdir(out);
    }
    tokenizer_free(tok);
out_st:
    st_close(&st);
out_model:
    model_destroy(&m);
    free(ini);
    return rc;
}

/* ---------------------------------------------------------------- export */

static int export_config(const char *dir, const struct xlmc_config *cfg) {
    const struct model_config *mc = &cfg->model;
    json_t *c = json_object(), *arch = json_array(), *l2i = json_object(), *i2l = json_object();
    json_array_append_new(arch, json_string("XLMWithLMHeadModel"));
    for (int i = 0; i < mc->n_langs; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        json_object_set_new(l2i, mc->langs[i], json_integer(i));
        json_object_set_new(i2l, key, json_string(mc->langs[i]));
    }
    json_object_set_new(c, "architectures", arch);
    json_object_set_new(c, "model_type", json_string("xlm"));
    json_object_set_new(c, "vocab_size", json_integer(mc->vocab_size));
    json_object_set_new(c, "emb_dim", json_integer(mc->dim));
    json_object_set_new(c, "n_layers", json_integer(mc->n_layers));
    json_object_set_new(c, "n_heads", json_integer(mc->n_heads));
    json_object_set_new(c, "max_position_embeddings", json_integer(mc->max_positions));
    json_object_set_new(c, "n_langs", json_integer(mc->n_langs));
    json_object_set_new(c, "use_lang_emb", json_boolean(mc->use_lang_emb));
    json_object_set_new(c, "dropout", json_real(mc->dropout));
    json_object_set_new(c, "attention_dropout", json_real(mc->attention_dropout));
    json_object_set_new(c, "layer_norm_eps", json_real(mc->layer_norm_eps));
    /* a model trained with no CLM objective is a masked LM: bidirectional in transformers */
    json_object_set_new(c, "causal", json_boolean(config_has_clm(cfg)));
    json_object_set_new(c, "gelu_activation", json_true());
    json_object_set_new(c, "sinusoidal_embeddings", json_false());
    json_object_set_new(c, "asm", json_false());
    json_object_set_new(c, "is_encoder", json_true());
    json_object_set_new(c, "embed_init_std", json_real(1.0 / sqrt((double)mc->dim)));
    json_object_set_new(c, "init_std", json_real(0.02));
    json_object_set_new(c, "bos_index", json_integer(TOK_BOS));
    json_object_set_new(c, "eos_index", json_integer(TOK_EOS));
    json_object_set_new(c, "pad_index", json_integer(mc->pad_index));
    json_object_set_new(c, "unk_index", json_integer(TOK_UNK));
    json_object_set_new(c, "mask_index", json_integer(5));
    json_object_set_new(c, "bos_token_id", json_integer(TOK_BOS));
    json_object_set_new(c, "eos_token_id", json_integer(TOK_EOS));
    json_object_set_new(c, "pad_token_id", json_integer(mc->pad_index));
    json_object_set_new(c, "lang_id", json_integer(0));
    json_object_set_new(c, "tie_word_embeddings", json_true());
    json_object_set_new(c, "lang2id", json_deep_copy(l2i));
    json_object_set_new(c, "id2lang", json_deep_copy(i2l));
    char path[XLMC_PATH_MAX] = "", tmp[XLMC_PATH_MAX] = "";
    int rc = xlmc_path(path, sizeof path, "%s/config.json", dir) ||
             xlmc_path(tmp, sizeof tmp, "%s.tmp", path);
    if (!rc) rc = json_dump_file(c, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    if (rc || rename(tmp, path)) {
        unlink(tmp);
        json_decref(l2i);
        json_decref(i2l);
        return xlmc_error("cannot write %s", path);
    }
    /* tokenizer_config.json: xlmc's pipeline never lowercases nor strips accents (the released
     * en-de vocabulary is cased), so transformers must not either or the ids differ */
    json_t *t = json_object();
    json_object_set_new(t, "tokenizer_class", json_string("XLMTokenizer"));
    json_object_set_new(t, "do_lowercase_and_remove_accent", json_false());
    json_object_set_new(t, "model_max_length", json_integer(mc->max_positions));
    json_object_set_new(t, "lang2id", l2i);
    json_object_set_new(t, "id2lang", i2l);
    rc = xlmc_path(path, sizeof path, "%s/tokenizer_config.json", dir) ||
         xlmc_path(tmp, sizeof tmp, "%s.tmp", path);
    if (!rc) rc = json_dump_file(t, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(t);
    if (rc || rename(tmp, path)) {
        unlink(tmp);
        return xlmc_error("cannot write %s", path);
    }
    return 0;
}

static int export_weights(const char *dir, const struct model *m) {
    struct st_out *t = xcalloc((size_t)P_COUNT * (size_t)(m->cfg.model.n_layers + 1), sizeof *t);
    char(*names)[128] = xcalloc((size_t)P_COUNT * (size_t)(m->cfg.model.n_layers + 1), 128);
    size_t n = 0;
    int rc = 0;
    /* HF's order: everything by name within the state dict does not matter to the loader;
     * pred_layer.proj.weight is left out because transformers ties it to the embeddings
     * (what save_pretrained itself writes). */
    for (int id = 0; id < P_COUNT && !rc; id++) {
        const struct param_tensor *p = &m->params[id];
        for (int l = 0; p->numel && l < p->layers; l++) {
            if (model_param_hf_name(m, id, l, names[n], sizeof names[n])) rc = -1;
            t[n].name = names[n];
            t[n].ndim = p->ndim;
            t[n].shape[0] = p->shape[0];
            t[n].shape[1] = p->shape[1];
            t[n].data = m->master + p->offset + (size_t)l * (p->numel / (size_t)p->layers);
            n++;
        }
    }
    char path[XLMC_PATH_MAX];
    if (!rc) rc = xlmc_path(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = st_write(path, t, n);
    free(t);
    free(names);
    return rc;
}

int cmd_export_hf(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *vdir = NULL;
    int a = hf_parse_args(argc, argv, EXPORT_USAGE, &ckpt, &out, &vdir, NULL);
    if (a) return a > 0 ? 0 : 2;
    struct xlmc_config cfg;
    uint64_t hash = 0;
    if (ckpt_read_config(ckpt, &cfg, &hash)) return 1;
    if (cfg.model.ffn_dim != 4 * cfg.model.dim)
        return xlmc_error("%s: ffn_dim = %d but transformers' XLM fixes it to 4 * dim = %d", ckpt,
                          cfg.model.ffn_dim, 4 * cfg.model.dim),
               1;
    char codes[XLMC_PATH_MAX], vocab[XLMC_PATH_MAX];
    if (xlmc_path(codes, sizeof codes, "%s/codes", vdir) ||
        xlmc_path(vocab, sizeof vocab, "%s/vocab", vdir))
        return 1;
    struct tokenizer *tok = tokenizer_load(codes, vocab);
    if (!tok) return 1;
    int rc = 1;
    if (tokenizer_vocab_size(tok) != cfg.model.vocab_size) {
        xlmc_error("%s: %d words, but %s has vocab_size %d", vocab, tokenizer_vocab_size(tok), ckpt,
                   cfg.model.vocab_size);
        goto out_tok;
    }
    if (hash && tokenizer_vocab_hash(tok) != hash) {
        xlmc_error("%s is not the vocabulary %s was trained with (hash differs)", vocab, ckpt);
        goto out_tok;
    }
    struct model m;
    if (model_create(&m, &cfg, ops_cpu(OPS_FP32))) goto out_tok;
    int created = 0;
    if (ckpt_load(ckpt, &m, NULL, NULL) || make_dir(out, &created)) goto out_model;
    if (export_weights(out, &m) || export_config(out, &cfg) ||
        hfv_from_fastbpe(codes, vocab, out)) {
        export_cleanup(out, created);
        goto out_model;
    }
    printf("exported %s -> %s (config.json, model.safetensors, vocab.json, merges.txt, "
           "tokenizer_config.json)\n",
           ckpt, out);
    rc = 0;
out_model:
    model_destroy(&m);
out_tok:
    tokenizer_free(tok);
    return rc;
}
