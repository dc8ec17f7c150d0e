#!/bin/bash
# test_tok_errors: every bad input to encode / bpe-learn ends with exit != 0 and a message that
# names the file (and line) and the cause; bpe-learn leaves no half-written codes/vocab.
# usage: test_tok_errors.sh XLMC SHARED_DIR FIXTURE_DIR
set -u
xlmc=$1 shared=$2 fx=$3
codes=$shared/xlm-ende/codes vocab=$shared/xlm-ende/vocab
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail=0
# shellcheck source=tests/data/expect_error.sh
. "$(dirname "$0")/expect_error.sh"
printf 'Hello world.\nA second line.\nbad \xff\xfe byte\n' >"$t/bad.txt"
printf 'truncated \xc3\n' >"$t/trunc.txt"
printf 'overlong \xc0\xaf\n' >"$t/overlong.txt"
expect_error invalid_utf8 "bad.txt:3: invalid UTF-8 at byte 4" \
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang en "$t/bad.txt"
expect_error truncated_utf8 "trunc.txt:1: invalid UTF-8 at byte 10" \
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang de --ids "$t/trunc.txt"
expect_error overlong_utf8 "overlong.txt:1: invalid UTF-8" \
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang en "$t/overlong.txt"
expect_error missing_codes "cannot open codes file $t/nope/codes" \
    "$xlmc" encode --codes "$t/nope/codes" --vocab "$vocab" --lang en "$t/bad.txt"
expect_error missing_input "cannot open $t/none.txt" \
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang en "$t/none.txt"
expect_error mismatch "$codes and $fx/bpe_learn_vocab do not match" \
    "$xlmc" encode --codes "$codes" --vocab "$fx/bpe_learn_vocab" --lang en "$t/bad.txt"
expect_error mismatch_reverse "do not match" \
    "$xlmc" encode --codes "$fx/bpe_learn_codes" --vocab "$vocab" --lang en "$t/bad.txt"
# a small pair learned together is not a mismatch, although many merge results never reach
# its vocab
echo "Wie geht es Ihnen?" | "$xlmc" encode --codes "$fx/bpe_learn_codes" --vocab "$fx/bpe_learn_vocab" --lang de >"$t/out" 2>"$t/err" ||
    { echo "FAIL matched_small_pair: $(cat "$t/err")"; fail=1; }
printf 'e r 10\ne\n' >"$t/malformed_codes"
expect_error malformed_codes "malformed_codes:2: expected \"a b count\"" \
    "$xlmc" encode --codes "$t/malformed_codes" --vocab "$vocab" --lang en "$t/bad.txt"
expect_error unknown_lang "--lang must be en or de" \
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang fr "$t/bad.txt"
mkdir -p "$t/learn"
expect_error learn_invalid_utf8 "bad.txt:3: invalid UTF-8" \
    "$xlmc" bpe-learn --codes 10 --out "$t/learn" "$t/bad.txt"
left=$(ls -A "$t/learn")
[ -z "$left" ] || { echo "FAIL learn_invalid_utf8 left files behind: $left"; fail=1; }
expect_error learn_no_codes "--codes N" "$xlmc" bpe-learn --out "$t/learn" "$t/bad.txt"
# the good lines before the bad one were printed: encode streams
"$xlmc" encode --codes "$codes" --vocab "$vocab" --lang en "$t/bad.txt" >"$t/out" 2>/dev/null
[ "$(head -1 "$t/out")" = "Hello world ." ] || { echo "FAIL streaming: got '$(head -1 "$t/out")'"; fail=1; }
[ $fail = 0 ] && echo PASS
exit $fail
