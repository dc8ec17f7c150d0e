#!/usr/bin/env bash
# test_hf_tokenizer_ids — XLMTokenizer built from the vocab.json/merges.txt that xlmc converted
# from the released xlm-ende pair (test_hf_vocab_roundtrip leaves them in WORK/hf) gives the
# ids of `xlmc encode` on the 3016 lines of tests/data/tokenizer (3000 from the Debian
# handbook, en and de). Skipped (77) when transformers is not importable.
# usage: test_hf_tokenizer_ids.sh XLMC SHARED_DIR WORK_DIR SRC_DIR
set -euo pipefail
export OMP_NUM_THREADS=1
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
exec python3 "$4/tests/interop/check_tokenizer_ids.py" "$1" "$3/hf" "$2/xlm-ende/codes" \
    "$2/xlm-ende/vocab" "$4/tests/data/tokenizer/tok_reference.jsonl.gz"
