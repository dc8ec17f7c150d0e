#!/usr/bin/env bash
# test_train_crash_safety — checkpoints survive crashes and damage:
#  1. kill -9 while the step-20 checkpoint is half written (--debug-pause-checkpoint holds
#     the writer there) leaves step 10 intact and no step-20 file; the next start reports the
#     partial file, resumes from step 10 and finishes.
#  2. one flipped byte in the newest checkpoint: the next start says it is corrupt, leaves it
#     in place and resumes from the one before (run on to step 25).
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
write_config "$work/c.ini" batch_tokens=256 micro_batch=8 max_steps=30 log_every=1 \
    eval_every=0 checkpoint_every=10 keep_last=5
args=(train --config "$work/c.ini" --data "$work/data" --run-dir "$work/run")
ck=$work/run/checkpoints
# one rank started without mpirun (MPI singleton), so that kill -9 hits xlmc itself
"$xlmc" "${args[@]}" --debug-pause-checkpoint 20 >"$work/a.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    grep -q "half written" "$work/a.log" && break
    kill -0 $pid 2>/dev/null || fail "xlmc ended before the checkpoint: $(tail -5 "$work/a.log")"
    sleep 0.1
done
grep -q "half written" "$work/a.log" || fail "the step-20 checkpoint write never started"
kill -9 $pid
wait $pid 2>/dev/null || true
[ -f "$ck/step-0000020.h5.tmp" ] || fail "no partial file: the kill came too late?"
[ ! -e "$ck/step-0000020.h5" ] || fail "a half-written checkpoint took the final name"
"$xlmc" "${args[@]}" >"$work/b.log" 2>&1 || fail "restart after kill -9: $(tail -5 "$work/b.log")"
grep -q "step-0000020.h5.tmp is partial" "$work/b.log" || fail "the partial file was not reported"
grep -q "resuming from .*step-0000010.h5 at step 10" "$work/b.log" || fail "did not resume from step 10"
[ -f "$ck/step-0000030.h5" ] || fail "no final checkpoint"

# 2. flip one byte inside a dataset of the newest checkpoint (step 30)
python3 - "$ck/step-0000030.h5" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    d = f["weights/transformer.embeddings.weight"]
    off, size = d.id.get_offset(), d.id.get_storage_size()
with open(sys.argv[1], "r+b") as f:
    f.seek(off + size // 2)
    b = f.read(1)
    f.seek(off + size // 2)
    f.write(bytes([b[0] ^ 0x01]))
PY
"$xlmc" "${args[@]}" --max-steps 25 >"$work/c.log" 2>&1 || fail "restart after the flip: $(tail -5 "$work/c.log")"
grep -q "step-0000030.h5 is corrupt: .*checksum" "$work/c.log" || fail "the flipped byte was not reported: $(head -5 "$work/c.log")"
grep -q "resuming from .*step-0000020.h5 at step 20" "$work/c.log" || fail "did not resume from step 20"
[ -f "$ck/step-0000030.h5" ] || fail "the corrupt checkpoint was deleted"
[ -f "$ck/step-0000025.h5" ] || fail "no checkpoint at the end of the resumed run (step 25)"
echo PASS
