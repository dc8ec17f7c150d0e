#!/usr/bin/env bash
# tests/gpu/run.sh — the GPU kit: one command that builds xlmc's CUDA backend on a machine that
# lacks our Debian libraries (the lent H200, or any CUDA machine) from the pack of
# tests/gpu/pack.sh, checks it and races PyTorch, in well under 8 minutes:
#   build     unpack the pack into a prefix, configure and build for the GPU found
#   selftest  xlmc selftest --device cuda: every op against the CPU reference, fp32 and fp16,
#             at the test shapes (--small) and with the 64699-word classifier of ende-1024
#   train     20 fp16 steps of configs/xlm-clm-ende-1024.ini (batch cut to 4 micro-batches,
#             warm-up to 5 steps) on shards that `xlmc prep` makes from tests/slurm/corpus;
#             the loss must fall and the loss scale stay sane
#   race      xlmc (tests/gpu/gpu_step.c) against PyTorch AMP (race.py: autocast fp16,
#             GradScaler, fused Adam; then torch.compile), alternating, at ende-1024's shape
#   kernels   per-kernel GPU times of one xlmc step (Nsight Compute, where it works)
# Each part prints its result when it ends, whatever later parts do; the summary says which ran.
#
#   tests/gpu/run.sh --dry-run   here, no GPU: the same from the pack, with the system's own
#       copies of the packed libraries hidden (unshare --mount), the CPU backend, configs/tiny.ini
#       for train and race; plus an ldd audit and the pack's size. What CI runs (label gpu-kit).
#
# usage: tests/gpu/run.sh [--dry-run] [--pack DIR | --no-pack] [--build BUILD] [--arch SM]
#   DIR: the pack (default <checkout>/gpu-pack); --no-pack: the machine has our Debian
#   packages (tests/run.sh installs them); BUILD: the build folder (default
#   <checkout>/build-gpu, or build-dry for the dry run, which empties it first); SM: the CUDA
#   architecture to build for (default: the first GPU's, from nvidia-smi, e.g. 90).
# Logs and summary.txt go to $OUT when set, else to BUILD/kit-out.
# Exit status: 0 every part that ran passed, 1 a part failed, 2 usage.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
dry=0
pack=$src/gpu-pack
build=
arch=
while (($#)); do
    case $1 in
    --dry-run) dry=1; shift ;;
    --pack) pack=$(realpath -m "$2"); shift 2 ;;
    --build) build=$(realpath -m "$2"); shift 2 ;;
    --no-pack) pack=; shift ;;
    --arch) arch=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$pack" ] && [ ! -d "$pack/debs" ]; then
    echo "run.sh: no pack at $pack: run tests/gpu/pack.sh first, or give --no-pack" >&2
    exit 2
fi
if ((dry)) && [ -z "$pack" ]; then echo "run.sh: --dry-run needs a pack" >&2; exit 2; fi
# BPE codes and vocabulary for the train part: the pack's copy, else ../shared's.
bpe=${pack:+$pack/data}
bpe=${bpe:-${XLMC_SHARED:-$src/../shared}/xlm-ende}

# The dry run re-enters itself in a private mount namespace, where the system's copy of every
# file of the pack's "own" packages is covered by /dev/null (and the h5cc of hdf5-helpers, which
# is not packed): whatever the build or a program still takes from the system fails.
# Not root: a user namespace of one's own gives the same right over a private mount table.
if ((dry)) && [ "${XLMC_KIT_HIDDEN:-}" != 1 ]; then
    ns=(unshare --mount --propagation private)
    unshare --mount true 2>/dev/null || ns=(unshare --user --map-root-user --mount --propagation private)
    if ! "${ns[@]}" true 2>/dev/null; then
        echo "run.sh: skipped: no private mount namespace here (unshare --mount, or --user, refused)"
        exit 77
    fi
    exec env XLMC_KIT_HIDDEN=1 "${ns[@]}" bash "$0" --dry-run --pack "$pack" ${build:+--build "$build"}
fi

t_start=$(date +%s)
if [ -z "$build" ]; then
    if ((dry)); then build=$src/build-dry; else build=$src/build-gpu; fi
