#!/usr/bin/env bash
# Builds the self-contained Python wheel a worker machine installs with pip:
# dist/vqm-<version>-py3-none-linux_x86_64.whl holding the vqm package and libvqm.so.<major>
# beside it (vqm._lib loads that copy first, after VQM_LIBRARY). oneDNN and OpenMP stay linked
# dynamically, as for an installed libvqm: the machine needs Debian 12's libdnnl2 (and libgomp1).
# Offline: setuptools and wheel come from Debian (python3-setuptools, python3-wheel).
# Usage: bash scripts/build-wheel.sh [BUILD_DIR [OUT_DIR]]   (default build/ and dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=$(mkdir -p "${2:-dist}" && cd "${2:-dist}" && pwd)
python=/usr/bin/python3
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
major=${version%%.*}
lib=$build/lib/libvqm.so.$major
[ -n "$version" ] && [ -e "$lib" ] || {
  echo "build-wheel: no $lib in $build (cmake --build $build --target vqm first)" >&2
  exit 1
}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp python/pyproject.toml "$stage/"
cp -r python/vqm "$stage/vqm"
rm -rf "$stage/vqm/__pycache__" "$stage/vqm/_install.py"
cp -L "$lib" "$stage/vqm/libvqm.so.$major"
echo "$version" >"$stage/VERSION"
printf '[bdist_wheel]\npython_tag = py3\nplat_name = linux_x86_64\n' >"$stage/setup.cfg"
(cd "$stage" && PIP_NO_INDEX=1 "$python" -m pip wheel --quiet --no-build-isolation --no-deps \
  --wheel-dir "$out" .)
wheel=$out/vqm-$version-py3-none-linux_x86_64.whl
[ -f "$wheel" ] || {
  echo "build-wheel: pip did not write $wheel" >&2
  exit 1
}
echo "$wheel"
