#!/usr/bin/env bash
# test_import_hf — `xlmc import-hf` of tiny XLMWithLMHeadModel directories saved by
# transformers (make_hf_fixture.py): F32 and F16 weights both give transformers' logits on the
# fixture batch within 1e-5 relative; the config's causal: false is imported as causal with a
# note; lang2id carries over (de = 0, en = 1); --help documents the outputs; a directory
# without config.json is refused with its name; export-hf refuses another vocabulary.
# usage: test_import_hf.sh XLMC INTEROP_LOGITS SRC_DIR SHARED_DIR
set -euo pipefail
xlmc=$(realpath "$1")
logits=$(realpath "$2")
here=$3/tests/interop
XLMC_SHARED_DIR=$4
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/xlmc-import.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$xlmc" import-hf --help | grep -q "OUTDIR/model.h5" || fail "import-hf --help"
for fx in hf_tiny hf_tiny_f16; do
    "$xlmc" import-hf "$here/$fx" --out "$work/$fx" >"$work/$fx.log" 2>&1 ||
        fail "import-hf $fx: $(cat "$work/$fx.log")"
    "$logits" "$work/$fx/model.h5" "$here/${fx}_batch.h5" || fail "$fx: logits differ"
    grep -q "^langs = de,en$" "$work/$fx/config.ini" || fail "$fx: lang2id not carried over"
done
grep -q "says causal: false" "$work/hf_tiny.log" || fail "no note for causal: false"
if grep -q "says causal: false" "$work/hf_tiny_f16.log"; then fail "a note for causal: true"; fi
mkdir "$work/empty"
status=0
"$xlmc" import-hf "$work/empty" --out "$work/none" >"$work/empty.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "a directory without config.json: exit status $status"
grep -q "$work/empty/config.json" "$work/empty.log" ||
    fail "a directory without config.json: status $status, $(cat "$work/empty.log")"
[ ! -e "$work/none" ] || fail "a refused import left $work/none"
# export-hf refuses a vocabulary the checkpoint was not trained with, leaving nothing
status=0
"$xlmc" export-hf "$work/hf_tiny/model.h5" --vocab-dir "$XLMC_SHARED_DIR/xlm-ende" \
    --out "$work/exp" >"$work/exp.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "export-hf with another vocabulary: exit status $status"
grep -q "xlm-ende/vocab: 64699 words, but .* has vocab_size 84" "$work/exp.log" ||
    fail "export-hf with another vocabulary: status $status, $(cat "$work/exp.log")"
[ ! -e "$work/exp" ] || fail "a refused export left $work/exp"
echo "OK: F32 and F16 imports reproduce transformers' logits"
