/* moses.h — the Moses tokenizer as sacremoses MosesTokenizer(lang).tokenize(text,
 * escape=False) runs it for en and de (no aggressive dash splits, no protected patterns),
 * and a Moses-style detokenizer for turning decoded tokens back into text. */
#ifndef XLMC_MOSES_H
#define XLMC_MOSES_H

#include "data/normalize.h"
#include "data/utf8.h"

/* Tokenize *t in place (*tmp is scratch). The result holds the tokens separated by single
 * spaces, except that a token boundary is any str.isspace() code point: split on those. */
void moses_tokenize(enum text_lang lang, struct cpbuf *t, struct cpbuf *tmp);

/* Join space-separated tokens into text the way Moses' detokenizer does for en/de: no space
 * before closing punctuation, none after opening brackets, "@-@" back to "-", English
 * contractions re-attached, straight double quotes paired. malloc'd. */
char *moses_detokenize(enum text_lang lang, const char *tokens);

/* Everything before BPE for one line: UTF-8 decode, normalize_line, moses_tokenize. The
 * result is left in *t (tokens split by isspace code points). Returns 0, or -1 with *bad_at
 * the byte offset of invalid UTF-8. */
int moses_pipeline(enum text_lang lang, const char *text, size_t len, struct cpbuf *t,
                   struct cpbuf *tmp, size_t *bad_at);
#endif