fi
# The dry run proves a build from nothing but the pack: no objects of an earlier run.
((dry)) && rm -rf "${build:?}"
out=${OUT:-$build/kit-out}
mkdir -p "$out"
work=$build/kit-work
rm -rf "$work"
mkdir -p "$work"
summary=$out/summary.txt
: >"$summary"
failed=0
say() { printf '\n== %s ==\n' "$*"; }
# result PART ok|FAIL|not-run TEXT: one summary line, printed at once
result() {
    local line
    line=$(printf '%-9s %-8s %s' "$1" "$2" "$3")
    echo "$line" | tee -a "$summary"
    [ "$2" = FAIL ] && failed=1
    return 0
}
elapsed() { echo $(($(date +%s) - t_start)); }
if ((dry)); then parts=(hide build ldd selftest train race pack); else
    parts=(build selftest train race kernels); fi
# finish: a not-run line for every part that has none, the total, the summary; exit
finish() {
    local p
    for p in "${parts[@]}"; do
        grep -q "^$p " "$summary" || result "$p" not-run "the run stopped before it"
    done
    result total "$( ((failed)) && echo FAIL || echo ok)" "$(elapsed) s wall, logs in $out"
    say "summary"
    cat "$summary"
    exit $failed
}
# The lent machine gives one command 10 minutes; the kit keeps to 8, dropping what is left.
# The dry run has ctest's 10 minutes.
budget=480
((dry)) && budget=560
left() { echo $((budget - $(elapsed))); }
# seconds a command may still take: what is left of the budget, at least 30 (a hung GPU
# program must not take the summary with it when the device tool stops the command)
lim() { local l; l=$(left); echo $((l > 30 ? l : 30)); }

# shellcheck source=tests/gpu/prefix.sh
. "$here/prefix.sh"

