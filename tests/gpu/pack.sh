#!/usr/bin/env bash
# tests/gpu/pack.sh — run HERE (Debian 12, network): prepares the folder that travels with a
# call of the device tool to the lent GPU machine, which has the CUDA toolkit, CMake, ninja, a
# C compiler and Python (torch, transformers) but none of our Debian libraries and no
# registry. Then prints the exact device call to make.
#
# usage: tests/gpu/pack.sh [--out DIR] [--without PKG]...
#   DIR (default <checkout>/gpu-pack, git-ignored) receives
#     debs/      the .deb files of tests/gpu/packages.txt (apt-get download; kept between runs,
#                only missing ones are fetched); run.sh unpacks them into a prefix there
#     data/      codes and vocab of the released en-de BPE (../shared/xlm-ende does not travel)
#     MANIFEST   package, version and bytes of each .deb
#   --without PKG leaves one package out (to show that the dry run then fails).
# Exit status: 0, 1 an error (pack over its size limit, no shared/xlm-ende), 2 usage,
#   3 apt-get download could not fetch the packages.
# The folder must stay under 56 MiB: the whole working tree that travels is limited to 64 MiB.
# Environment: XLMC_SHARED (default <checkout>/../shared).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=$src/gpu-pack
without=()
while (($#)); do
    case $1 in
    --out) out=$2; shift 2 ;;
    --without) without+=("$2"); shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "pack.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
limit=$((56 * 1024 * 1024))
shared=${XLMC_SHARED:-$src/../shared}

mapfile -t pkgs < <(awk '!/^#/ && NF {print $1}' "$here/packages.txt")
for w in "${without[@]}"; do
    printf '%s\n' "${pkgs[@]}" | grep -qx "$w" || { echo "pack.sh: --without $w: not in packages.txt" >&2; exit 2; }
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | grep -vx "$w")
done

mkdir -p "$out/debs" "$out/data"
# Drop .debs of packages no longer wanted (or left out), fetch the missing ones.
for deb in "$out"/debs/*.deb; do
    [ -e "$deb" ] || continue
    name=$(basename "$deb"); name=${name%%_*}
    printf '%s\n' "${pkgs[@]}" | grep -qx "$name" || rm -f "$deb"
done
missing=()
for p in "${pkgs[@]}"; do
    compgen -G "$out/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "pack.sh: fetching ${#missing[@]} packages with apt-get download"
    # As root apt drops to _apt, which cannot write here; the files are only unpacked later.
    if ! (cd "$out/debs" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}") \
        >"$out/apt.log" 2>&1; then
        cat "$out/apt.log" >&2
        echo "pack.sh: apt-get download failed (network, or no package lists: apt-get update)" >&2
        exit 3
    fi
fi

for f in codes vocab; do
    if [ ! -s "$shared/xlm-ende/$f" ]; then
        echo "pack.sh: $shared/xlm-ende/$f is missing: set XLMC_SHARED to the shared/ folder" >&2
        exit 1
    fi
    cp "$shared/xlm-ende/$f" "$out/data/$f"
done

: >"$out/MANIFEST"
for deb in "$out"/debs/*.deb; do
    printf '%s %s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
        "$(stat -c %s "$deb")" >>"$out/MANIFEST"
done
rm -f "$out/apt.log"
bytes=$(du -sb "$out" | cut -f1)
awk -v d="$out" -v n="$(wc -l <"$out/MANIFEST")" -v b="$bytes" -v l=$((limit / 1048576)) \
    'BEGIN { printf "pack.sh: %s: %d packages, %.1f MiB (limit %d MiB)\n", d, n, b / 1048576, l }'
if ((bytes > limit)); then
    echo "pack.sh: FAIL: the pack is over the limit" >&2
    exit 1
fi

rel=$(realpath --relative-to="$src" "$out")
case $rel in
../*) echo "pack.sh: note: $out is outside the checkout; only a folder inside it can be carried" ;;
*)
    cat <<CALL

The device call (tool 'run'; the pack must be git-ignored, as /gpu-pack/ is):
  command:   bash tests/gpu/run.sh --pack $rel 2>&1
  carry:     ["$rel"]
  timeout_s: 540
Any other CUDA machine with these packages missing: copy the checkout with $rel and run the
same command there (OUT=<folder> for the logs, else they go to build-gpu/kit-out).
CALL
    ;;
esac
