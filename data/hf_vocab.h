/* hf_vocab.h — fastBPE codes/vocab <-> Hugging Face vocab.json/merges.txt, ids kept.
 *
 * XLM's dictionary is <s> </s> <pad> <unk> <special0..9> (ids 0..13) followed by the fastBPE
 * vocab file in order. Hugging Face's XLMTokenizer spells the same words differently: a piece
 * that ends a word carries "</w>" ("lo" -> "lo</w>") and a piece that continues one loses
 * fastBPE's "@@" ("hel@@" -> "hel"); merges.txt holds the codes' pairs "a b" in rank order.
 * vocab.json has no counts, so the counts of both fastBPE files travel in a third file,
 * fastbpe_counts.txt ("codes N", N counts, "vocab M", M counts, verbatim), which makes the
 * conversion there and back byte-identical. Without it, counts are synthesized as strictly
 * decreasing numbers (fastBPE and XLM only use their order). */
#ifndef XLMC_HF_VOCAB_H
#define XLMC_HF_VOCAB_H

#define HFV_COUNTS_FILE "fastbpe_counts.txt"

/* Write dir/vocab.json, dir/merges.txt and dir/fastbpe_counts.txt from a fastBPE pair. 0, or
 * -1 after an error naming the file and line; nothing half-written is left. */
int hfv_from_fastbpe(const char *codes_path, const char *vocab_path, const char *dir);

/* Write codes_out and vocab_out (fastBPE) from dir's vocab.json and merges.txt (and its
 * fastbpe_counts.txt when present). *synthesized is set to 1 when counts were made up. */
int hfv_to_fastbpe(const char *dir, const char *codes_out, const char *vocab_out, int *synthesized);

#endif