if ((dry)); then
    say "hiding the system's copies of the packed libraries"
    mapfile -t own < <(awk '!/^#/ && $2 == "own" {print $1}' "$here/packages.txt")
    installed=()
    for p in "${own[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' && installed+=("$p")
    done
    # Regular files only (a symlink's target is hidden through its own package); one process
    # for the ~1500 bind mounts (mount(8) once per file takes half a minute).
    n=$({ ((${#installed[@]})) && dpkg -L "${installed[@]}"; echo /usr/bin/h5cc; } |
        grep -v '^/usr/share/\(doc\|man\|lintian\)/' | python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
MS_BIND = 4096
n = 0
for f in sys.stdin.read().split("\n"):
    if f and os.path.isfile(f) and not os.path.islink(f):
        if libc.mount(b"/dev/null", f.encode(), None, MS_BIND, None) != 0:
            sys.exit(f"cannot hide {f}: {os.strerror(ctypes.get_errno())}")
        n += 1
print(n)')
    if [ -n "$n" ] && ((n > 0)); then
        result hide ok "$n files of ${#installed[@]} packed packages installed here hidden"
    else
        result hide FAIL "could not hide the system's copies"
        finish
    fi
fi

# ---- build ----
say "build"
root=$work/root
xlmc=$build/xlmc
step_bin=$build/tests/gpu/xlmc_gpu_step
rm -f "$xlmc" "$step_bin"
if [ -z "$pack" ]; then
    PACK_CMAKE_ARGS=() PACK_LIBPATH=''
    pack_exec() { "$@"; }
elif ! pack_unpack "$pack/debs" "$root" >"$out/build.log" 2>&1; then
    cat "$out/build.log"
    result build FAIL "unpacking the pack failed (build.log)"
    finish
else
    pack_env "$root"
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cargs=(-DCMAKE_BUILD_TYPE=Release "${PACK_CMAKE_ARGS[@]}")
if ((dry)); then
    # warnings are errors with the compiler CI checks them with; another machine's newer
    # compiler may warn where ours does not, which is no reason to stop the kit there
    cargs+=(-DXLMC_CUDA=OFF -DXLMC_WERROR=ON)
    jobs=$(nproc)
else
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    [ -n "$arch" ] ||
        arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    cargs+=(-DXLMC_CUDA=ON ${arch:+-DCMAKE_CUDA_ARCHITECTURES=$arch})
    # NCCL comes as the nvidia-nccl wheel beside torch: its library has only the versioned name.
    nccl=$(python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)
    if [ -n "$nccl" ] && [ -e "$nccl/lib/libnccl.so.2" ] && [ -e "$nccl/include/nccl.h" ]; then
        cargs+=(-DNCCL_LIB="$nccl/lib/libnccl.so.2")
        export CPATH=$nccl/include${CPATH:+:$CPATH}
        PACK_LIBPATH=${PACK_LIBPATH:+$PACK_LIBPATH:}$nccl/lib
    fi
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && PACK_LIBPATH=${PACK_LIBPATH:+$PACK_LIBPATH:}$d
    done
    jobs=$(($(nproc) + 2))
fi
echo "cmake ${cargs[*]}" | tee -a "$out/build.log"
if cmake -S "$src" -B "$build" "${gen[@]}" "${cargs[@]}" >>"$out/build.log" 2>&1 &&
    timeout "$(lim)" cmake --build "$build" -j "$jobs" --target xlmc xlmc_gpu_step >>"$out/build.log" 2>&1; then
    result build ok "$(grep -m1 -o 'CUDA backend ON.*' "$out/build.log" || echo 'CPU backend only') ($(elapsed) s)"
else
    tail -n 40 "$out/build.log"
    result build FAIL "configure or build failed (build.log); PyTorch's side of the race still runs"
fi
have_xlmc() { [ -x "$xlmc" ] && [ -x "$step_bin" ]; }

if ((dry)) && ! have_xlmc; then
    result ldd not-run "no xlmc build"
elif ((dry)); then
    say "ldd audit: every library of xlmc and Open MPI from the pack or the C toolchain"
    bad=0
    for f in "$xlmc" "$step_bin" "$root/usr/bin/orted" "$root/usr/bin/pkgconf" \
        "$root/usr/lib/$PACK_ARCH"/openmpi/lib/openmpi3/mca_{ess,pmix,plm,schizo,btl,pml}_*.so; do
        [ -e "$f" ] || continue
        # a library hidden here but missing from the pack shows as "not found" or as an
        # error ("file too short": ld.so read the /dev/null over the system's copy)
        if ! deps=$(pack_exec ldd "$f" 2>&1) || grep -qiE 'not found|error|too short' <<<"$deps"; then
            echo "  $(basename "$f"):"
            grep -iE 'not found|error|too short' <<<"$deps" | sed 's/^/    /'
            bad=$((bad + 1))
            continue
        fi
        while read -r lib path; do
            case $path in
            "$root"/*) ;;
            */libc.so.* | */libm.so.* | */libdl.so.* | */libpthread.so.* | */librt.so.* | \
                */libresolv.so.* | */ld-linux*.so.* | */libgcc_s.so.* | */libstdc++.so.* | \
                */libgomp.so.*) ;;
            *) echo "  $(basename "$f"): $lib -> $path"; bad=$((bad + 1)) ;;
            esac
        done < <(awk '/=>/ {print $1, $3}' <<<"$deps")
    done
    if ((bad)); then result ldd FAIL "$bad libraries missing or resolving outside the pack"; else
        result ldd ok "every library of xlmc, orted, pkgconf and the MPI plugins resolves into the pack or the C toolchain"; fi
fi

# ---- selftest ----
say "selftest"
if ! have_xlmc; then
    result selftest not-run "no xlmc build"
else
    # Every op at the test shapes; then (not in the dry run: the same ops again) with the
    # 64699-word classifier; then the whole model's first step at the config's shapes against
    # the CPU backend, fp32 and fp16 (gpu_step.c --check-against-cpu).
    if ((dry)); then
        dev=cpu checks=("--small --seed 1")
        shape=(--config "$src/configs/tiny.ini" --vocab 8000)
        what="cpu against the CPU reference: ops at the test shapes, fp32 + fp16; tiny.ini step"
    else
        dev=cuda checks=("--small --seed 1" "--seed 2")
        shape=(--config "$src/configs/xlm-clm-ende-1024.ini" --micro-batch 2)
        what="cuda against the CPU reference: ops at the test shapes and with V=64699, fp32 + fp16; ende-1024 step (B=2, T=256), fp32 + fp16"
    fi
    rc=0
    for c in "${checks[@]}"; do
        # shellcheck disable=SC2086 # the options of one check
        pack_exec timeout "$(lim)" "$xlmc" selftest --device $dev $c >>"$out/selftest.log" 2>&1
        r=$?
        ((rc == 0)) && rc=$r
    done
    for p in fp32 fp16; do
        pack_exec timeout "$(lim)" "$step_bin" "${shape[@]}" --device $dev --precision $p --check-against-cpu \
            >>"$out/selftest.log" 2>&1
        r=$?
        ((rc == 0)) && rc=$r
    done
    grep -E 'FAIL|skipped|: (passed|FAILED)|^xlmc check' "$out/selftest.log" | head -30
    case $rc in
    0) result selftest ok "$what" ;;
    77) result selftest FAIL "no usable GPU: $(grep -m1 skipped "$out/selftest.log")" ;;
    *) result selftest FAIL "exit $rc: $what (selftest.log)" ;;
    esac
