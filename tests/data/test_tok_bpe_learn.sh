#!/bin/bash
# test_bpe_learn_matches_fastbpe: `xlmc bpe-learn` on a fixed input writes exactly the codes
# and vocab that fastBPE's own learnbpe/applybpe/getvocab produced
# (tokenizer/make_bpe_learn_reference.py), ties broken as fastBPE breaks them.
# usage: test_tok_bpe_learn.sh XLMC FIXTURE_DIR
set -u
xlmc=$1 fx=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$xlmc" bpe-learn --codes 200 --out "$out/bpe" "$fx/bpe_learn_input.txt" || { echo "FAIL: bpe-learn exited $?"; exit 1; }
fail=0
n=$(paste -d'|' "$out/bpe/codes" "$fx/bpe_learn_codes" | awk -F'|' '$1 == $2' | wc -l)
echo "merges equal to fastBPE's, in order: $n of $(wc -l < "$fx/bpe_learn_codes")"
if ! diff -q "$out/bpe/codes" "$fx/bpe_learn_codes" >/dev/null; then
    echo "FAIL: codes differ from fastBPE learnbpe:"; diff "$out/bpe/codes" "$fx/bpe_learn_codes" | head -10; fail=1
fi
if ! diff -q "$out/bpe/vocab" "$fx/bpe_learn_vocab" >/dev/null; then
    echo "FAIL: vocab differs from fastBPE getvocab:"; diff "$out/bpe/vocab" "$fx/bpe_learn_vocab" | head -10; fail=1
fi
# nothing but the two results is left in the output folder (temporaries renamed away)
left=$(ls -A "$out/bpe" | tr '\n' ' ')
[ "$left" = "codes vocab " ] || { echo "FAIL: output folder holds: $left"; fail=1; }
# --lang en: XLM's pre-tokenization first, then learning (reference: sacremoses + fastBPE)
"$xlmc" bpe-learn --lang en --codes 100 --out "$out/lang" "$fx/bpe_learn_raw_en.txt" || { echo "FAIL: bpe-learn --lang exited $?"; exit 1; }
for f in codes vocab; do
    if ! diff -q "$out/lang/$f" "$fx/bpe_learn_lang_$f" >/dev/null; then
        echo "FAIL: --lang en $f differs from sacremoses + fastBPE:"; diff "$out/lang/$f" "$fx/bpe_learn_lang_$f" | head -10; fail=1
    fi
done
[ $fail = 0 ] && echo "--lang en: codes and vocab equal to sacremoses + fastBPE" && echo "PASS"
exit $fail
