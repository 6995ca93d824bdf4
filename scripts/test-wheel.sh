#!/usr/bin/env bash
# The wheel as a worker machine meets it: builds it (scripts/build-wheel.sh), installs it with pip
# into a fresh virtual environment, offline, and from a folder outside the source tree (no
# PYTHONPATH, no VQM_LIBRARY) checks that vqm loads the libvqm.so inside the wheel, classifies a
# Fashion-MNIST image ("Ankle boot"), and that vqm.dask's command line starts.
# The venv sees Debian's site-packages (--system-site-packages): numpy (and Dask) come from
# python3-numpy / python3-dask there, since nothing may be downloaded; vqm itself resolves inside
# the venv, which comes first on sys.path.
# Usage: bash scripts/test-wheel.sh [BUILD_DIR]   (default build/)
# Exit status 77 (CTest: skipped) when python3-venv is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "test-wheel: FAILED: $*" >&2
  exit 1
}
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "test-wheel: skipped: python3-venv is not installed" >&2
  exit 77
fi
wheel=$(bash scripts/build-wheel.sh "$build" "$tmp/dist")
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
env -u PYTHONPATH PIP_NO_INDEX=1 "$tmp/venv/bin/python" -m pip install --quiet --no-deps "$wheel" ||
  fail "pip install $wheel"

model=$tmp/fmnist.vqm
"$build/bin/vit-convert" --quiet tests/data/models/fmnist_deit_tiny.safetensors -o "$model"
cp tests/data/images/fmnist_t10k_0_ankle_boot.png "$tmp/boot.png"
cd "$tmp"
py=(env -u PYTHONPATH -u VQM_LIBRARY PYTHONDONTWRITEBYTECODE=1 "$tmp/venv/bin/python")
out=$("${py[@]}" - "$model" boot.png <<'PY'
import os, sys
import numpy as np
import vqm
site = os.path.dirname(os.path.dirname(vqm.__file__))
lib = vqm.load_library()
assert lib.startswith(os.path.join(site, "vqm", "libvqm.so.")), (lib, site)
assert site.startswith(sys.prefix), (site, sys.prefix)
model = vqm.Model(sys.argv[1])
logits = vqm.Session(model).run_image_file(sys.argv[2])
print(vqm.version(), model.labels[int(np.argmax(logits))])
PY
) || fail "classifying with the installed wheel"
[[ "$out" == *" Ankle boot" ]] || fail "the installed wheel printed '$out'"
"${py[@]}" -m vqm.dask --help >/dev/null || fail "python -m vqm.dask --help"
echo "test-wheel: $(basename "$wheel") installed in a venv: $out"
