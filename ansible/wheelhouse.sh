#!/usr/bin/env bash
# Prepare the wheelhouse a box installs edged from: the edged wheel (`make dist`) and every dependency as
# a wheel for the box's CPU architecture and Python version. The role copies it to the box and installs with
# `pip install --no-index --find-links`, so the box never needs internet. Run it on the controller (or any
# machine that reaches PyPI):
#
#   ansible/wheelhouse.sh TARGET            (or: make wheelhouse TARGET=...)
#
#   TARGET   wheelhouse name        box
#   native   <arch>-py<X.Y>         this machine's architecture and Python (llama-cpp-python is built here)
#   pi5      aarch64-py3.11         Raspberry Pi 5, Raspberry Pi OS / Debian 12 (glibc 2.36)
#   jetson   aarch64-py3.10-cuda    Jetson Orin, JetPack 6 / Ubuntu 22.04 (glibc 2.35), CUDA llama.cpp
#
# Output: dist/wheelhouse/<name>/ and the same wheels in one file, dist/wheelhouse/<name>.tar, which the role
# sends to the box (WHEELHOUSE_DIR=... to put them elsewhere); the role's edged_wheelhouse_name picks the
# wheelhouse per group.
#
# How each dependency gets there:
#   - binary wheels from PyPI for the target (`pip download --only-binary=:all: --platform ... --python-version`);
#   - pure-Python packages that PyPI has only as source (PURE_SDISTS) are built into py3-none-any wheels here;
#   - llama-cpp-python is source-only and compiles C++: for `native` it is built here with the Makefile's
#     LLAMA_CMAKE_ARGS (pip's wheel cache makes a rebuild instant); for any other target it must be built on
#     a machine of that architecture and handed over in TARGET_WHEELS=dir (see ansible/README.md, "Wheels").
#
# Environment: PYTHON (python with pip, default .venv/bin/python), TARGET_WHEELS (dir of wheels built on the
# target architecture), EDGED_WHEEL (default dist/edged-<version>-py3-none-any.whl), WHEELHOUSE_DIR,
# LLAMA_CMAKE_ARGS (native builds), GLIBC (newest manylinux glibc the box has, e.g. 2.36).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${1:-}"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
PURE_SDISTS="drain3"            # pure Python, sdist only on PyPI: built here, run anywhere
BUILT_ON_TARGET="llama-cpp-python"   # compiled, sdist only on PyPI: built on the target architecture

die() { echo "wheelhouse.sh: $*" >&2; exit 1; }

case "$target" in
native)
    arch="$(uname -m)"
    pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    name="$arch-py$pyver"
    glibc="${GLIBC:-$(getconf GNU_LIBC_VERSION | sed 's/^glibc //')}" ;;
pi5) arch=aarch64; pyver=3.11; name="aarch64-py3.11"; glibc="${GLIBC:-2.36}" ;;
jetson) arch=aarch64; pyver=3.10; name="aarch64-py3.10-cuda"; glibc="${GLIBC:-2.35}" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; die "unknown TARGET '${target}'" ;;
esac

out="${WHEELHOUSE_DIR:-$repo/dist/wheelhouse/$name}"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/edged/__init__.py")"
edged_wheel="${EDGED_WHEEL:-$repo/dist/edged-$version-py3-none-any.whl}"
[ -f "$edged_wheel" ] || die "no $edged_wheel: run 'make dist' first"
pip=("$PYTHON" -m pip --disable-pip-version-check)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Pins: constraints.txt, with the per-Python overrides of constraints-py<X.Y>.txt (e.g. numpy for 3.10)
# replacing the same package's line.
constraints="$work/constraints.txt"
override="$here/constraints-py$pyver.txt"
if [ -f "$override" ]; then
    names="$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$override" | tr '\n' '|' | sed 's/|$//')"
    grep -viE "^($names)==" "$repo/constraints.txt" > "$constraints"
    grep -v '^#' "$override" >> "$constraints"
else
    cp "$repo/constraints.txt" "$constraints"
fi
pin() { grep -i -m1 "^$1==" "$constraints" | sed 's/^[^=]*==//' || true; }

# A wheelhouse holds one version of each package: wheels of an earlier run go (pip on the box would
# otherwise pick the newest it finds). Its pins go with it: the role installs with -c constraints.txt.
rm -f "$out"/*.whl

# Compiled source-only packages: a wheel from TARGET_WHEELS when there is one, else built here for `native`.
for pkg in $BUILT_ON_TARGET; do
    ver="$(pin "$pkg")"
    norm="$(echo "$pkg" | tr '-' '_')"
    candidates=("${TARGET_WHEELS:-/nonexistent}"/"$norm"-"${ver:-*}"-*"$arch"*.whl)
    found="${candidates[0]}"
    [ -f "$found" ] || found=""
    if [ -n "$found" ]; then
        mkdir -p "$out"
        cp "$found" "$out/"
    elif [ "$target" = native ]; then
        # Same defaults as the Makefile: AVX2 on x86-64 (no AMX surprises on older CPUs or VMs).
        if [ "$arch" = x86_64 ]; then
            default_args="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF"
        else
            default_args="-DLLAVA_BUILD=OFF"
        fi
        CMAKE_ARGS="${LLAMA_CMAKE_ARGS:-$default_args}" "${pip[@]}" wheel -q --no-deps -c "$constraints" \
            -w "$out" "$pkg${ver:+==$ver}"
    else
        die "no $norm-${ver:-*}-*$arch*.whl in TARGET_WHEELS='${TARGET_WHEELS:-}'.
$pkg is source-only on PyPI and compiles C++: build its wheel on a $arch machine with Python $pyver
(the box itself, a build box of the same kind, or an emulated container) and pass its directory as
TARGET_WHEELS. ansible/README.md, section \"Wheels\", has the commands."
    fi
done

# Pure-Python source-only packages: one py3-none-any wheel fits every target.
for pkg in $PURE_SDISTS; do
    ver="$(pin "$pkg")"
    "${pip[@]}" wheel -q --no-deps --use-pep517 -w "$out" "$pkg${ver:+==$ver}"
done

cp "$edged_wheel" "$out/"
cp "$constraints" "$out/constraints.txt"

# Everything else as binary wheels for the target. Only manylinux tags up to the box's glibc are accepted,
# plus linux_<arch> for the wheels built above.
abi="cp${pyver/./}"
platforms=(--platform "linux_$arch" --platform "manylinux2014_$arch")
for minor in $(seq 17 "${glibc#2.}"); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
download() {
    "${pip[@]}" download -q --only-binary=:all: --python-version "$pyver" --implementation cp \
        --abi "$abi" --abi abi3 --abi none "${platforms[@]}" \
        -c "$constraints" --find-links "$out" -d "$out" "$@"
}
download "$out/$(basename "$edged_wheel")"
# pip evaluates markers such as python_version < "3.11" for the Python running it, not for the target:
# add what the target needs on top (wheelhouse_missing.py evaluates them for the box) until complete.
for _ in 1 2 3 4 5; do
    mapfile -t need < <("$PYTHON" "$here/wheelhouse_missing.py" "$out" "$pyver" "$arch")
    [ "${#need[@]}" -eq 0 ] && break
    echo "adding for Python $pyver: ${need[*]}"
    download "${need[@]}"
done
[ "${#need[@]}" -eq 0 ] || die "still missing for Python $pyver: ${need[*]}"

# One file to send to each box (the role unpacks it there): far quicker than a copy per wheel.
tar -C "$out" -cf "$out.tar" .

echo "wheelhouse $out (and $out.tar): $(ls "$out" | wc -l) wheels for $arch, Python $pyver (edged $version)"
