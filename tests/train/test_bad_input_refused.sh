#!/usr/bin/env bash
# test_bad_input_refused — inputs that used to be taken silently wrong are refused, with exit 1
# and a message naming the file and the cause:
#  1. langs = en,de (the shards number de = 0, en = 1): train refuses before it creates the
#     run directory; eval and generate refuse a checkpoint whose config says en,de.
#  2. configs: a key set twice (also through a repeated section), a line longer than the
#     parser takes (reported on its own line), --config naming a directory.
#  3. a NUL byte inside a line: prep and encode both refuse it, naming the line.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 60

# refused CMD... : runs CMD, wants exit 1 and stderr matching $want (extended regex)
refused() {
    local status=0
    "$@" >"$work/r.out" 2>"$work/r.err" || status=$?
    [ "$status" = 1 ] || fail "$*: exit $status, not 1: $(tail -3 "$work/r.err")"
    grep -Eq -- "$want" "$work/r.err" || fail "$*: message lacks /$want/: $(cat "$work/r.err")"
    echo "refused: $(head -1 "$work/r.err" | cut -c1-160)"
}

# 1. languages
write_config "$work/ende.ini" langs=en,de batch_tokens=256 micro_batch=8 eval_every=0
want="ende.ini: \[model\] langs = en,de, but the shards number their languages de,en"
refused "$xlmc" train --config "$work/ende.ini" --data "$work/data" --run-dir "$work/r1"
[ ! -e "$work/r1" ] || fail "the refused run left $work/r1 behind"
write_config "$work/ok.ini" batch_tokens=256 micro_batch=8 eval_every=0 max_steps=2
"$xlmc" train --config "$work/ok.ini" --data "$work/data" --run-dir "$work/r2" >"$work/t.log" 2>&1 ||
    fail "train: $(tail -3 "$work/t.log")"
ck=$work/r2/checkpoints/step-0000002.h5
# rewrite its config with en,de, and the config's XXH64 checksum with it (libxxhash)
python3 - "$ck" <<'PY'
import ctypes, h5py, numpy as np, sys
xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH64.restype = ctypes.c_uint64
xxh.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
with h5py.File(sys.argv[1], "r+") as f:
    d = f["config"]
    text = bytes(d[...])
    assert b"\nlangs = de,en\n" in text
    new = text.replace(b"\nlangs = de,en\n", b"\nlangs = en,de\n")
    d[...] = np.frombuffer(new, dtype=np.uint8)
    d.attrs.modify("xxh64", np.array([xxh.XXH64(new, len(new), 0)], dtype="<u8"))
PY
want="step-0000002.h5: \[model\] langs = en,de, but the shards number"
refused "$xlmc" eval --ckpt "$ck" --data "$work/data"
refused "$xlmc" generate --ckpt "$ck" --data "$work/data" --lang de --prompt "Das ist"

# 2. configs
cp "$src/configs/tiny.ini" "$work/dup.ini"
printf '\n[model]\ndropout = 0.2\n' >>"$work/dup.ini"
want="dup.ini:[0-9]+: \[model\] dropout is set a second time"
refused "$xlmc" train --config "$work/dup.ini" --data "$work/data" --run-dir "$work/r3"
sed 's/^seed = 1$/seed = 1\nseed = 2/' "$src/configs/tiny.ini" >"$work/dup2.ini"
want="dup2.ini:[0-9]+: \[train\] seed is set a second time"
refused "$xlmc" train --config "$work/dup2.ini" --data "$work/data" --run-dir "$work/r3"
line=$(grep -n '^dropout = ' "$src/configs/tiny.ini" | cut -d: -f1)
sed "s/^dropout = 0.1$/dropout = 0.1$(printf '%*s' 300 '')x/" "$src/configs/tiny.ini" >"$work/long.ini"
want="long.ini:$line: the line is [0-9]+ characters long"
refused "$xlmc" train --config "$work/long.ini" --data "$work/data" --run-dir "$work/r3"
want="$work/bpe: is a directory, not a config file"
refused "$xlmc" train --config "$work/bpe" --data "$work/data" --run-dir "$work/r3"
[ ! -e "$work/r3" ] || fail "a refused run left a run directory behind"

# 3. NUL byte on line 2
printf 'Hello world .\nHello\0 world .\nlast line\n' >"$work/nul.txt"
want="nul.txt:2: NUL byte"
refused "$xlmc" prep --lang en --input "$work/nul.txt" --codes "$work/bpe/codes" \
    --vocab "$work/bpe/vocab" --out "$work/nul-shards"
refused "$xlmc" encode --lang en --codes "$work/bpe/codes" --vocab "$work/bpe/vocab" "$work/nul.txt"
echo PASS