fi

# ---- train ----
say "train"
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export HDF5_USE_FILE_LOCKING=FALSE
# The config under test with the run cut to fit: a few micro-batches per step, short warm-up.
if ((dry)); then
    cfgsrc=$src/configs/tiny.ini device=cpu
    set_keys=(batch_tokens=128 micro_batch=4 warmup=5 log_every=1 eval_every=100000 checkpoint_every=100000)
else
    cfgsrc=$src/configs/xlm-clm-ende-1024.ini device=cuda
    set_keys=(batch_tokens=32768 warmup=5 log_every=1 eval_every=100000 checkpoint_every=100000)
fi
if ! have_xlmc; then
    result train not-run "no xlmc build"
else
    data=$work/data prep_ok=1
    for lang in en de; do
        pack_exec "$xlmc" prep --lang $lang --input "$src/tests/slurm/corpus/$lang.txt" \
            --codes "$bpe/codes" --vocab "$bpe/vocab" --out "$data" --valid-every 10 \
            >>"$out/train.log" 2>&1 || prep_ok=0
    done
    cfg=$work/train.ini
    cp "$cfgsrc" "$cfg"
    for kv in "${set_keys[@]}"; do sed -i "s|^${kv%%=*} *=.*|${kv%%=*} = ${kv#*=}|" "$cfg"; done
    if ((prep_ok)); then
        pack_exec timeout "$(lim)" "$xlmc" train --config "$cfg" --data "$data" --run-dir "$work/run" \
            --device $device --max-steps 20 >>"$out/train.log" 2>&1
        rc=$?
        grep -E '^step ' "$out/train.log" | sed -n '1p;5p;10p;15p;20p'
        cp "$work/run/metrics.jsonl" "$out/" 2>/dev/null
        verdict=$(python3 "$here/train_check.py" "$work/run/metrics.jsonl" 2>&1)
        vrc=$?
        echo "$verdict"
        if ((rc == 0 && vrc == 0)); then
            result train ok "$(basename "$cfgsrc") on $device: $verdict"
        else
            tail -n 5 "$out/train.log"
            result train FAIL "exit $rc; $verdict (train.log)"
        fi
    else
        tail -n 5 "$out/train.log"
        result train FAIL "xlmc prep failed (train.log)"
    fi
fi

# ---- race ----
say "race"
if ((dry)); then
    rargs=(--config "$src/configs/tiny.ini" --vocab 8000 --warmup 1 --steps 3)
    modes=(eager) rounds=1
else
    rargs=(--config "$src/configs/xlm-clm-ende-1024.ini" --warmup 3 --steps 10)
    modes=(eager compile) rounds=2
