#!/usr/bin/env bash
# test_cli_rejects_bad_numbers — every numeric option is parsed strictly: a value that is not
# a number, has trailing characters, is out of range or overflows is refused with exit status 2
# (usage) and a message naming the option, before any file is opened.
# usage: test_cli_rejects_bad_numbers.sh XLMC_BIN
xlmc=$1
fails=0
# command line | text the message must contain
cases=(
    "generate --ckpt c --lang en --data d --tokens abc|--tokens abc"
    "generate --ckpt c --lang en --data d --tokens 12x|--tokens 12x"
    "generate --ckpt c --lang en --data d --top-k -1|--top-k -1"
    "generate --ckpt c --lang en --data d --seed 99999999999999999999999|--seed"
    "generate --ckpt c --lang en --data d --temperature nan|--temperature nan"
    "eval --ckpt c --data d --windows abc|--windows abc"
    "eval --ckpt c --data d --batch 0|--batch 0"
    "train --data d --run-dir r --max-steps 99999999999999999999999|--max-steps"
    "train --data d --run-dir r --max-steps 5x|--max-steps 5x"
    "train --data d --run-dir r --debug-signal-at -3|--debug-signal-at -3"
    "prep --shard-tokens 1e9 --input x --vocab v --out o|--shard-tokens 1e9"
    "selftest --device cpu --seed -1|--seed -1"
)
for c in "${cases[@]}"; do
    cmd=${c%%|*} want=${c#*|}
    # shellcheck disable=SC2086
    err=$("$xlmc" $cmd 2>&1 >/dev/null)
    status=$?
    if [ "$status" != 2 ] || ! grep -qF -- "$want" <<<"$err"; then
        echo "FAIL: xlmc $cmd: exit $status, message: $err"
        fails=$((fails + 1))
    else
        echo "ok   xlmc $cmd: $err"
    fi
done
if [ "$fails" != 0 ]; then
    echo "$fails FAILED"
    exit 1
fi
echo PASS
