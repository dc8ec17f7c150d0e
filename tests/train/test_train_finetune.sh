#!/usr/bin/env bash
# test_train_finetune — fine-tuning from a checkpoint:
#  1. pretrain 30 steps on corpus lines 1-100; fine-tune (--init-from) 20 steps on lines
#     101-160 prepped with the same vocabulary: its valid loss drops below what the pretrained
#     checkpoint scores on it (measured by `xlmc eval`), and the run starts at step 1 with a
#     fresh optimizer;
#  2. data prepped with another vocabulary is refused by --init-from and by eval with a
#     message naming the vocabulary, exit 1, no run directory content;
#  3. `xlmc plot` writes a PNG of the fine-tuning run; `xlmc generate` continues a prompt,
#     the same text for the same seed.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/pre" "$work/bpe" 1 100
make_data "$work/fine" "$work/bpe" 101 160
write_config "$work/pre.ini" batch_tokens=256 micro_batch=4 max_steps=30 log_every=10 \
    eval_every=0 checkpoint_every=0 warmup=10
write_config "$work/fine.ini" batch_tokens=256 micro_batch=4 max_steps=20 log_every=5 \
    eval_every=20 checkpoint_every=0 warmup=5 lr=0.001
mpi 2 train --config "$work/pre.ini" --data "$work/pre" --run-dir "$work/pre-run" >"$work/pre.log" 2>&1 ||
    fail "pretraining: $(tail -5 "$work/pre.log")"
pre=$work/pre-run/checkpoints/step-0000030.h5
valid_loss() { "$xlmc" eval --ckpt "$1" --data "$work/fine" | awk '$1 == "all" {print $7}'; }
before=$(valid_loss "$pre")
[ -n "$before" ] || fail "xlmc eval of the pretrained checkpoint printed no loss"
mpi 2 train --config "$work/fine.ini" --data "$work/fine" --run-dir "$work/fine-run" \
    --init-from "$pre" >"$work/fine.log" 2>&1 || fail "fine-tuning: $(tail -5 "$work/fine.log")"
grep -q "fine-tuning from the weights of $pre" "$work/fine.log" || fail "no fine-tuning message"
grep -q '"type":"train","step":5,' "$work/fine-run/metrics.jsonl" ||
    fail "the fine-tuning run did not restart its step counter"
after=$(valid_loss "$work/fine-run/checkpoints/step-0000020.h5")
echo "second corpus valid loss: pretrained $before, fine-tuned $after"
python3 -c "import sys; sys.exit(not float('$after') < float('$before'))" ||
    fail "fine-tuning did not lower the valid loss ($before -> $after)"

# 2. another vocabulary
"$xlmc" bpe-learn --codes 150 --lang en --out "$work/bpe2" "$corpus/en.txt" >/dev/null 2>&1 ||
    fail "bpe-learn (second vocabulary)"
make_data "$work/other" "$work/bpe2" 101 160
status=0
mpi 1 train --config "$work/fine.ini" --data "$work/other" --run-dir "$work/bad-run" \
    --init-from "$pre" >"$work/bad.log" 2>&1 || status=$?
[ "$status" != 0 ] || fail "fine-tuning on data of another vocabulary was accepted"
grep -q "trained with vocabulary .* but the shards of $work/other use" "$work/bad.log" ||
    fail "no clear vocabulary error: $(cat "$work/bad.log")"
[ ! -e "$work/bad-run" ] || fail "the refused run left a run directory"
status=0
"$xlmc" eval --ckpt "$pre" --data "$work/other" >"$work/bad-eval.log" 2>&1 || status=$?
if [ "$status" != 1 ] || ! grep -q "vocabulary" "$work/bad-eval.log"; then
    fail "eval accepted another vocabulary: $(cat "$work/bad-eval.log")"
fi

# 3. plot and generate
gen=(generate --ckpt "$work/fine-run/checkpoints/step-0000020.h5" --data "$work/fine" --lang de
     --prompt "Das Paket" --tokens 12 --seed 7)
g1=$("$xlmc" "${gen[@]}") || fail "xlmc generate failed"
g2=$("$xlmc" "${gen[@]}")
echo "sample: $g1"
[ "$g1" = "$g2" ] || fail "generate with the same seed gave different text"
case $g1 in "Das Paket"*) ;; *) fail "the sample does not continue the prompt: $g1" ;; esac
png=$("$xlmc" plot "$work/fine-run") || fail "xlmc plot failed"
[ "$(head -c 4 "$png" | tail -c 3)" = PNG ] || fail "$png is not a PNG"
echo PASS
