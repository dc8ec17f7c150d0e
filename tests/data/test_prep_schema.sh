#!/bin/bash
# test_prep_schema: `xlmc prep` on real handbook text (en plain, de gzipped) writes the shards
# that data/README.md documents: h5dump (not xlmc) shows the datasets and attributes, the ids
# read back with h5dump equal `xlmc encode --ids` of the same lines sentence by sentence, the
# counts match, the split rule puts line k to valid/test/train as documented, and data-info
# and 2 MPI ranks agree.
# usage: test_prep_schema.sh XLMC SHARED_DIR SRC_DIR [MPIEXEC]
set -u
xlmc=$1 shared=$2 src=$3 mpiexec=${4:-}
codes=$shared/xlm-ende/codes vocab=$shared/xlm-ende/vocab
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail=0
check() { # check NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fail=1; fi
}

bash "$src/data/handbook.sh" "$t/hb" 2>/dev/null || { echo "SKIP: debian-handbook is not installed"; exit 77; }
# a few hundred lines each, with an empty line in the middle (skipped by prep)
for l in en de; do
    { sed -n 101,250p "$t/hb/handbook.$l.txt"; echo; sed -n 251,400p "$t/hb/handbook.$l.txt"; } >"$t/$l.txt"
done
gzip -k "$t/de.txt"

"$xlmc" prep --lang en --codes "$codes" --vocab "$vocab" --out "$t/all" --valid-every 0 \
    --input "$t/en.txt" 2>"$t/err" || { echo "FAIL prep en: $(cat "$t/err")"; exit 1; }
"$xlmc" prep --lang de --codes "$codes" --vocab "$vocab" --out "$t/all" --valid-every 0 \
    --shard-tokens 5000 --input "$t/de.txt.gz" 2>"$t/err" || { echo "FAIL prep de: $(cat "$t/err")"; exit 1; }
grep -q "MB/s.*tokens/s" "$t/err"
check progress_line $? "no MB/s and tokens/s line on stderr"

# ---- the schema, as h5dump sees it ----
shard=$t/all/train-en-r000-00000.h5
h5dump -H "$shard" >"$t/schema" || { echo "FAIL h5dump -H $shard"; exit 1; }
for a in format_version lang lang_id split vocab_size vocab_hash vocab_hash_hex codes_hash \
         codes_hash_hex n_tokens n_sentences source_files checksum_tokens; do
    grep -q "ATTRIBUTE \"$a\"" "$t/schema"
    check "attribute_$a" $? "h5dump -H shows no attribute $a"
done
grep -A1 'DATASET "tokens"' "$t/schema" | grep -q H5T_STD_U16LE
check tokens_uint16 $? "tokens is not H5T_STD_U16LE"
grep -A1 'DATASET "offsets"' "$t/schema" | grep -q H5T_STD_I64LE
check offsets_int64 $? "offsets is not H5T_STD_I64LE"
attr() { h5dump -a "/$2" "$1" | sed -n 's/^ *(0): *//p' | tr -d '"'; }
[ "$(attr "$shard" lang)" = en ] && [ "$(attr "$shard" lang_id)" = 1 ] &&
    [ "$(attr "$t/all/train-de-r000-00000.h5" lang_id)" = 0 ] && [ "$(attr "$shard" vocab_size)" = 64699 ] &&
    [ "$(attr "$shard" format_version)" = 2 ] && [ "$(attr "$shard" split)" = train ]
check attribute_values $? "lang/lang_id/vocab_size/format_version/split: $(attr "$shard" lang) $(attr "$shard" lang_id) $(attr "$shard" vocab_size)"
h5dump -p -d /tokens "$shard" >"$t/tokprops"
grep -q CONTIGUOUS "$t/tokprops" && ! grep -q DEFLATE "$t/tokprops"
check tokens_contiguous $? "tokens is not contiguous and uncompressed: $(grep -A2 STORAGE_LAYOUT "$t/tokprops")"
grep -A1 'DATASET "checksums"' "$t/schema" | grep -q H5T_STD_U64LE
check checksums_uint64 $? "checksums is not H5T_STD_U64LE"
# each checksum is XXH64 (seed 0) of its 1024-token block's little-endian bytes, as the
# reference xxhsum computes it
h5dump -d /tokens -b LE -o "$t/tok.bin" "$shard" >/dev/null &&
    h5dump -d /checksums -b LE -o "$t/sums.bin" "$shard" >/dev/null
nblk=$(( ($(stat -c %s "$t/tok.bin") / 2 + 1023) / 1024 ))
: >"$t/sums.want"
for b in $(seq 0 $((nblk - 1))); do
    dd if="$t/tok.bin" bs=2048 skip="$b" count=1 status=none | xxhsum -H1 - | cut -d' ' -f1 >>"$t/sums.want"
done
od -An -tx8 -v -w8 "$t/sums.bin" | tr -d ' ' >"$t/sums.got"
[ "$nblk" -ge 2 ] && [ "$(attr "$shard" checksum_tokens)" = 1024 ] && cmp -s "$t/sums.want" "$t/sums.got"
check checksums_xxh64 $? "$nblk blocks; xxhsum: $(head -2 "$t/sums.want" | tr '\n' ' ') shard: $(head -2 "$t/sums.got" | tr '\n' ' ')"

