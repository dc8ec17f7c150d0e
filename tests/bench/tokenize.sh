#!/bin/bash
# tests/bench/tokenize.sh XLMC SHARED_DIR [REPEAT] — tokenizer throughput, xlmc vs Hugging Face
# (see tokenize_bench.py; not tokenize.py, which would shadow Python's own tokenize module). Runnable by hand: bash tests/bench/tokenize.sh build/xlmc ../shared
exec python3 "$(dirname "$0")/tokenize_bench.py" "$@"
