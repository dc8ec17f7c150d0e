# shellcheck shell=bash
# tests/gpu/prefix.sh — sourced by tests/gpu/run.sh: turns the pack's Debian packages into a
# prefix that a CMake build and the xlmc program can use from anywhere, without installing
# anything into / (the GPU machine lends us no root file system to change, and the dry run
# must not see the system's own copies).
#
#   pack_unpack DEBS ROOT   unpack every DEBS/*.deb under ROOT and make it relocatable:
#                           absolute symlinks made relative, the links update-alternatives
#                           would have made, and wrappers in ROOT/xlmc-bin (pkg-config,
#                           mpicc) that point the tools at ROOT
#   pack_env ROOT           sets PACK_CMAKE_ARGS (configure against ROOT) and exports
#                           PACK_LIBPATH; pack_exec CMD... runs CMD with ROOT's libraries
#                           (LD_LIBRARY_PATH, and OPAL_PREFIX/PMIX_INSTALL_PREFIX so that a
#                           single-rank MPI_Init finds Open MPI's plugins and orted there)
# Only programs started through pack_exec see ROOT's libraries: Python, CMake and the
# compilers keep the machine's own.

PACK_ARCH=x86_64-linux-gnu

pack_unpack() {
    local debs=$1 root=$2 deb
    rm -rf "$root"
    mkdir -p "$root"
    for deb in "$debs"/*.deb; do
        [ -e "$deb" ] || { echo "pack_unpack: no .deb in $debs" >&2; return 1; }
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$deb" "$root" || { echo "pack_unpack: cannot unpack $deb" >&2; return 1; }
        else
            pack_unpack_py "$deb" "$root" || return 1
        fi
    done
    # Debian 12 is usr-merged (/lib is /usr/lib) but some packages still ship under /lib.
    if [ -d "$root/lib" ] && [ ! -L "$root/lib" ]; then
        cp -a "$root/lib/." "$root/usr/lib/" && rm -rf "${root:?}/lib" && ln -s usr/lib "$root/lib"
    fi
    local link target dest
    while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        dest=$(realpath -m "$root$target")
        [ -e "$dest" ] || continue
        ln -sfn "$(realpath -m --relative-to="$(realpath -m "$(dirname "$link")")" "$dest")" "$link"
    done < <(find "$root" -type l -lname '/*' -print0)
    rm -rf "$root/usr/share/doc" "$root/usr/share/man"
    # What update-alternatives makes on an installed system: OpenBLAS's soname in the main
    # library directory (its pkg-config file is on the wrapper's search path below).
    local lib=$root/usr/lib/$PACK_ARCH
    ln -sfn openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
    # and PSM's, which libfabric (Open MPI's ofi plugins) loads
    local psm
    for psm in "$root"/usr/lib/libpsm1/libpsm_infinipath.so.1.*; do
        [ -e "$psm" ] && ln -sfn "../libpsm1/$(basename "$psm")" "$lib/libpsm_infinipath.so.1"
    done
    mkdir -p "$root/xlmc-bin"
    cat >"$root/xlmc-bin/pkg-config" <<WRAP
#!/bin/sh
# pkg-config over the pack only (made by tests/gpu/prefix.sh)
R='$root'
export PKG_CONFIG_LIBDIR="\$R/usr/lib/$PACK_ARCH/pkgconfig:\$R/usr/lib/$PACK_ARCH/openblas-pthread/pkgconfig:\$R/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="\$R" LD_LIBRARY_PATH="\$R/usr/lib/$PACK_ARCH"
exec "\$R/usr/bin/pkgconf" "\$@"
WRAP
    cat >"$root/xlmc-bin/mpicc" <<WRAP
#!/bin/bash
# Open MPI's C wrapper compiler relocated to the pack (made by tests/gpu/prefix.sh)
R='$root'
export OPAL_PREFIX="\$R/usr" LD_LIBRARY_PATH="\$R/usr/lib/$PACK_ARCH:\$R/usr/lib/$PACK_ARCH/openmpi/lib"
exec -a mpicc "\$R/usr/bin/opal_wrapper" "\$@"
WRAP
    chmod +x "$root/xlmc-bin/pkg-config" "$root/xlmc-bin/mpicc"
}

# Where dpkg-deb is missing: a .deb is an ar archive holding data.tar.{xz,zst,gz}.
pack_unpack_py() {
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, root = sys.argv[1], sys.argv[2]
raw = open(deb, "rb").read()
if raw[:8] != b"!<arch>\n":
    sys.exit(f"pack_unpack: {deb}: not a .deb (ar) archive")
pos = 8
while pos < len(raw):
    name = raw[pos:pos + 16].decode().strip().rstrip("/")
    size = int(raw[pos + 48:pos + 58])
    body = raw[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as t:
            t.extractall(root, filter="tar")
        break
else:
    sys.exit(f"pack_unpack: {deb}: no data.tar member")
PY
}

pack_env() {
    local root=$1 lib=$1/usr/lib/$PACK_ARCH
    PACK_ROOT=$root
    PACK_LIBPATH=$lib:$lib/openmpi/lib:$lib/openblas-pthread:$lib/hdf5/serial
    export PACK_ROOT PACK_LIBPATH
    # shellcheck disable=SC2034 # used by run.sh, which sources this file
    # h5cc is not packed (hdf5-helpers): FindHDF5 takes the paths from pkg-config instead.
    PACK_CMAKE_ARGS=(-DPKG_CONFIG_EXECUTABLE="$root/xlmc-bin/pkg-config"
                     -DMPI_C_COMPILER="$root/xlmc-bin/mpicc"
                     -DHDF5_C_COMPILER_EXECUTABLE=HDF5_C_COMPILER_EXECUTABLE-NOTFOUND
                     -DCMAKE_PREFIX_PATH="$root/usr"
                     -DZLIB_ROOT="$root/usr"
                     "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,${PACK_LIBPATH//:/,-rpath-link,}")
}

pack_exec() {
    LD_LIBRARY_PATH="$PACK_LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    OPAL_PREFIX="$PACK_ROOT/usr" PMIX_INSTALL_PREFIX="$PACK_ROOT/usr/lib/$PACK_ARCH/pmix2" \
        "$@"
}
