#!/usr/bin/env bash
# test_plot_objectives — `xlmc plot` draws one line per record type and objective: a run that
# alternates clm and mlm logs each step's loss under its own objective, and one line through
# them all would zigzag between the two losses. A log without objectives (written before
# them) stays one train and one valid line. usage: test_plot_objectives.sh XLMC
set -euo pipefail
xlmc=$1
command -v gnuplot >/dev/null || { echo "SKIP: gnuplot not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$work/mixed" "$work/plain" "$work/empty"
cat >"$work/mixed/metrics.jsonl" <<'J'
{"type": "train", "step": 10, "tokens": 1000, "loss": 9.1, "objective": "clm"}
{"type": "train", "step": 11, "tokens": 1100, "loss": 6.1, "objective": "mlm:de"}
{"type": "train", "step": 12, "tokens": 1200, "loss": 8.9, "objective": "clm"}
{"type": "valid", "step": 12, "tokens": 1200, "loss": 8.8, "objective": "clm"}
{"type": "valid", "step": 12, "tokens": 1200, "loss": 5.8, "objective": "mlm:de"}
{"type": "train", "step": 13, "tokens": 1300, "loss": 5.9, "objective": "mlm:de"}
{"type": "train", "step": 14, "tokens": 1400, "loss": 8.7, "objective": "clm"}
J
png=$("$xlmc" plot "$work/mixed" 2>"$work/err") || { cat "$work/err"; fail "plot failed"; }
[ "$png" = "$work/mixed/loss.png" ] || fail "stdout is not the picture's path: $png"
[ "$(head -c 4 "$png" | tail -c 3)" = PNG ] || fail "$png is not a PNG"
grep -qx "plot: train clm, 3 points" "$work/err" || { cat "$work/err"; fail "train clm line"; }
grep -qx "plot: train mlm:de, 2 points" "$work/err" || fail "train mlm:de line"
grep -qx "plot: valid clm, 1 points" "$work/err" || fail "valid clm line"
grep -qx "plot: valid mlm:de, 1 points" "$work/err" || fail "valid mlm:de line"
[ "$(grep -c '^plot: ' "$work/err")" = 4 ] || fail "expected 4 lines: $(cat "$work/err")"

# a log of one objective (and one written before objectives): train and valid, no names
printf '%s\n' '{"type": "train", "tokens": 10, "loss": 3}' '{"type": "train", "tokens": 20, "loss": 2}' \
    '{"type": "valid", "tokens": 20, "loss": 2.5}' '{"type": "eval", "tokens": 20, "loss": 1}' \
    >"$work/plain/metrics.jsonl"
"$xlmc" plot "$work/plain" >/dev/null 2>"$work/err" || fail "plot of a plain log failed"
grep -qx "plot: train, 2 points" "$work/err" || { cat "$work/err"; fail "plain train line"; }
grep -qx "plot: valid, 1 points" "$work/err" || fail "plain valid line"

# nothing to draw: a clear error, non-zero, and no picture
: >"$work/empty/metrics.jsonl"
if "$xlmc" plot "$work/empty" >/dev/null 2>"$work/err"; then fail "an empty log was plotted"; fi
grep -q "no train or valid loss" "$work/err" || fail "unclear error: $(cat "$work/err")"
[ ! -e "$work/empty/loss.png" ] || fail "a picture was written for an empty log"
echo PASS