# ---- ids read back with h5dump equal xlmc encode --ids, sentence by sentence; each sentence
# ends in </s> (id 1) in the tokens dataset ----
for l in en de; do
    : >"$t/shard_ids.$l"
    ntok=0
    for f in "$t/all"/train-$l-*.h5; do
        h5dump -d /tokens -b LE -o "$t/tok.bin" "$f" >/dev/null &&
            h5dump -d /offsets -b LE -o "$t/off.bin" "$f" >/dev/null || { echo "FAIL h5dump -b $f"; exit 1; }
        od -An -tu2 -v -w2 "$t/tok.bin" | tr -d ' ' >"$t/tok.txt"
        od -An -td8 -v -w8 "$t/off.bin" | tr -d ' ' >"$t/off.txt"
        awk 'NR == FNR { off[n++] = $1; next } { tok[m++] = $1 }
             END { for (i = 0; i + 1 < n; i++) { s = ""; for (k = off[i]; k < off[i + 1] - 1; k++) s = s (k > off[i] ? " " : "") tok[k]; if (tok[off[i + 1] - 1] != 1) s = s " NO-EOS"; print s } }' \
            "$t/off.txt" "$t/tok.txt" >>"$t/shard_ids.$l"
        ntok=$((ntok + $(attr "$f" n_tokens)))
    done
    grep -v '^$' "$t/$l.txt" | "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang $l --ids >"$t/enc_ids.$l"
    cmp -s "$t/shard_ids.$l" "$t/enc_ids.$l"
    check "ids_equal_encode_$l" $? "shard ids differ from xlmc encode --ids ($(diff "$t/shard_ids.$l" "$t/enc_ids.$l" | head -3))"
    want=$(wc -w <"$t/enc_ids.$l")
    [ "$ntok" = "$want" ] && [ "$(wc -l <"$t/shard_ids.$l")" = 300 ]
    check "counts_$l" $? "n_tokens $ntok, encode gave $want tokens; $(wc -l <"$t/shard_ids.$l") sentences of 300"
done
[ "$(ls "$t/all"/train-de-*.h5 | wc -l)" -gt 1 ]
check shard_tokens_splits $? "--shard-tokens 5000 wrote a single de shard"
[ -f "$t/all/codes" ] && [ -f "$t/all/vocab" ] && [ -z "$(ls "$t/all" | grep '\.tmp$')" ]
check dir_files $? "codes/vocab copies missing or a .tmp left: $(ls "$t/all")"

# ---- data-info ----
"$xlmc" data-info "$t/all" >"$t/info" 2>&1
check data_info_runs $? "$(cat "$t/info")"
grep -Eq "^train +en +1 +300 +$(wc -w <"$t/enc_ids.en")\$" "$t/info" &&
    grep -q "vocab_hash $(attr "$shard" vocab_hash_hex)" "$t/info"
check data_info_counts $? "$(cat "$t/info")"

# ---- the split rule: line k -> valid if k % 10 == 0, test if k % 10 == 5 ----
"$xlmc" prep --lang en --codes "$codes" --vocab "$vocab" --out "$t/split" --valid-every 10 \
    --input "$t/en.txt" 2>/dev/null
for s in valid:0 test:5; do
    awk -v r=${s#*:} 'NF && NR % 10 == r' "$t/en.txt" |
        "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang en --ids >"$t/want"
    h5dump -d /tokens -b LE -o "$t/tok.bin" "$t/split/${s%%:*}-en-r000-00000.h5" >/dev/null
    [ "$(od -An -tu2 -v "$t/tok.bin" | wc -w)" = "$(($(wc -w <"$t/want") + $(wc -l <"$t/want")))" ] &&
        [ "$(attr "$t/split/${s%%:*}-en-r000-00000.h5" n_sentences)" = "$(wc -l <"$t/want")" ]
    check "split_rule_${s%%:*}" $? "the ${s%%:*} shard does not hold lines k % 10 == ${s#*:}"
done

# ---- 2 MPI ranks: same sentences and tokens, one shard set per rank ----
if [ -n "$mpiexec" ]; then
    split -n l/2 -d "$t/en.txt" "$t/part"
    "$mpiexec" -n 2 "$xlmc" prep --lang en --codes "$codes" --vocab "$vocab" --out "$t/mpi" \
        --valid-every 0 --input "$t/part00" "$t/part01" 2>"$t/err"
    check mpi_prep $? "$(cat "$t/err")"
    [ -f "$t/mpi/train-en-r000-00000.h5" ] && [ -f "$t/mpi/train-en-r001-00000.h5" ] &&
        grep -Eq "^train +en +2 +300 +$(wc -w <"$t/enc_ids.en")\$" <("$xlmc" data-info "$t/mpi")
    check mpi_two_ranks $? "$(ls "$t/mpi"); $("$xlmc" data-info "$t/mpi" 2>&1)"
fi
[ $fail = 0 ] && echo PASS
exit $fail
