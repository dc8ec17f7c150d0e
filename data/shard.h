/* shard.h — one HDF5 token shard: the sentences of one language and split (schema in
 * data/README.md).
 *
 *   /tokens   uint16 (or uint32 when vocab_size > 65536), chunked + deflate: all sentences
 *             concatenated, no <s> and no </s>
 *   /offsets  int64 (n_sentences + 1): sentence i is tokens[offsets[i] : offsets[i+1]]
 *   root attributes: format_version, lang, lang_id, split, vocab_size, vocab_hash,
 *             codes_hash (uint64, plus *_hex strings), n_tokens, n_sentences, source_files
 *
 * A writer collects sentences in memory and writes the file under "<path>.tmp", renaming it
 * to <path> only after H5Fclose succeeded: a crash leaves at most a .tmp file, never a shard
 * that looks valid. */
#ifndef XLMC_SHARD_H
#define XLMC_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_FORMAT_VERSION 1

/* Language ids follow XLM's alphabetical convention for the en-de model. -1 if unknown. */
int shard_lang_id(const char *code);
const char *shard_lang_code(int lang_id);

struct shard_meta {
    int lang_id;
    char lang[8];
    char split[8];       /* train, valid, test */
    int64_t vocab_size;  /* words in the dictionary, 14 specials included */
    uint64_t vocab_hash; /* tokenizer_vocab_hash */
    uint64_t codes_hash; /* tokenizer_codes_hash */
    int64_t n_tokens, n_sentences;
};

struct shard_writer {
    struct shard_meta meta;
    int32_t *tokens;  /* (n_tokens) */
    int64_t *offsets; /* (n_sentences + 1) */
    size_t tok_cap, off_cap;
    char *sources; /* source file names, '\n'-separated */
};

void shard_writer_init(struct shard_writer *w, const struct shard_meta *meta);
/* Append one sentence (ids without </s>). */
void shard_writer_append(struct shard_writer *w, const int32_t *ids, size_t n);
/* Record a source file name (once each). */
void shard_writer_add_source(struct shard_writer *w, const char *name);
/* Write the collected sentences to `path` (via path.tmp) and empty the writer for the next
 * shard (metadata kept, counts reset). 0, or -1 after an error naming the file; no file is
 * left behind on error. */
int shard_writer_flush(struct shard_writer *w, const char *path);
void shard_writer_free(struct shard_writer *w);

/* A shard read whole into memory. */
struct shard {
    struct shard_meta meta;
    int32_t *tokens;  /* (n_tokens) */
    int64_t *offsets; /* (n_sentences + 1) */
};

/* Read and validate one shard: HDF5 readable, format version, attributes present,
 * offsets increasing from 0 to n_tokens, every id < meta.vocab_size. With want_hash != 0, a
 * shard of another vocabulary is refused. With tokens = 0 only the metadata is read.
 * 0, or -1 after printing an error naming the file. */
int shard_read(const char *path, uint64_t want_hash, int tokens, struct shard *s);
void shard_free(struct shard *s);

/* Shard files of `split` in dir ("<split>-*.h5"), sorted by name: a malloc'd array of
 * malloc'd paths (*n of them). 0, or -1 after an error naming the directory. */
int shard_list(const char *dir, const char *split, char ***paths, int *n);
void shard_list_free(char **paths, int n);

#endif
