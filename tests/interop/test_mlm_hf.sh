#!/usr/bin/env bash
# test_mlm_hf — masked LMs through import-hf / export-hf, generate and fill-mask (issue 18):
#  the fixture hf_tiny copied to a directory named like the released xlm-mlm-* models is
#  imported as a masked LM (objectives = mlm; --objective clm overrides it); `xlmc generate`
#  refuses it with a clear message; export-hf writes causal: false and transformers runs the
#  export with the logits xlmc computes bidirectionally (within 1e-5 relative, check_export.py
#  --mlm); `xlmc fill-mask` prints, per <mask>, transformers' probabilities of the top words.
# usage: test_mlm_hf.sh XLMC INTEROP_LOGITS SRC_DIR
set -euo pipefail
xlmc=$(realpath "$1")
logits=$(realpath "$2")
here=$3/tests/interop
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
fail() { echo "FAIL: $*" >&2; exit 1; }
if ! python3 -c "import transformers, torch, h5py" 2>/dev/null; then
    echo "SKIPPED: python3 cannot import transformers, torch and h5py"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/xlmc-mlm.XXXXXX")
trap 'rm -rf "$work"' EXIT

cp -r "$here/hf_tiny" "$work/xlm-mlm-tiny"
"$xlmc" import-hf "$work/xlm-mlm-tiny/" --out "$work/imp" >"$work/import.log" 2>&1 ||
    fail "import-hf: $(cat "$work/import.log")"
grep -q "imported as a masked LM" "$work/import.log" || fail "no note: $(cat "$work/import.log")"
grep -q "^objectives = mlm$" "$work/imp/config.ini" || fail "config.ini has no objectives = mlm"
"$xlmc" import-hf "$work/xlm-mlm-tiny" --objective clm --out "$work/clm" >"$work/clm.log" 2>&1 ||
    fail "import-hf --objective clm: $(cat "$work/clm.log")"
grep -q "^objectives = clm$" "$work/clm/config.ini" || fail "--objective clm ignored"

# generate refuses the masked LM, naming the checkpoint and the cause
status=0
"$xlmc" generate --ckpt "$work/imp/model.h5" --lang en --prompt "the" --data "$work/imp" \
    >"$work/gen.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "generate on a masked LM: exit status $status"
grep -q "model.h5 was trained with objectives = mlm, no clm: a masked language model cannot generate" \
    "$work/gen.log" || fail "generate's message: $(cat "$work/gen.log")"

# export: causal false, and transformers computes what xlmc computes bidirectionally
"$xlmc" export-hf "$work/imp/model.h5" --vocab-dir "$work/imp" --out "$work/hf" \
    >"$work/export.log" 2>&1 || fail "export-hf: $(cat "$work/export.log")"
python3 - "$here/hf_tiny_batch.h5" "$work/batch.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1]) as a, h5py.File(sys.argv[2], "w") as b:
    for k in ("input_ids", "langs", "attention_mask"):  # not the causal reference logits
        b[k] = a[k][()]
PY
"$logits" "$work/imp/model.h5" "$work/batch.h5" "$work/xlmc_logits.h5" >/dev/null ||
    fail "interop_logits"
python3 "$here/check_export.py" "$work/hf" "$work/batch.h5" "$work/xlmc_logits.h5" \
    "$work/imp/model.h5" --mlm || fail "transformers does not reproduce the exported MLM"

# fill-mask: one text from the arguments, two from stdin; probabilities as transformers'
text_l="the cat" text_r="on the mat"
"$xlmc" fill-mask --ckpt "$work/imp/model.h5" --lang en --data "$work/imp" \
    "$text_l <mask> $text_r <mask>" >"$work/fill.txt" 2>"$work/fill.err" ||
    fail "fill-mask: $(cat "$work/fill.err")"
cat "$work/fill.txt"
enc() { printf '%s\n' "$1" | "$xlmc" encode --codes "$work/imp/codes" --vocab "$work/imp/vocab" --lang en --ids; }
ids="1 $(enc "$text_l") 5 $(enc "$text_r") 5 1"
python3 "$here/check_fill_mask.py" "$work/hf" 1 "$ids" "$work/fill.txt" ||
    fail "fill-mask differs from transformers"
[ "$(grep -c '^  mask [12]:' "$work/fill.txt")" = 2 ] || fail "not two mask lines"
printf 'a <mask> b\nno mask here\n' | "$xlmc" fill-mask --ckpt "$work/imp/model.h5" --lang en \
    --data "$work/imp" --top-k 2 >"$work/stdin.txt" 2>"$work/stdin.err" && fail "a line without <mask> accepted"
grep -q "no <mask> in \"no mask here\"" "$work/stdin.err" || fail "message: $(cat "$work/stdin.err")"
grep -q "^  mask 1: [^ ]* 0\.[0-9]* [^ ]* 0\.[0-9]*$" "$work/stdin.txt" || fail "--top-k 2: $(cat "$work/stdin.txt")"
echo "OK: masked LM imported, refused by generate, exported, filled as transformers does"
