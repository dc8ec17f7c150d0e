#!/usr/bin/env bash
# test_demo_xlm — train/demo_xlm.sh shortened (500 BPE merges, 30 steps): it ends with status
# 0 and a before/after table of the five objectives in which every validation perplexity has
# dropped. Needs the debian-handbook package (skipped, announced, without it). Label slow.
# usage: test_demo_xlm.sh XLMC_BIN MPIEXEC SRC_DIR
set -euo pipefail
xlmc=$(realpath "$1")
src=$3
html=${XLMC_HANDBOOK_HTML:-/usr/share/doc/debian-handbook/html}
if [ ! -d "$html/en-US" ] || [ ! -d "$html/de-DE" ]; then
    echo "SKIP: the debian-handbook package is not installed ($html)"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/xlmc-demo-xlm.XXXXXX")
trap 'rm -rf "$work"' EXIT
DEMO_XLMC=$xlmc DEMO_STEPS=30 DEMO_CODES=500 "$src/train/demo_xlm.sh" "$work/demo" \
    >"$work/demo.log" 2>&1 || { tail -20 "$work/demo.log"; echo "FAIL: demo_xlm.sh failed"; exit 1; }
sed -n '/^objective /,/^checkpoint:/p' "$work/demo.log"
python3 - "$work/demo.log" <<'PY'
import sys
rows = {}
table = False
for line in open(sys.argv[1]):
    f = line.split()
    if f[:3] == ["objective", "untrained", "trained"]:
        table = True
    elif table and len(f) == 3:
        rows[f[0]] = (float(f[1]), float(f[2]))
want = ["clm:de", "clm:en", "mlm:de", "mlm:en", "tlm:de-en"]
assert sorted(rows) == sorted(want), f"objectives in the table: {sorted(rows)}"
for name, (before, after) in rows.items():
    assert after < before, f"{name}: validation perplexity {before} -> {after} did not drop"
print("every objective's validation perplexity dropped")
PY
echo PASS
