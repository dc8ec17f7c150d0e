#!/usr/bin/env python3
"""XLMTokenizer built from xlmc's converted vocab.json/merges.txt gives xlmc's ids.

usage: check_tokenizer_ids.py XLMC HF_DIR CODES VOCAB LINES.jsonl.gz
  LINES: {"lang", "text"} per line (the handbook lines of tests/data/tokenizer); every line
  without a line break is encoded by `xlmc encode --ids` (fastBPE pair) and by XLMTokenizer
  (files of HF_DIR) the way XLM preprocessed its data (issue 4): lowercasing off, the line's
  language given to Moses, no <s>/</s> wrapper. At least 2000 lines must be compared.
Exit 77 (skip) when transformers is not importable.
"""
import gzip
import json
import os
import subprocess
import sys

try:
    from transformers import XLMTokenizer
except ImportError as e:
    print(f"SKIPPED: transformers not importable ({e})")
    sys.exit(77)


def main():
    xlmc, hf_dir, codes, vocab, lines_path = sys.argv[1:6]
    tok = XLMTokenizer(os.path.join(hf_dir, "vocab.json"), os.path.join(hf_dir, "merges.txt"),
                       do_lowercase_and_remove_accent=False)
    by_lang = {}
    with gzip.open(lines_path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if not any(c in r["text"] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
                by_lang.setdefault(r["lang"], []).append(r["text"])
    compared = mismatches = 0
    for lang, texts in sorted(by_lang.items()):
        out = subprocess.run([xlmc, "encode", "--codes", codes, "--vocab", vocab, "--lang", lang,
                              "--ids"], input="\n".join(texts) + "\n", capture_output=True,
                             text=True, check=True).stdout.split("\n")
        for i, text in enumerate(texts):
            ours = [int(x) for x in out[i].split()]
            theirs = tok.convert_tokens_to_ids(tok._tokenize(text, lang=lang))
            compared += 1
            if ours != theirs:
                mismatches += 1
                if mismatches <= 3:
                    print(f"FAIL [{lang}] {text!r}\n  xlmc {ours}\n  hf   {theirs}")
    print(f"{compared} lines compared, {mismatches} differ")
    sys.exit(1 if mismatches or compared < 2000 else 0)


if __name__ == "__main__":
    main()