fi
# torch.compile costs a minute of compiling per run: once, in the first round, is enough.
xbest=0 peak=0 flops=0
declare -A pbest
for ((i = 1; i <= rounds; i++)); do
    if have_xlmc; then
        xo=$(pack_exec timeout "$(lim)" "$step_bin" "${rargs[@]}" --device $device 2>&1)
        echo "$xo" | tee -a "$out/race.log"
        x=$(awk '/^xlmc tokens\/s/ {print $3}' <<<"$xo")
        peak=$(awk '/^xlmc peak TFLOP\/s/ {print $4}' <<<"$xo")
        flops=$(awk '/^xlmc flops\/token/ {print $3}' <<<"$xo")
        xbest=$(awk -v a="$xbest" -v b="${x:-0}" 'BEGIN { print (b > a ? b : a) }')
    fi
    # without xlmc's measured peak, PyTorch's MFU is against the H200 datasheet (fp16 dense)
    ((dry)) || [ "${peak:-0}" != 0 ] || peak=989
    for mode in "${modes[@]}"; do
        if [ "$mode" = compile ] && ((i > 1 || $(left) < 200)); then continue; fi
        po=$(PYTHONUNBUFFERED=1 timeout "$(lim)" python3 "$here/race.py" "${rargs[@]}" --device $device \
            --mode "$mode" --peak-tflops "${peak:-0}" 2>&1 | tail -n 3)
        echo "$po" | tee -a "$out/race.log"
        p=$(awk -v m="pytorch-$mode" '$1 == m && $2 == "tokens/s" {print $3}' <<<"$po")
        pbest[$mode]=$(awk -v a="${pbest[$mode]:-0}" -v b="${p:-0}" 'BEGIN { print (b > a ? b : a) }')
    done
done
# the same steps with every kernel launched one by one (train.cuda_graphs = false): what the
# graphs save, measured
xoff=0
if have_xlmc && ((!dry)); then
    xo=$(pack_exec timeout "$(lim)" "$step_bin" "${rargs[@]}" --device $device --no-graphs 2>&1)
    echo "$xo" | tee -a "$out/race.log"
    xoff=$(awk '/^xlmc tokens\/s/ {print $3}' <<<"$xo")
fi
line="xlmc $xbest tok/s"
line+=$(awk -v x="$xbest" -v o="${xoff:-0}" 'BEGIN {
    if (o > 0) printf " (%.1f tok/s without CUDA graphs: graphs x%.3f)", o, x / o }')
race_ok=1
awk -v x="$xbest" 'BEGIN { exit !(x > 0) }' || race_ok=0
for mode in "${modes[@]}"; do
    p=${pbest[$mode]:-0}
    line+=$(awk -v m="$mode" -v x="$xbest" -v p="$p" 'BEGIN {
        printf "; pytorch-%s %.1f tok/s, xlmc/pytorch %s", m, p, (p > 0 && x > 0 ? sprintf("%.2f", x / p) : "n/a") }')
    awk -v p="$p" 'BEGIN { exit !(p > 0) }' || race_ok=0
done
line+=$(awk -v x="$xbest" -v f="$flops" -v pk="${peak:-0}" 'BEGIN {
    if (pk > 0 && f > 0) printf "; xlmc MFU %.1f%% of %.4g TFLOP/s", 100 * x * f / (pk * 1e12), pk }')
if ((race_ok)); then result race ok "best of $rounds: $line"; else result race FAIL "$line (race.log)"; fi

# ---- per-kernel times ----
if ((!dry)); then
    say "kernels"
    if ! have_xlmc; then
        result kernels not-run "no xlmc build"
    elif (($(left) < 60)); then
        result kernels not-run "out of time ($(elapsed) s of $budget used)"
    elif command -v ncu >/dev/null; then
        # ncu keeps the machine's libraries; the program it starts gets the pack's (it
        # follows child processes). One step, its set-up kernels included.
        timeout $(($(left) < 180 ? $(left) - 10 : 170)) ncu --clock-control none \
            --target-processes all --metrics gpu__time_duration.sum --csv --print-units base \
            env LD_LIBRARY_PATH="$PACK_LIBPATH" "$step_bin" "${rargs[@]}" --device cuda \
            --warmup 0 --steps 1 >"$out/ncu.csv" 2>&1
        rc=$?
        if ((rc == 0)) && python3 "$here/kernel_table.py" "$out/ncu.csv" 1 >"$out/kernels.txt" 2>&1; then
            head -n 25 "$out/kernels.txt"
            result kernels ok "$(tail -n 1 "$out/kernels.txt")"
        else
            grep -v '^"' "$out/ncu.csv" | tail -n 5
            result kernels FAIL "ncu exit $rc (ncu.csv)"
        fi
    else
        result kernels not-run "ncu is not on this machine"
    fi
fi

if ((dry)); then
    bytes=$(du -sb "$pack" | cut -f1)
    mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
    if ((bytes <= 56 * 1024 * 1024)); then result pack ok "$mib MiB (limit 56 MiB)"; else
        result pack FAIL "$mib MiB, over the 56 MiB limit"; fi
fi
finish
