#!/bin/bash
# test_prep_pairs: `xlmc prep --pair en-de` on the handbook's aligned paragraphs (the first 400
# of each language, with an empty side and a blank line made in) writes the pair shards that
# data/README.md documents: h5py (not xlmc) reads lang/lang2/n_pairs, each pair's two sides
# equal `xlmc encode --ids` of line k of each file followed by </s>; the pairs left out are
# exactly those with an empty side and those whose sides are the same text or the same ids
# (counted here by Python from the text and the ids); the split rule is the monolingual one;
# misaligned files and bad options are refused naming the cause (the loader: test_pairs).
# With MPIEXEC, 2 ranks on 2 file pairs write the same pairs as 1 rank.
# usage: test_prep_pairs.sh XLMC SHARED_DIR SRC_DIR [MPIEXEC]
set -u
xlmc=$1 shared=$2 src=$3 mpiexec=${4:-}
codes=$shared/xlm-ende/codes vocab=$shared/xlm-ende/vocab
t=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$t"' EXIT
fail=0
# shellcheck source=tests/data/expect_error.sh
. "$(dirname "$0")/expect_error.sh"
check() { # check NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fail=1; fi
}

bash "$src/data/handbook.sh" "$t/hb" 2>/dev/null || { echo "SKIP: debian-handbook is not installed"; exit 77; }
# lines 1-400; line 17 of de emptied (an empty side), line 18 empty on both sides (blank line)
for l in en de; do sed -n 1,400p "$t/hb/handbook.$l.txt" >"$t/$l.txt"; done
sed -i '17s/.*//;18s/.*//' "$t/de.txt"
sed -i '18s/.*//' "$t/en.txt"
gzip -k "$t/de.txt"

"$xlmc" prep --pair en-de --codes "$codes" --vocab "$vocab" --out "$t/shards" --valid-every 20 \
    --input "$t/en.txt" "$t/de.txt.gz" 2>"$t/prep.log" || { echo "FAIL prep --pair: $(cat "$t/prep.log")"; exit 1; }
grep "prep: en-de:" "$t/prep.log"
for l in en de; do
    "$xlmc" encode --codes "$codes" --vocab "$vocab" --lang $l --ids <"$t/$l.txt" >"$t/ids.$l" 2>"$t/enc.log" ||
        { echo "FAIL encode $l: $(cat "$t/enc.log")"; exit 1; }
done

python3 - "$t" <<'PY'
import glob, sys
import h5py
t = sys.argv[1]
fail = 0
def check(name, ok, detail=""):
    global fail
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    fail |= not ok
text = {l: open(f"{t}/{l}.txt", encoding="utf-8").read().split("\n")[:400] for l in ("en", "de")}
ids = {}
for l in ("en", "de"):
    lines = open(f"{t}/ids.{l}").read().split("\n")
    ids[l] = [[int(x) for x in s.split()] for s in lines[:400]]
check("encode_lines", all(len(ids[l]) == 400 for l in ids), "xlmc encode gave another line count")
# what data/README.md says prep keeps, by line k (from 1): split k % 20 == 0 valid, == 10 test
want = {"train": [], "valid": [], "test": []}
empty = identical = 0
for k in range(1, 401):
    a, b, ia, ib = text["en"][k - 1], text["de"][k - 1], ids["en"][k - 1], ids["de"][k - 1]
    if not ia or not ib:
        empty += bool(a or b)
        continue
    if a == b or ia == ib:
        identical += 1
        continue
    split = "valid" if k % 20 == 0 else "test" if k % 20 == 10 else "train"
    want[split].append((ia, ib))
check("empty_side_counted", empty == 1, f"{empty} pairs with one empty side, want 1 (line 17)")
check("identical_present", identical > 0, "the first 400 handbook lines hold no untranslated one?")
for split in want:
    files = sorted(glob.glob(f"{t}/shards/pairs-{split}-en-de-r000-*.h5"))
    got = []
    for f in files:
        with h5py.File(f) as h:
            a = dict(h.attrs)
            ok = (a["lang"] == "en" and a["lang2"] == "de" and a["lang_id"] == 1 and
                  a["lang2_id"] == 0 and a["split"] == split and a["format_version"] == 2 and
                  a["n_sentences"] == 2 * a["n_pairs"])
            check(f"attributes_{split}", ok, str(a))
            tok, off = h["tokens"][:], h["offsets"][:]
            check(f"offsets_{split}", len(off) == 2 * a["n_pairs"] + 1 and off[0] == 0 and
                  off[-1] == len(tok), f"{len(off)} offsets for {a['n_pairs']} pairs")
            for i in range(a["n_pairs"]):
                s1 = tok[off[2 * i]:off[2 * i + 1]].tolist()
                s2 = tok[off[2 * i + 1]:off[2 * i + 2]].tolist()
                got.append((s1, s2))
    exp = [(a + [1], b + [1]) for a, b in want[split]]
    bad = [i for i, (g, e) in enumerate(zip(got, exp)) if g != e]
    check(f"pairs_{split}", len(got) == len(exp) and not bad,
          f"{len(got)} pairs, want {len(exp)}; first difference at pair {bad[:1]}")
