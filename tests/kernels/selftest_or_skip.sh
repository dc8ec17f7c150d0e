#!/bin/sh
# selftest_or_skip.sh XLMC — `xlmc selftest --device cuda` passes on a GPU; without one (or in
# a build without the CUDA backend) it must say why and exit 77.
out=$("$1" selftest --device cuda --small 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" = 77 ]; then
  printf '%s\n' "$out" | grep -q 'selftest: skipped: ' || { echo "exit 77 without a reason"; exit 1; }
  exit 0
fi
exit "$rc"
