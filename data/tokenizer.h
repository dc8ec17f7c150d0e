/* tokenizer.h — XLM's text pipeline in C: punctuation replacement and normalization, removal
 * of non-printing characters, the Moses tokenizer (sacremoses rules for en and de, no
 * escaping), fastBPE encoding with "@@ " continuations, and XLM's dictionary
 * (<s>=0 </s>=1 <pad>=2 <unk>=3 <special0..9>=4..13, then the vocab file in order). */
#ifndef XLMC_TOKENIZER_H
#define XLMC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOK_BOS 0 /* <s> */
#define TOK_EOS 1 /* </s>: ends every sentence in a stream */
#define TOK_PAD 2 /* <pad> */
#define TOK_UNK 3 /* <unk> */
#define TOK_NUM_SPECIAL 14

struct tokenizer;

/* fastBPE pair: `codes` lines "a b count", `vocab` lines "word count". NULL after printing an
 * error naming the file, line and cause. */
struct tokenizer *tokenizer_load(const char *codes_path, const char *vocab_path);
/* Hugging Face pair: vocab.json (word -> id, ids as XLM's dictionary) and merges.txt. */
struct tokenizer *tokenizer_load_hf(const char *vocab_json_path, const char *merges_path);
void tokenizer_free(struct tokenizer *tok);

int tokenizer_vocab_size(const struct tokenizer *tok);           /* 64699 for xlm-ende */
const char *tokenizer_word(const struct tokenizer *tok, int id); /* NULL if out of range */
int tokenizer_id(const struct tokenizer *tok, const char *word); /* TOK_UNK if unknown */
/* XXH64 of the dictionary words in id order, each followed by '\n': what shards and
 * checkpoints record so that data and model agree. */
uint64_t tokenizer_vocab_hash(const struct tokenizer *tok);
/* XXH64 of the merges in rank order ("a b\n" each). */
uint64_t tokenizer_codes_hash(const struct tokenizer *tok);

/* A growable id array. */
struct id_buf {
    int32_t *ids;
    size_t n, cap;
};
void id_buf_push(struct id_buf *b, int32_t id);
void id_buf_free(struct id_buf *b);

/* Encode one line (no trailing newline needed) in language `lang` ("en", "de", ...):
 * appends its ids to out (no <s>, no </s>). Returns 0, or -1 with `why` filled (e.g. invalid
 * UTF-8 at byte N) and nothing appended. Thread-safe for concurrent calls on one tokenizer. */
int tokenizer_encode(const struct tokenizer *tok, const char *lang, const char *text, size_t len,
                     struct id_buf *out, char *why, size_t why_len);
/* The BPE pieces of one line joined by spaces ("Hel@@ lo world"), malloc'd; NULL + why. */
char *tokenizer_encode_pieces(const struct tokenizer *tok, const char *lang, const char *text,
                              size_t len, char *why, size_t why_len);
/* ids -> text: pieces joined, "@@ " removed, Moses-detokenized for lang; specials dropped
 * except <unk>. malloc'd. */
char *tokenizer_decode(const struct tokenizer *tok, const char *lang, const int32_t *ids, size_t n);

#endif
