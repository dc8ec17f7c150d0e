#!/usr/bin/env bash
# test_train_resume_4to2 — a checkpoint written by 4 ranks resumes on 2: the global batch
# stays 8 rows (2 ranks x 2 accumulation steps x micro-batch 2 instead of 4 x 1 x 2), the
# run continues from step 10 to 20, and its losses track an uninterrupted 4-rank run (the
# same data and dropout masks; only the summation order of gradients differs).
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
write_config "$work/c.ini" batch_tokens=256 micro_batch=2 max_steps=20 log_every=1 \
    eval_every=0 checkpoint_every=10
args=(train --config "$work/c.ini" --data "$work/data")
mpi 4 "${args[@]}" --run-dir "$work/ref" >"$work/ref.log" 2>&1 || fail "4-rank run: $(tail -5 "$work/ref.log")"
mpi 4 "${args[@]}" --run-dir "$work/run" --max-steps 10 >"$work/a.log" 2>&1 ||
    fail "4-rank first half: $(tail -5 "$work/a.log")"
mpi 2 "${args[@]}" --run-dir "$work/run" >"$work/b.log" 2>&1 || fail "2-rank resume: $(tail -5 "$work/b.log")"
grep -q "resuming from .*step-0000010.h5 at step 10" "$work/b.log" || fail "did not resume at step 10"
grep -q "2 rank(s) .*global batch 8 rows x 32 tokens = 2 micro-batches of 2 rows per rank" \
    "$work/b.log" || fail "unexpected geometry: $(grep 'global batch' "$work/b.log")"
python3 - "$work/ref/metrics.jsonl" "$work/run/metrics.jsonl" <<'PY' || fail "losses after the 4->2 resume"
import json, sys
def losses(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        if r.get("type") == "train":
            assert r["step"] not in out, f"{p}: step {r['step']} logged twice"
            out[r["step"]] = (r["loss"], r["tokens"])
    return out
ref, got = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(got) == list(range(1, 21)), f"steps logged: {sorted(got)}"
for s in range(1, 21):
    (lr, tr), (lg, tg) = ref[s], got[s]
    assert tr == tg, f"step {s}: {tg} tokens seen, expected {tr} (global batch changed?)"
    assert abs(lr - lg) <= 1e-4 * abs(lr), f"step {s}: loss {lg} vs 4-rank run {lr}"
print(f"steps 11..20 on 2 ranks track the 4-rank run; step 20 loss {got[20][0]:.6f} vs {ref[20][0]:.6f}")
PY
echo PASS
