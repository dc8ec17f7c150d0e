/* shard.h — one HDF5 token shard: the sentences of one language and split (schema in
 * data/README.md).
 *
 * Version 2 (written by prep):
 *   /tokens     uint16 (or uint32 when vocab_size > 65536), contiguous and uncompressed: every
 *               sentence followed by </s>, so a window of the loader's stream is one read at
 *               the dataset's file offset (pread; the page cache is shared by a node's ranks)
 *   /offsets    int64 (n_sentences + 1), chunked + deflate: sentence i with its </s> is
 *               tokens[offsets[i] : offsets[i+1]]
 *   /checksums  uint64 (ceil(len(tokens) / SHARD_SUM_TOKENS)), contiguous: XXH64 (seed 0) of
 *               the little-endian bytes of each block of SHARD_SUM_TOKENS tokens
 * Version 1 (still read): /tokens chunked + deflate without </s>, offsets into it, no sums.
 *   root attributes: format_version, lang, lang_id, split, vocab_size, vocab_hash,
 *             codes_hash (uint64, plus *_hex strings), n_tokens (sentence tokens, </s> not
 *             counted), n_sentences, source_files; version 2 adds checksum_tokens
 *
 * A writer collects sentences in memory and writes the file under "<path>.tmp", renaming it
 * to <path> only after H5Fclose succeeded: a crash leaves at most a .tmp file, never a shard
 * that looks valid. */
#ifndef XLMC_SHARD_H
#define XLMC_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_FORMAT_VERSION 2
#define SHARD_SUM_TOKENS                                                                           \
    1024 /* tokens per checksum block (version 2): what a first read                               \
          * of a block costs beyond the window itself */

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
    int version; /* format_version read (1 or 2) */
    /* Sentence-pair shards (`xlmc prep --pair`, data/pairs.h): sentence 2i is pair i's side in
     * `lang`, sentence 2i+1 its side in lang2. lang2[0] == '\0' in a monolingual shard. */
    char lang2[8];
    int lang2_id;
};

struct shard_writer {
    struct shard_meta meta;
    int32_t *tokens;  /* (n_tokens) */
    int64_t *offsets; /* (n_sentences + 1) */
    size_t tok_cap, off_cap;
    char *sources; /* source file names, '\n'-separated */
    int version;   /* format written by flush: SHARD_FORMAT_VERSION, or 1 (tests, old tools) */
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

/* A shard read whole into memory, in version 1's form whatever the file's version. */
struct shard {
    struct shard_meta meta;
    int32_t *tokens;  /* (n_tokens) sentences without </s> */
    int64_t *offsets; /* (n_sentences + 1) into tokens */
    char *sources;    /* source_files, '\n'-separated (NULL when tokens = 0) */
};

/* Read and validate one shard: HDF5 readable, format version, attributes present,
 * offsets increasing from 0 to n_tokens, every id < meta.vocab_size, and in version 2 every
 * </s> in place and every checksum block intact (a full verification pass). With want_hash
 * != 0, a shard of another vocabulary is refused. With tokens = 0 only the metadata is read.
 * 0, or -1 after printing an error naming the file. */
int shard_read(const char *path, uint64_t want_hash, int tokens, struct shard *s);
/* shard_read for either kind: pairs = 0 refuses a sentence-pair shard (naming it), pairs = 1
 * refuses a monolingual one. shard_read(...) is shard_read_kind(..., 0, s). */
int shard_read_kind(const char *path, uint64_t want_hash, int tokens, int pairs, struct shard *s);
void shard_free(struct shard *s);

/* Rewrite a version-1 shard as version 2 in place: the new file is written as path.tmp and
 * renamed over path, so a crash leaves the old shard or the new one, never half of one.
 * 0 when upgraded, 1 when it already was version 2, -1 after an error naming the file. */
int shard_upgrade(const char *path);

/* Shard files of `split` in dir ("<split>-*.h5"), sorted by name: a malloc'd array of
 * malloc'd paths (*n of them). 0, or -1 after an error naming the directory. */
int shard_list(const char *dir, const char *split, char ***paths, int *n);
void shard_list_free(char **paths, int n);

/* ---- version 2 in place (data/shard_stream.c) ---- */

/* The token stream of a version-2 shard, read where it lies in the file: /tokens and
 * /checksums are contiguous, so a region is a pread at H5Dget_offset. The HDF5 file is open
 * only while shard_stream_open reads the attributes and the layout; the data descriptor
 * (read-only) is opened at the first read, so a process opens only the shards it reads.
 * Each checksum block is verified (and its ids checked against the vocabulary) the first
 * time this process reads from it. Not thread-safe: one reader at a time. */
struct shard_stream {
    char *path;
    int fd;                   /* -1 until the first read */
    int elem;                 /* bytes per id: 2 or 4 */
    int64_t n;                /* ids in /tokens, </s> included */
    uint64_t tok_at, sums_at; /* file offsets of /tokens and /checksums */
    int64_t block, n_sums;    /* tokens per checksum block (checksum_tokens), blocks */
    int64_t vocab_limit;      /* ids must be below this */
    uint8_t *verified;        /* (ceil(n_sums / 8)) bitmap of verified blocks */
    uint8_t *scratch;         /* one block of raw bytes: block scratch_block (-1: none) */
    int64_t scratch_block;
};

/* Open version-2 shard `path`: meta as shard_read(tokens = 0) fills it; *s ready to read.
 * vocab_limit: ids >= min(it, the shard's vocab_size) are errors (<= 0: the shard's). A
 * version-1 shard returns 1 (meta filled, *s unused) so the caller can read it whole.
 * 0, 1, or -1 after an error naming the file. */
int shard_stream_open(const char *path, uint64_t want_hash, int64_t vocab_limit,
                      struct shard_meta *meta, struct shard_stream *s);
/* The same for a sentence-pair shard (a monolingual one is refused, naming it). */
int shard_stream_open_pairs(const char *path, uint64_t want_hash, int64_t vocab_limit,
                            struct shard_meta *meta, struct shard_stream *s);
/* ids pos .. pos+n-1 of /tokens into out. 0, or -1 after an error naming the file and the
 * block (a failed checksum, an id outside the vocabulary, a read error). */
int shard_stream_read(struct shard_stream *s, int64_t pos, int64_t n, int32_t *out);
/* Tell the kernel that ids pos .. pos+n-1 will be read soon (readahead; a hint only). */
void shard_stream_willneed(struct shard_stream *s, int64_t pos, int64_t n);
void shard_stream_close(struct shard_stream *s);

#endif
