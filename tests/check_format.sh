#!/usr/bin/env bash
# tests/check_format.sh — every hand-written C, C++ and CUDA file is formatted as .clang-format
# says (clang-format 14, Debian 12's). Lists the files that differ and exits 1 if any does;
# `clang-format-14 -i FILE` fixes one. Generated files (data/tok_tables.[ch]) are left out.
# usage: tests/check_format.sh [CLANG_FORMAT]   (default: clang-format-14)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
cf=${1:-clang-format-14}
command -v "$cf" >/dev/null || { echo "check_format: $cf is not installed (apt-get install clang-format-14)"; exit 2; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.cu' '*.cuh')
else
  mapfile -t files < <(find core data kernels train tests -name '*.c' -o -name '*.h' -o \
                       -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' | sort)
fi
bad=()
for f in "${files[@]}"; do
  case $f in data/tok_tables.c | data/tok_tables.h) continue ;; esac
  [ -f "$f" ] || continue
  "$cf" --dry-run -Werror --style=file "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format (fix: $cf -i FILE):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
