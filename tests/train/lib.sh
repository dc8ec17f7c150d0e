# shellcheck shell=bash
# tests/train/lib.sh — shared by the tests/train/*.sh scripts (sourced).
# usage in a test: . lib.sh "$@"   with args XLMC_BIN MPIEXEC SRC_DIR
# Provides: $xlmc, mpi N ARGS (mpirun with N ranks), $work (removed on exit), make_vocab DIR,
# make_data DIR VOCAB_DIR [FIRST LAST] (prep en+de of corpus lines FIRST..LAST), write_config.
set -euo pipefail
xlmc=$(realpath "$1")
mpiexec=$2
src=$3
corpus=$src/tests/slurm/corpus
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
"$xlmc" train --help >/dev/null 2>&1 || skip "this xlmc has no train command"
"$xlmc" prep --help >/dev/null 2>&1 || skip "this xlmc has no prep command"

work=$(mktemp -d "${TMPDIR:-/tmp}/xlmc-train-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

mpi() { # mpi N ARGS...: xlmc ARGS on N ranks
    local n=$1
    shift
    "$mpiexec" -np "$n" "$xlmc" "$@"
}

# make_vocab DIR: 400 BPE merges learned from both corpora (seconds, not minutes)
make_vocab() {
    "$xlmc" bpe-learn --codes 400 --lang en --out "$1" "$corpus/en.txt" "$corpus/de.txt" \
        >"$work/bpe.log" 2>&1 || fail "bpe-learn: $(cat "$work/bpe.log")"
}

# make_data OUT VOCAB_DIR [FIRST LAST]: shards of corpus lines FIRST..LAST (default all)
make_data() {
    local out=$1 voc=$2 first=${3:-1} last=${4:-100000} lang txt
    local tdir
    tdir=$work/text-$(basename "$out")
    mkdir -p "$tdir"
    for lang in en de; do
        txt=$tdir/$lang.txt
        sed -n "${first},${last}p" "$corpus/$lang.txt" >"$txt"
        "$xlmc" prep --lang "$lang" --input "$txt" --codes "$voc/codes" --vocab "$voc/vocab" \
            --out "$out" --valid-every 10 >"$work/prep.log" 2>&1 ||
            fail "prep $lang: $(cat "$work/prep.log")"
    done
}

# write_config OUT KEY=VALUE...: configs/tiny.ini with keys replaced
write_config() {
    local out=$1 kv
    shift
    cp "$src/configs/tiny.ini" "$out"
    for kv in "$@"; do
        grep -q "^${kv%%=*} = " "$out" || fail "write_config: no key ${kv%%=*} in tiny.ini"
        sed -i "s|^${kv%%=*} = .*|${kv%%=*} = ${kv#*=}|" "$out"
    done
}

# train_losses METRICS: "step loss" per train line, the loss as logged (text)
train_losses() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line, parse_float=str)
    if r.get("type") == "train":
        print(r["step"], r["loss"])' "$1"
}