print(f"kept {sum(len(v) for v in want.values())}, empty side {empty}, identical {identical}")
with open(f"{t}/want_counts", "w") as f:
    f.write(f"{empty} {identical} {len(want['train'])}\n")
with open(f"{t}/want_info", "w") as f:  # what data-info must print per split (pairs, tokens)
    for split in ("train", "valid", "test"):
        if want[split]:
            f.write(f"{split} en-de {len(want[split])} "
                    f"{sum(len(a) + len(b) for a, b in want[split])}\n")  # </s> not counted
sys.exit(fail)
PY
check python_checks $? "see above"
read -r empty identical _ <"$t/want_counts"
grep -q "left out: $empty pairs with an empty side, $identical with identical sides" "$t/prep.log"
check summary_counts $? "prep's summary does not say $empty empty / $identical identical: $(grep 'prep: en-de:' "$t/prep.log")"

# data-info lists the pair shards: pairs and tokens per split as counted above
"$xlmc" data-info "$t/shards" >"$t/info" 2>&1
check data_info_status $? "$(cat "$t/info")"
awk '$2 == "en-de" {print $1, $2, $4, $5}' "$t/info" >"$t/got_info"
cmp -s "$t/got_info" "$t/want_info"
check data_info_pairs $? "data-info printed $(cat "$t/got_info"), want $(cat "$t/want_info")"

# --keep-identical keeps them
"$xlmc" prep --pair en-de --keep-identical --codes "$codes" --vocab "$vocab" --out "$t/keep" \
    --valid-every 0 --input "$t/en.txt" "$t/de.txt" 2>"$t/err2"
n=$(python3 -c "import h5py; print(h5py.File('$t/keep/pairs-train-en-de-r000-00000.h5').attrs['n_pairs'])")
[ "$n" = $((400 - 2)) ]
check keep_identical $? "$n pairs with --keep-identical, want 398 (400 lines, one empty side, one blank)"

# refused: misaligned files, odd --input count, bad --pair, the same pair again (either order)
head -390 "$t/de.txt" >"$t/short.de"
expect_error misaligned "short.de has 390 lines but .*en.txt has more" \
    "$xlmc" prep --pair en-de --codes "$codes" --vocab "$vocab" --out "$t/o2" --input "$t/en.txt" "$t/short.de"
left=$(find "$t/o2" -name '*.h5' -o -name '*.tmp' 2>/dev/null)
[ -z "$left" ]
check misaligned_leaves_nothing $? "left behind: $left"
expect_error odd_inputs "two by two" \
    "$xlmc" prep --pair en-de --codes "$codes" --vocab "$vocab" --out "$t/o3" --input "$t/en.txt"
expect_error bad_pair "--pair en-en: give two different known languages" \
    "$xlmc" prep --pair en-en --codes "$codes" --vocab "$vocab" --out "$t/o3" --input "$t/en.txt" "$t/de.txt"
expect_error pair_again "already holds de-en shards .*pairs-train-en-de" \
    "$xlmc" prep --pair de-en --codes "$codes" --vocab "$vocab" --out "$t/shards" --input "$t/de.txt" "$t/en.txt"

# ---- 2 MPI ranks, 2 file pairs: the same pairs, in the same order by file name ----
if [ -n "$mpiexec" ]; then
    for l in en de; do split -l 200 -d "$t/$l.txt" "$t/part.$l."; done
    args=(prep --pair en-de --codes "$codes" --vocab "$vocab" --valid-every 0 --input
          "$t/part.en.00" "$t/part.de.00" "$t/part.en.01" "$t/part.de.01")
    "$xlmc" "${args[@]}" --out "$t/one" 2>"$t/one.log" &&
        "$mpiexec" -n 2 "$xlmc" "${args[@]}" --out "$t/two" 2>"$t/two.log"
    check mpi_prep $? "$(cat "$t/one.log" "$t/two.log")"
    python3 - "$t" <<'PY'
import glob, sys
import h5py
def pairs(d):
    out = []
    for f in sorted(glob.glob(f"{d}/pairs-train-en-de-*.h5")):
        with h5py.File(f) as h:
            tok, off = h["tokens"][:], h["offsets"][:]
            out += [tok[off[i]:off[i + 1]].tolist() for i in range(len(off) - 1)]
    return out
one, two = pairs(f"{sys.argv[1]}/one"), pairs(f"{sys.argv[1]}/two")
n2 = len(glob.glob(f"{sys.argv[1]}/two/pairs-train-en-de-r00[01]-*.h5"))
print(f"1 rank: {len(one) // 2} pairs, 2 ranks: {len(two) // 2} pairs in {n2} shards")
sys.exit(0 if one == two and len(one) > 0 and n2 == 2 else 1)
PY
    check mpi_two_ranks_same_pairs $? "1 and 2 ranks wrote different pairs"
fi
[ $fail = 0 ] && echo PASS
exit $fail
