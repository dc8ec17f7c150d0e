#!/usr/bin/env python3
"""Encoding throughput of `xlmc encode --ids` against Hugging Face XLMTokenizer (with the same
normalization, Moses and BPE steps, built from the same codes/vocab, lowercasing off, the
line's language passed to Moses) on the same text in the same run: the whole English and
German Debian Administrator's Handbook. Prints MB/s of each and the ratio; also checks that
the ids agree. usage: tokenize_bench.py XLMC SHARED_DIR [REPEAT]"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                "tokenizer"))
import make_tok_reference as ref  # noqa: E402
from transformers import XLMTokenizer  # noqa: E402


def main():
    xlmc, shared = sys.argv[1], sys.argv[2]
    # The handbook holds ~0.5 MB of unique en+de lines; repeated 4 times by default so that
    # xlmc's one-off loading of codes/vocab (~0.05 s) does not dominate. Both tokenizers see
    # the same repeated text and both cache BPE per word.
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if not os.path.isdir(ref.HANDBOOK):
        print("bench tokenize: %s missing (apt-get install debian-handbook): skipped" % ref.HANDBOOK)
        sys.exit(77)
    ref.PER_LANG = 10 ** 9  # every line
    with tempfile.TemporaryDirectory() as tmp:
        vj, mt = ref.hf_files(shared, tmp)
        hf = XLMTokenizer(vj, mt, do_lowercase_and_remove_accent=False)
        codes = os.path.join(shared, "xlm-ende", "codes")
        vocab = os.path.join(shared, "xlm-ende", "vocab")
        total_bytes, t_hf, t_x, mismatches = 0, 0.0, 0.0, 0
        for lang, folder in (("en", "en-US"), ("de", "de-DE")):
            lines = ref.handbook_lines(os.path.join(ref.HANDBOOK, folder)) * repeat
            path = os.path.join(tmp, lang + ".txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            nbytes = os.path.getsize(path)
            total_bytes += nbytes
            t0 = time.perf_counter()
            want = [hf.convert_tokens_to_ids(hf._tokenize(l, lang=lang)) for l in lines]
            t_hf += time.perf_counter() - t0
            t0 = time.perf_counter()
            out = subprocess.run([xlmc, "encode", "--codes", codes, "--vocab", vocab,
                                  "--lang", lang, "--ids", path],
                                 check=True, capture_output=True, text=True).stdout
            t_x += time.perf_counter() - t0  # includes loading codes/vocab and process start
            got = [[int(x) for x in l.split()] for l in out.split("\n")[:-1]]
            mismatches += sum(a != b for a, b in zip(got, want)) + abs(len(got) - len(want))
            print("%s: %d lines, %.2f MB (unique lines x %d)" % (lang, len(lines), nbytes / 1e6,
                                                                 repeat))
        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        t0 = time.perf_counter()
        subprocess.run([xlmc, "encode", "--codes", codes, "--vocab", vocab, "--lang", "en", empty],
                       check=True)
        t_load = time.perf_counter() - t0
    mb = total_bytes / 1e6
    print("Hugging Face XLMTokenizer: %.3f MB/s (%.2f s)" % (mb / t_hf, t_hf))
    print("xlmc encode:               %.3f MB/s (%.2f s, one process per language)" % (mb / t_x, t_x))
    print("xlmc without process start and loading (%.3f s each): %.3f MB/s"
          % (t_load, mb / max(t_x - 2 * t_load, 1e-9)))
    # Like for like: HF's tokenizer is built before its clock starts, so the headline ratio
    # leaves xlmc's process start and dictionary load out too; the end-to-end one keeps them.
    t_enc = max(t_x - 2 * t_load, 1e-9)
    print("ratio xlmc / HF: %.1fx encoding throughput (%.1fx end to end, counting xlmc's "
          "process start and load but not HF's)   lines whose ids differ: %d"
          % (t_hf / t_enc, t_hf / t_x, mismatches))
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
