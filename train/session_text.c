/* session_text.c — options and checkpoint setup shared by eval, generate and fill-mask (see
 * session_text.h). */
#include "train/session_text.h"

#include "core/checkpoint.h"
#include "core/util.h"
#include "train/run_guard.h"
#include "train/session.h"

int session_take_opt(struct session_args *a, int opt, const char *arg) {
    switch (opt) {
    case SESSION_OPT_CKPT:
        a->ckpt = arg;
        return 1;
    case SESSION_OPT_LANG:
        a->lang = arg;
        return 1;
    case SESSION_OPT_DATA:
        a->data = arg;
        return 1;
    case SESSION_OPT_CODES:
        a->codes = arg;
        return 1;
    case SESSION_OPT_VOCAB:
        a->vocab = arg;
        return 1;
    case SESSION_OPT_DEVICE:
        a->device = arg;
        return 1;
    default:
        return 0;
    }
}

int session_text_open(const struct session_args *a, struct session_text *s,
                      int (*check)(const struct xlmc_config *cfg, const char *ckpt)) {
    char cpath[XLMC_PATH_MAX], vpath[XLMC_PATH_MAX];
    if (!a->codes && xlmc_path(cpath, sizeof cpath, "%s/codes", a->data)) return -1;
    if (!a->vocab && xlmc_path(vpath, sizeof vpath, "%s/vocab", a->data)) return -1;
    const char *codes = a->codes ? a->codes : cpath, *vocab = a->vocab ? a->vocab : vpath;
    if (!(s->tok = tokenizer_load(codes, vocab))) return -1;
    uint64_t ckpt_hash = 0, tok_hash = tokenizer_vocab_hash(s->tok);
    const struct ops *ops = NULL;
    if (ckpt_read_config(a->ckpt, &s->cfg, &ckpt_hash) || check_lang_ids(&s->cfg.model, a->ckpt))
        goto fail;
    if (ckpt_hash != tok_hash) {
        xlmc_error("%s is not the dictionary of checkpoint %s (vocabulary hash %016llx, the "
                   "checkpoint's %016llx)",
                   vocab, a->ckpt, (unsigned long long)tok_hash, (unsigned long long)ckpt_hash);
        goto fail;
    }
    if ((s->lang_id = config_lang_id(&s->cfg.model, a->lang)) < 0) {
        xlmc_error("--lang %s: the checkpoint's languages are not this one", a->lang);
        goto fail;
    }
    if (check && check(&s->cfg, a->ckpt)) goto fail;
    if (!(ops = session_ops(a->device ? a->device : "cpu", s->cfg.train.precision, 0))) goto fail;
    if (session_model_from_ckpt(a->ckpt, ops, &s->m, NULL)) goto fail;
    return 0;
fail:
    tokenizer_free(s->tok);
    s->tok = NULL;
    return -1;
}

void session_text_close(struct session_text *s) {
    model_destroy(&s->m);
    tokenizer_free(s->tok);
    s->tok = NULL;
}
