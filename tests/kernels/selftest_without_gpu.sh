#!/bin/sh
# selftest_without_gpu.sh XLMC — with every GPU hidden (CUDA_VISIBLE_DEVICES=""), or in a build
# without the CUDA backend, `xlmc selftest --device cuda` must say why and exit 77 (skipped),
# never pass and never crash. Runs the same on machines with and without a GPU.
out=$(CUDA_VISIBLE_DEVICES= "$1" selftest --device cuda --small 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" = 77 ] || { echo "FAIL: expected exit 77 with no visible GPU, got $rc"; exit 1; }
printf '%s\n' "$out" | grep -q 'selftest: skipped: ' || { echo "FAIL: exit 77 without a reason"; exit 1; }
echo "PASS: no visible GPU -> announced skip, exit 77"
