#!/usr/bin/env bash
# tests/gpu/dry_run_test.sh — the ctest side of the GPU kit (label gpu-kit), in BINDIR:
#   pack BINDIR                 tests/gpu/pack.sh into BINDIR/gpu-pack (77: packages cannot
#                               be downloaded here, announced)
#   full BINDIR                 tests/gpu/run.sh --dry-run from that pack: must pass
#   without PKG PATTERN BINDIR  the same pack less PKG: the dry run must FAIL, and its output
#                               must match PATTERN (grep -E; the tool's complaint about the
#                               missing piece), so that it failed for that reason and not
#                               another
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=$1
shift
case $mode in
pack)
    "$here/pack.sh" --out "$1/gpu-pack"
    rc=$?
    if ((rc == 3)); then
        echo "SKIP: the GPU kit's packages cannot be downloaded on this machine"
        exit 77
    fi
    exit $rc
    ;;
full)
    [ -d "$1/gpu-pack/debs" ] || { echo "SKIP: no pack (the gpu_kit_pack test skipped)"; exit 77; }
    exec "$here/run.sh" --dry-run --pack "$1/gpu-pack" --build "$1/dry-full"
    ;;
without)
    pkg=$1 pattern=$2 bin=$3
    [ -d "$bin/gpu-pack/debs" ] || { echo "SKIP: no pack (the gpu_kit_pack test skipped)"; exit 77; }
    less=$bin/gpu-pack-without-$pkg
    rm -rf "$less"
    mkdir -p "$less/debs"
    cp -r "$bin/gpu-pack/data" "$less/"
    n=0
    for deb in "$bin"/gpu-pack/debs/*.deb; do
        name=$(basename "$deb")
        if [ "${name%%_*}" = "$pkg" ]; then n=$((n + 1)); continue; fi
        ln "$deb" "$less/debs/$name" 2>/dev/null || cp "$deb" "$less/debs/$name"
    done
    ((n == 1)) || { echo "FAIL: $pkg is not in the pack"; exit 1; }
    out=$("$here/run.sh" --dry-run --pack "$less" --build "$bin/dry-without-$pkg" 2>&1)
    rc=$?
    printf '%s\n' "$out" | tail -n 30
    # the whole logs count, not only what run.sh showed of them
    out+=$'\n'$(cat "$bin/dry-without-$pkg"/kit-out/*.log 2>/dev/null)
    # the folders' own names hold PKG: only what the tools said may match PATTERN
    out=${out//"$bin/dry-without-$pkg"/BUILD}
    out=${out//"$less"/PACK}
    out=${out//"dry-without-$pkg"/BUILD}
    out=${out//"gpu-pack-without-$pkg"/PACK}
    rm -rf "$less"
    if ((rc == 0)); then
        echo "FAIL: the dry run passed with $pkg left out of the pack"
        exit 1
    fi
    if ! printf '%s\n' "$out" | grep -qiE -- "$pattern"; then
        echo "FAIL: the dry run failed (exit $rc) but its output does not name '$pattern'"
        exit 1
    fi
    echo "PASS: without $pkg the dry run fails (exit $rc) and names '$pattern'"
    ;;
*)
    echo "usage: dry_run_test.sh pack|full|without ..." >&2
    exit 2
    ;;
esac
