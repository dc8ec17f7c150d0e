#!/usr/bin/env python3
"""Expected output of test_bpe_learn_matches_fastbpe, made by fastBPE itself.

1. Input: bpe_learn_input.txt, ~5000 words of English and German handbook text (written by
   this script from the HTML if missing; committed).
2. Downloads the fastBPE sdist from PyPI (pip download --no-binary :all: --no-deps fastBPE),
   compiles its own command-line driver fastBPE/main.cc with g++, and runs
       fast learnbpe 200 input > bpe_learn_codes
       fast applybpe applied input bpe_learn_codes ; fast getvocab applied > bpe_learn_vocab
   fastBPE's code is used here only; nothing of it is committed.
3. The same for `bpe-learn --lang en`: bpe_learn_raw_en.txt (raw handbook text) run through
   XLM's pre-tokenization by the reference (replace_unicode_punct, sacremoses
   MosesPunctNormalizer, remove_non_printing_char, MosesTokenizer escape=False), then
   fastBPE learnbpe 100 -> bpe_learn_lang_codes, applybpe + getvocab -> bpe_learn_lang_vocab.
4. Prints the bucket counts libstdc++'s unordered_map grows through (STL_BUCKETS in
   data/bpe_learn.c): fastBPE's tie-breaking depends on that map's iteration order.
Usage: python3 make_bpe_learn_reference.py   (from any directory; needs g++ and network)
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_tok_reference as ref  # noqa: E402
from sacremoses import MosesPunctNormalizer, MosesTokenizer  # noqa: E402
from transformers.models.xlm.tokenization_xlm import (  # noqa: E402
    remove_non_printing_char, replace_unicode_punct)

PROBE = r"""
#include <cstdio>
#include <unordered_map>
int main() {
  std::__detail::_Prime_rehash_policy p;
  unsigned long b = p._M_next_bkt(12);
  for (int i = 0; i < 29; i++) { printf("%luULL, ", b); b = p._M_next_bkt(2 * b); }
  printf("\n");
}
"""


def fast_learn(fast, tmp, inp, n, codes_out, vocab_out):
    with open(codes_out, "w") as f:
        subprocess.run([fast, "learnbpe", str(n), inp], stdout=f, check=True)
    applied = os.path.join(tmp, "applied")
    subprocess.run([fast, "applybpe", applied, inp, codes_out], check=True)
    with open(vocab_out, "w") as f:
        subprocess.run([fast, "getvocab", applied], stdout=f, check=True)


def main():
    inp = os.path.join(HERE, "bpe_learn_input.txt")
    if not os.path.exists(inp):
        lines = []
        for folder, words in (("en-US", 2500), ("de-DE", 2500)):
            n = 0
            for l in ref.handbook_lines(os.path.join(ref.HANDBOOK, folder)):
                if n >= words:
                    break
                lines.append(l)
                n += len(l.split())
        with open(inp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", "fastBPE==0.1.0", "-d", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "xzf", "fastBPE-0.1.0.tar.gz"], cwd=tmp, check=True)
        src = os.path.join(tmp, "fastBPE-0.1.0", "fastBPE")
        fast = os.path.join(tmp, "fast")
        subprocess.run(["g++", "-O2", "-std=c++11", "-pthread", os.path.join(src, "main.cc"),
                        "-I", src, "-o", fast], check=True)
        fast_learn(fast, tmp, inp, 200, os.path.join(HERE, "bpe_learn_codes"),
                   os.path.join(HERE, "bpe_learn_vocab"))
        raw = os.path.join(HERE, "bpe_learn_raw_en.txt")
        if not os.path.exists(raw):
            lines = ref.handbook_lines(os.path.join(ref.HANDBOOK, "en-US"))[-300:]
            with open(raw, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        norm, moses = MosesPunctNormalizer("en"), MosesTokenizer("en")
        tokenized = os.path.join(tmp, "tokenized.txt")
        with open(raw, encoding="utf-8") as f, open(tokenized, "w", encoding="utf-8") as g:
            for line in f:
                text = remove_non_printing_char(norm.normalize(replace_unicode_punct(line[:-1])))
                g.write(" ".join(moses.tokenize(text, escape=False)) + "\n")
        fast_learn(fast, tmp, tokenized, 100, os.path.join(HERE, "bpe_learn_lang_codes"),
                   os.path.join(HERE, "bpe_learn_lang_vocab"))
        with open(os.path.join(tmp, "probe.cc"), "w") as f:
            f.write(PROBE)
        subprocess.run(["g++", "-O1", os.path.join(tmp, "probe.cc"), "-o",
                        os.path.join(tmp, "probe")], check=True)
        print("libstdc++ bucket counts (STL_BUCKETS):")
        subprocess.run([os.path.join(tmp, "probe")], check=True)


if __name__ == "__main__":
    main()
