#!/usr/bin/env bash
# tests/run.sh — the whole xlmc test suite, from a fresh Debian 12 machine.
#
#   1. installs what is missing (Debian packages; Python packages from pip for the tests that
#      compare against Hugging Face at run time),
#   2. checks the formatting of every hand-written C/C++/CUDA file (tests/check_format.sh),
#   3. builds build/ with warnings as errors (CUDA backend too when nvcc is present) and runs
#      every test with ctest,
#   4. builds build-asan/ with AddressSanitizer + UBSan and runs the tests again there
#      (all but those labelled slow, slurm or bench),
#   5. builds build-fuzz/ with clang and runs the libFuzzer harnesses of tests/fuzz for a fixed
#      number of inputs each (label fuzz; only there, the release build does not have them).
# Environment: XLMC_JOBS (parallel jobs, default nproc), XLMC_SKIP_ASAN=1 to skip step 4,
# XLMC_SKIP_FUZZ=1 to skip step 5,
# XLMC_TEST_REGEX to run a subset (ctest -R).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${XLMC_JOBS:-$(nproc)}

say() { printf '\n== %s ==\n' "$*"; }

# ---- 1. packages ----
debs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libopenblas-dev libinih-dev libjansson-dev libxxhash-dev xxhash zlib1g-dev gnuplot-nox
      debian-handbook python3-pip shellcheck clang-format-14 clang-14 libclang-rt-14-dev
      iproute2)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Pinned to the versions the fixtures and reference comparisons were made and checked with.
py_need=(numpy==2.4.6 h5py==3.16.0 safetensors==0.8.0 sacremoses==0.2.0 torch==2.15.0
         transformers==5.24.0)
if ! python3 -c 'import numpy, h5py, safetensors, sacremoses, torch, transformers' 2>/dev/null; then
  say "installing Python packages for the reference tests: ${py_need[*]}"
  python3 -m pip install -q "${py_need[@]}" 2>&1 | grep -v 'Running pip as the' || true
fi

# Open MPI as root in containers and CI, more ranks than cores in tests.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

ctest_args=(--output-on-failure -j "$jobs")
[ -n "${XLMC_TEST_REGEX:-}" ] && ctest_args+=(-R "$XLMC_TEST_REGEX")

# ---- 2. formatting (fast, before the builds; the tests still run when it fails, the
# script's status is then 1) ----
say "formatting (.clang-format, clang-format 14)"
format_ok=1
tests/check_format.sh || format_ok=0

# ---- 3. release build, every test ----
say "build (warnings are errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXLMC_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
say "tests"
ctest --test-dir build "${ctest_args[@]}"

# ---- 4. sanitizers ----
if [ "${XLMC_SKIP_ASAN:-0}" != 1 ]; then
  say "build with AddressSanitizer + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DXLMC_WERROR=ON -DXLMC_SANITIZE=ON \
        -DXLMC_CUDA=OFF >/dev/null
  cmake --build build-asan -j "$jobs"
  say "tests under AddressSanitizer + UBSan"
  # Open MPI's own start-up allocations are not ours to fix: no leak checking under MPI.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan "${ctest_args[@]}" -LE 'slow|slurm|bench'
fi
# ---- 5. fuzzing: the file readers under libFuzzer, a fixed number of inputs each ----
if [ "${XLMC_SKIP_FUZZ:-0}" != 1 ]; then
  say "build the libFuzzer harnesses (clang)"
  CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXLMC_FUZZ=ON \
        -DXLMC_SANITIZE=ON -DXLMC_CUDA=OFF >/dev/null
  cmake --build build-fuzz -j "$jobs" --target fuzz_safetensors fuzz_config fuzz_tokenizer \
        fuzz_shard fuzz_checkpoint
  say "fuzz (tests/fuzz/corpus, ~10 s per harness)"
  ctest --test-dir build-fuzz --output-on-failure -j "$jobs" -L fuzz
fi
if [ "$format_ok" != 1 ]; then
  say "all tests passed, but files differ from .clang-format (listed in step 2)"
  exit 1
fi
say "all tests passed"
