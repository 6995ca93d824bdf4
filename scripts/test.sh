#!/usr/bin/env bash
# Every test, as CI runs it: install + build with warnings as errors, the whole CTest suite, a
# clang-format check, then the suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Usage: bash scripts/test.sh [--no-sanitizers]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

VQM_CMAKE_ARGS="-DVQM_WERROR=ON" bash scripts/setup.sh build
ctest --test-dir build --output-on-failure -j"$jobs"
bash scripts/test-install.sh build

echo "== clang-format check"
git ls-files '*.cpp' '*.h' '*.c' | grep -v '^third_party/' | xargs clang-format --dry-run -Werror

if [ "${1:-}" != "--no-sanitizers" ]; then
  echo "== ASan + UBSan build and suite"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVQM_WERROR=ON \
    -DVQM_SANITIZE=address,undefined >/dev/null
  cmake --build build-asan -j"$jobs"
  # oneDNN's JIT and OpenMP runtime are not instrumented; leak checking of their one-time
  # allocations at exit is noise, every other ASan check stays on.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi
