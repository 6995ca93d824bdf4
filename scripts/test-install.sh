#!/usr/bin/env bash
# Uses an installed vqm the way an application does: `cmake --install` from a Release build into
# a temporary prefix, then builds examples/ (C and C++) against it with find_package(vqm CONFIG),
# builds the C example once more with pkg-config, and runs both and the Python example on a
# Fashion-MNIST image (the first class printed must be "Ankle boot"). Also checks the ABI surface:
# SONAME libvqm.so.<major> and only vqm_* symbols exported, and that every version agrees.
# Usage: bash scripts/test-install.sh [BUILD_DIR]   (default build/, after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() {
  echo "test-install: FAILED: $*" >&2
  exit 1
}
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }

cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$prefix/lib/libvqm.so

# awk keeps reading (no `| head`, whose early exit would be a SIGPIPE failure under pipefail).
leaked=$(nm -D --defined-only "$lib" | awk '$3 !~ /^vqm_/ && ++n <= 5 {print $3}')
[ -z "$leaked" ] || fail "libvqm.so exports symbols outside the C API: $leaked"
version=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --modversion vqm)
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libvqm.so.${version%%.*}" ] || fail "SONAME $soname, version $version"

model=$tmp/fmnist_deit_tiny.vqm
image=tests/data/images/fmnist_t10k_0_ankle_boot.png
"$prefix/bin/vit-convert" --quiet tests/data/models/fmnist_deit_tiny.safetensors -o "$model"
# $1 = what ran, $2 = its output: the image's name, then its top-5, best first.
check() {
  sed -n 2p <<<"$2" | grep -Eq '^ +[0-9.]+%  +9  Ankle boot$' || fail "$1 printed: $2"
  echo "test-install: $1 ok"
}

cmake -S examples -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS=-Werror -DCMAKE_CXX_FLAGS=-Werror >"$tmp/configure.log" ||
  fail "configuring examples/: $(cat "$tmp/configure.log")"
grep -q "vqm $version from $prefix/lib/cmake/vqm" "$tmp/configure.log" ||
  fail "find_package(vqm) did not find $version in $prefix"
cmake --build "$tmp/examples" -j"$(nproc)" >/dev/null
check "examples/c (find_package)" "$("$tmp/examples/classify_c" "$model" "$image")"
check "examples/cpp (find_package)" "$("$tmp/examples/classify_cpp" "$model" "$image")"

# shellcheck disable=SC2046  # pkg-config's flags are meant to be split
cc -std=c99 -Wall -Wextra -Werror examples/c/classify.c \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs vqm) -lm -o "$tmp/classify_pc"
check "examples/c (pkg-config)" \
  "$(LD_LIBRARY_PATH=$prefix/lib "$tmp/classify_pc" "$model" "$image")"

# The installed Python package finds the installed library by itself (no VQM_LIBRARY).
python=$(cache VQM_PYTHON)
[ -n "$python" ] || fail "no python3 with numpy configured in $build (VQM_PYTHON)"
pyenv=(env -u VQM_LIBRARY PYTHONDONTWRITEBYTECODE=1
       PYTHONPATH="$prefix/$(cache VQM_PYTHON_INSTALL_DIR)")
loaded=$("${pyenv[@]}" "$python" -c 'import vqm; print(vqm.load_library(), vqm.version())')
[ "$loaded" = "$prefix/lib/libvqm.so.${version%%.*} $version" ] ||
  fail "python loaded '$loaded', expected $prefix/lib/libvqm.so.${version%%.*} $version"
check "python/examples/classify.py" "$("${pyenv[@]}" "$python" python/examples/classify.py \
  "$model" "$image")"
