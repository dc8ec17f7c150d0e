/* normalize.h — XLM's per-line cleanup before Moses: replace-unicode-punctuation (as in
 * Hugging Face's XLMTokenizer), Moses normalize-punctuation (sacremoses MosesPunctNormalizer
 * with its defaults: penn, quote/comma and number rules by language) and
 * remove-non-printing-char (drops every code point of general category C*). */
#ifndef XLMC_NORMALIZE_H
#define XLMC_NORMALIZE_H

#include "data/utf8.h"

enum text_lang { TEXT_EN = 0, TEXT_DE = 1 };

/* "en" -> TEXT_EN, "de" -> TEXT_DE, anything else -> -1 (rules exist for these two only). */
int text_lang_parse(const char *lang);

/* All three steps on *text, in place; *tmp is scratch. */
void normalize_line(enum text_lang lang, struct cpbuf *text, struct cpbuf *tmp);

#endif
