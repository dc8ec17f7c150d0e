#!/usr/bin/env bash
# test_eval_matches_reference — `xlmc eval` reports perplexity = exp(mean token loss) over the
# split's windows: after 20 training steps, its per-language loss and perplexity on the
# first 24 valid windows equal those of transformers' XLMWithLMHeadModel (float64) loaded
# with the checkpoint's weights and fed the same windows rebuilt from the shards by
# eval_reference.py (relative 1e-5), and its accuracy agrees to 1e-3.
# The training run's own evaluation (eval_every) logs the same valid loss to metrics.jsonl.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
python3 -c 'import torch, transformers' 2>/dev/null || skip "needs torch and transformers (pip)"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 160
write_config "$work/c.ini" batch_tokens=256 micro_batch=4 max_steps=20 log_every=5 \
    eval_every=20 eval_batches=24 checkpoint_every=0
mpi 2 train --config "$work/c.ini" --data "$work/data" --run-dir "$work/run" --max-steps 20 \
    >"$work/train.log" 2>&1 || fail "train: $(tail -5 "$work/train.log")"
ck=$work/run/checkpoints/step-0000020.h5
"$xlmc" eval --ckpt "$ck" --data "$work/data" --split valid --windows 24 >"$work/eval.txt" 2>&1 ||
    fail "xlmc eval: $(cat "$work/eval.txt")"
python3 "$src/tests/train/eval_reference.py" "$ck" "$work/data" valid 24 >"$work/ref.txt" ||
    fail "eval_reference.py failed"
cat "$work/eval.txt" "$work/ref.txt"
python3 - "$work/eval.txt" "$work/ref.txt" "$work/run/metrics.jsonl" <<'PY' || fail "xlmc eval disagrees with the reference"
import json, math, sys
def rows(p):
    out = {}
    for line in open(p):
        f = line.split()
        if len(f) >= 11 and f[1] == "windows":
            out[f[0]] = {f[i]: float(f[i + 1]) for i in range(1, len(f) - 1, 2)}
    return out
got, ref = rows(sys.argv[1]), rows(sys.argv[2])
assert ref, "the reference found no windows"
for lang, r in ref.items():
    g = got.get(lang)
    assert g, f"xlmc eval printed no row for {lang}"
    assert g["windows"] == r["windows"] and g["tokens"] == r["tokens"], f"{lang}: windows/tokens {g} vs {r}"
    assert abs(g["loss"] - r["loss"]) <= 1e-5 * r["loss"], f"{lang}: loss {g['loss']} vs {r['loss']}"
    assert abs(g["ppl"] - math.exp(r["loss"])) <= 1e-5 * g["ppl"], f"{lang}: ppl {g['ppl']} != exp(loss)"
    assert abs(g["acc"] - r["acc"]) <= 1e-3, f"{lang}: accuracy {g['acc']} vs {r['acc']}"
valid = [json.loads(l) for l in open(sys.argv[3]) if '"valid"' in l]
assert valid and valid[-1]["step"] == 20, "the training run logged no evaluation at step 20"
for lang, r in ref.items():
    v = valid[-1][f"loss_{lang}"]
    assert abs(v - r["loss"]) <= 1e-5 * r["loss"], f"{lang}: logged valid loss {v} vs {r['loss']}"
print("xlmc eval and the training run's evaluation match transformers")
PY
echo PASS
