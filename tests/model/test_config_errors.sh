#!/bin/sh
# test_config_errors — every kind of bad config makes `xlmc forward` exit non-zero with a
# message naming the file, the line (where the problem is on one) and the key, before any
# other input is read (the weights and batch named here do not exist).
# usage: test_config_errors.sh XLMC_BIN CONFIGS_DIR WORK_DIR
set -u
xlmc=$1 base=$2/tiny.ini work=$3/config_errors
rm -rf "$work" && mkdir -p "$work" || exit 1
fails=0

# check NAME SED_SCRIPT PATTERN...: run on tiny.ini edited by SED_SCRIPT; every PATTERN
# (extended regex) must appear in stderr
check() {
    name=$1 script=$2
    shift 2
    ini=$work/$name.ini
    sed -e "$script" "$base" > "$ini"
    if cmp -s "$base" "$ini"; then echo "FAIL $name: the edit did not change the config"; fails=$((fails + 1)); return; fi
    "$xlmc" forward --config "$ini" --weights "$work/none.h5" --batch "$work/none.h5" \
        --out "$work/out.h5" 2> "$work/$name.err"
    rc=$?
    if [ "$rc" -eq 0 ]; then echo "FAIL $name: exit status 0"; fails=$((fails + 1)); return; fi
    for p in "$@"; do
        if ! grep -Eq -- "$p" "$work/$name.err"; then
            echo "FAIL $name: message lacks /$p/:"; cat "$work/$name.err"
            fails=$((fails + 1)); return
        fi
    done
    if [ -e "$work/out.h5" ]; then echo "FAIL $name: output written"; fails=$((fails + 1)); fi
    echo "ok   $name (status $rc): $(cat "$work/$name.err")"
}

f="$work/[a-z_]+\\.ini"
check missing_key '/^n_layers = /d' "$f" "n_layers" "missing"
check unknown_key 's/^n_heads = 4$/n_heads = 4\nn_hedas = 4/' "$f:[0-9]+" "n_hedas"
check negative_dim 's/^dim = 64$/dim = -64/' "$f:6" "dim" "-64"
check dim_heads 's/^n_heads = 4$/n_heads = 5/' "$f" "dim" "n_heads"
check not_a_number 's/^dropout = 0.1$/dropout = 0.1x/' "$f:13" "dropout" "0\\.1x"
# an unsigned key in exponent form: digits only (1e3 was once read as 1)
check seed_exponent 's/^seed = 1$/seed = 1e3/' "$f:[0-9]+" "seed" "1e3" "digits"
# train.grad_buffers: at most 8 (the gradient buffers one accumulator pass adds)
check grad_buffers_range 's/^seed = 1$/seed = 1\ngrad_buffers = 9/' "$f:[0-9]+" "grad_buffers" "9"
# a config file that does not exist
"$xlmc" forward --config "$work/absent.ini" --weights x --batch y --out "$work/out.h5" 2> "$work/absent.err"
if [ $? -eq 0 ] || ! grep -q "absent.ini" "$work/absent.err"; then
    echo "FAIL absent: $(cat "$work/absent.err")"; fails=$((fails + 1))
else echo "ok   absent: $(cat "$work/absent.err")"; fi

[ "$fails" -eq 0 ] && rm -rf "$work"
exit "$fails"
