#!/usr/bin/env bash
# Installs the Debian packages vqm needs (only those missing; apt-get update first) and builds
# Release into build/ (tools in build/bin/). Extra CMake flags: VQM_CMAKE_ARGS="...".
# Usage: bash scripts/setup.sh [BUILD_DIR | --packages-only]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

# ocl-icd-opencl-dev: Debian's oneDNN CMake package (dnnl-config.cmake) requires OpenCL, which
# libdnnl-dev only recommends, and recommends are not installed here.
# clang, its sanitizer/libFuzzer runtimes and libomp: the sanitizer builds of scripts/test.sh.
# stb_image is vendored (third_party/stb). git: scripts/test.sh lists the sources it checks with
# clang-format through git (a checkout made elsewhere and copied over has no git of its own).
# python3-dask, python3-distributed: vqm.dask (jobs on a Dask cluster) and its LocalCluster test.
# python3-pil: the batch-job tests write t10k images as PNG with it. python3-pip, -setuptools,
# -wheel, -venv: scripts/build-wheel.sh builds the worker wheel offline and scripts/test-wheel.sh
# installs it into a fresh virtual environment.
packages=(build-essential cmake pkg-config git libdnnl-dev ocl-icd-opencl-dev nlohmann-json3-dev
          libgtest-dev dataset-fashion-mnist clang clang-format libclang-rt-dev libomp-dev
          python3-numpy python3-dask python3-distributed python3-pil python3-pip
          python3-setuptools python3-wheel python3-venv)
missing=()
for p in "${packages[@]}"; do
  # A comparison, not `| grep -q`: under pipefail a reader that leaves early can fail the pipe.
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$build_dir" != --packages-only ] || exit 0
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${VQM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
echo "setup: built into $build_dir/bin"
