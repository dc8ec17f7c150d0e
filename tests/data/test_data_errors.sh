#!/bin/bash
# test_data_errors: every bad input to `xlmc prep` and every bad shard read by
# `xlmc data-info` (the loader's shard reader) ends with exit != 0 and a message naming the
# file and the cause; a failed prep leaves no shard and no .tmp behind.
# usage: test_data_errors.sh XLMC SHARED_DIR TOKENIZER_FIXTURE_DIR SHARD_CRAFT
set -u
xlmc=$1 shared=$2 fx=$3 craft=$4
codes=$shared/xlm-ende/codes vocab=$shared/xlm-ende/vocab
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail=0
# shellcheck source=tests/data/expect_error.sh
. "$(dirname "$0")/expect_error.sh"
# no_shards NAME DIR: nothing that looks like a shard (nor a .tmp) in DIR
no_shards() {
    local left
    left=$(ls -A "$2" 2>/dev/null | grep -E '\.h5|\.tmp')
    [ -z "$left" ] || { echo "FAIL $1 left behind: $left"; fail=1; }
}
prep() { "$xlmc" prep --codes "$codes" --vocab "$vocab" --valid-every 0 "$@"; }

good=$t/good.txt
for i in $(seq 1 60); do echo "This is line $i of a small but valid English text."; done >"$good"
# invalid UTF-8 in the second file, after good lines that were already encoded
{ head -5 "$good"; printf 'bad \xff\xfe byte\n'; } >"$t/bad.txt"
expect_error invalid_utf8 "bad.txt:6: invalid UTF-8 at byte 4" \
    prep --lang en --out "$t/o1" --shard-tokens 50 --input "$good" "$t/bad.txt"
no_shards invalid_utf8 "$t/o1"
printf '\n\n\n' >"$t/empty.txt"
: >"$t/zero.txt"
expect_error empty_input "empty.txt.*no non-empty line" \
    prep --lang en --out "$t/o2" --input "$t/empty.txt" "$t/zero.txt"
no_shards empty_input "$t/o2"
expect_error missing_input "cannot open --input $t/none.txt" \
    prep --lang en --out "$t/o3" --input "$t/none.txt"
no_shards missing_input "$t/o3"
expect_error missing_codes "cannot open codes file $t/nope/codes" \
    "$xlmc" prep --lang en --codes "$t/nope/codes" --vocab "$vocab" --out "$t/o4" --input "$good"
no_shards missing_codes "$t/o4"
expect_error codes_vocab_mismatch "do not match" \
    "$xlmc" prep --lang en --codes "$codes" --vocab "$fx/bpe_learn_vocab" --out "$t/o5" --input "$good"
no_shards codes_vocab_mismatch "$t/o5"
expect_error unknown_lang "--lang must be a known language code: de or en, not fr" \
    prep --lang fr --out "$t/o6" --input "$good"
printf 'x\n' | gzip | head -c 15 >"$t/trunc.txt.gz"
expect_error truncated_gz "trunc.txt.gz" prep --lang en --out "$t/o7" --input "$t/trunc.txt.gz"
no_shards truncated_gz "$t/o7"

# ---- bad shards ----
prep --lang en --out "$t/d" --input "$good" 2>/dev/null || { echo "FAIL good prep"; exit 1; }
expect_error prep_twice "already holds en shards" prep --lang en --out "$t/d" --input "$good"
expect_error other_pair_same_dir "another codes/vocab pair" \
    "$xlmc" prep --lang de --codes "$fx/bpe_learn_codes" --vocab "$fx/bpe_learn_vocab" \
        --valid-every 0 --out "$t/d" --input "$good"
shard=$t/d/train-en-r000-00000.h5
"$xlmc" data-info "$t/d" >/dev/null 2>&1 || { echo "FAIL data-info on good shards"; fail=1; }
# a truncated copy of a good shard
mkdir "$t/trunc" && head -c $(($(stat -c %s "$shard") / 2)) "$shard" >"$t/trunc/train-en-r000-00000.h5"
expect_error truncated_shard "trunc/train-en-r000-00000.h5: not a readable HDF5 file" \
    "$xlmc" data-info "$t/trunc"
# a shard of another vocabulary beside ours
"$xlmc" prep --lang de --codes "$fx/bpe_learn_codes" --vocab "$fx/bpe_learn_vocab" \
    --valid-every 0 --out "$t/other" --input "$good" 2>/dev/null || { echo "FAIL prep other vocab"; exit 1; }
cp "$t/other/train-de-r000-00000.h5" "$t/d/"
expect_error other_vocab_hash "d/train-de-r000-00000.h5: prepared with vocabulary [0-9a-f]{16}, but [0-9a-f]{16} is expected" \
    "$xlmc" data-info "$t/d"
# a token id >= vocab_size inside a shard
mkdir "$t/badid" && "$craft" "$t/badid" || { echo "FAIL test_shard_craft"; exit 1; }
expect_error id_out_of_vocab "badid/train-en-r000-00000.h5: token 2 has id 150, outside the vocabulary of 100" \
    "$xlmc" data-info "$t/badid"
# damage late in the token data (one id changed into another valid one, in the last
# checksum block): data-info's full pass refuses it by its checksum, naming the shard
mkdir "$t/late" && cp "$shard" "$t/late/" && late=$t/late/train-en-r000-00000.h5
at=$(python3 -c 'import h5py,sys; f=h5py.File(sys.argv[1]); print(f["tokens"].id.get_offset() + 2 * (f["tokens"].shape[0] - 3))' "$late")
printf '\x%02x' $(($(od -An -tu1 -j "$at" -N1 "$late") ^ 1)) | dd of="$late" bs=1 seek="$at" conv=notrunc status=none
expect_error late_damage "late/train-en-r000-00000.h5: tokens [0-9]+\\.\\.[0-9]+ fail their checksum" \
    "$xlmc" data-info "$t/late"
# a version-1 shard (prep before format 2) is read, and data-convert upgrades it in place
mkdir "$t/v1" && "$craft" "$t/v1" v1 || { echo "FAIL test_shard_craft v1"; exit 1; }
"$xlmc" data-info "$t/v1" >/dev/null 2>&1 || { echo "FAIL data-info on a version-1 shard"; fail=1; }
if "$xlmc" data-convert "$t/v1" >"$t/conv" 2>&1 &&
    [ "$(h5dump -a /format_version "$t/v1/train-en-r000-00000.h5" | sed -n 's/^ *(0): *//p')" = 2 ] &&
    "$xlmc" data-info "$t/v1" | grep -Eq '^train +en +1 +1 +4$' && ! compgen -G "$t/v1/*.tmp" >/dev/null; then
    echo "ok   data_convert"
else
    echo "FAIL data_convert: $(cat "$t/conv")"
    fail=1
fi
[ $fail = 0 ] && echo PASS
exit $fail
