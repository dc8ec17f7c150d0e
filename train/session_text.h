/* session_text.h — the setup the commands that run a checkpoint share (eval, generate,
 * fill-mask): their common options, and for the commands that read text, the tokenizer, the
 * checkpoint's config checked against it, the id of --lang and the model on --device. */
#ifndef XLMC_SESSION_TEXT_H
#define XLMC_SESSION_TEXT_H

#include "core/config.h"
#include "core/model.h"
#include "data/tokenizer.h"

/* The options shared by eval, generate and fill-mask; NULL when not given. */
struct session_args {
    const char *ckpt;   /* --ckpt FILE */
    const char *lang;   /* --lang L */
    const char *data;   /* --data DIR: DIR/codes and DIR/vocab, or the shards (eval) */
    const char *codes;  /* --codes FILE */
    const char *vocab;  /* --vocab FILE */
    const char *device; /* --device cpu|cuda (default "cpu") */
};

/* getopt_long values of the shared options, for the commands' `struct option` tables. */
enum {
    SESSION_OPT_CKPT = 'c',
    SESSION_OPT_LANG = 'l',
    SESSION_OPT_DATA = 'd',
    SESSION_OPT_CODES = 'C',
    SESSION_OPT_VOCAB = 'V',
    SESSION_OPT_DEVICE = 'D',
};

/* Store getopt's opt/optarg when opt is one of the shared options: 1 when taken, else 0. */
int session_take_opt(struct session_args *a, int opt, const char *arg);

/* A checkpoint opened to run on text. */
struct session_text {
    struct tokenizer *tok;
    struct xlmc_config cfg; /* the checkpoint's */
    int lang_id;            /* of --lang */
    struct model m;
};

/* Load the tokenizer of a->data (or a->codes, a->vocab), read the checkpoint's config, check
 * that the tokenizer is its dictionary and --lang one of its languages, call check (may be
 * NULL; nonzero refuses, after its own message) and create the model on a->device with the
 * checkpoint's weights. 0, or -1 after a message with nothing left open. */
int session_text_open(const struct session_args *a, struct session_text *s,
                      int (*check)(const struct xlmc_config *cfg, const char *ckpt));
void session_text_close(struct session_text *s);

#endif
