#!/usr/bin/env bash
# Every test, as CI runs it:
#  1. a clang-format check; the README's first command on a new minimal Debian 12 root (a
#     Release build with gcc, warnings as errors), then the whole Release CTest suite and the
#     install test (scripts/test-install.sh) on the build it made there (scripts/fresh-check.sh):
#     this machine's packages cannot hide a missing install step (with uncommitted changes, which
#     the root cannot see, the build and both tests also run here first);
#  2. clang AddressSanitizer + UndefinedBehaviorSanitizer build, which also builds the libFuzzer
#     targets: the whole suite again, then the six fuzz targets for 60 s, all at once
#     (scripts/fuzz.sh; longer local runs: docs/robustness.md);
#  3. clang ThreadSanitizer build of what the multi-threaded tests need: the 8-thread shared-model
#     test, the kill-mid-write tests, the C API test and vit-eval's multi-session evaluation.
# The libraries are unity builds here (CMAKE_UNITY_BUILD, about a third less compile time: CI
# has 2 cores and three builds to make); tests keep one translation unit per file.
# docs/robustness.md explains the choices (OpenMP under the sanitizers, smaller workloads).
# Usage: bash scripts/test.sh [--no-sanitizers]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# The fresh root below builds HEAD the README's way (warnings as errors) and runs the Release
# suite and the install test on that build, on a stricter machine. On a clean checkout (CI's)
# doing the same here would only cost CI minutes of its 30: only the packages are installed here.
# Uncommitted changes are invisible to the fresh root (it clones HEAD), and inside the root (with
# --full) there is no further root: then the build and both tests run here.
if [ -n "$(git status --porcelain --untracked-files=no)" ] || [ -n "${VQM_IN_FRESH_ROOT:-}" ]; then
  VQM_CMAKE_ARGS="-DVQM_WERROR=ON -DCMAKE_UNITY_BUILD=ON" bash scripts/setup.sh build
  ctest --test-dir build --output-on-failure -j"$jobs"
  bash scripts/test-install.sh build
else
  bash scripts/setup.sh --packages-only
  echo "== Release build, suite and install test: in the fresh root below (clean checkout of $(git rev-parse --short HEAD))"
fi

echo "== clang-format check"
git ls-files '*.cpp' '*.h' '*.c' | grep -v '^third_party/' | xargs clang-format --dry-run -Werror

echo "== fresh Debian 12 root: the README's first command, then the Release suite and install test there"
# debootstrap, mount and chroot need root (CI is root; elsewhere sudo, as setup.sh does).
# A no-op inside such a root (fresh-check.sh --full runs this script there).
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo bash scripts/fresh-check.sh

if [ "${1:-}" != "--no-sanitizers" ]; then
  # Line tables are all a sanitizer report needs, and much cheaper to build than full -g.
  clang_args=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DVQM_WERROR=ON
              -DCMAKE_UNITY_BUILD=ON
              -DCMAKE_BUILD_TYPE=RelWithDebInfo
              "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -gline-tables-only -DNDEBUG"
              "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -gline-tables-only -DNDEBUG")

  echo "== clang ASan + UBSan build (with the libFuzzer targets) and suite"
  cmake -S . -B build-asan "${clang_args[@]}" -DVQM_SANITIZE=address,undefined -DVQM_FUZZ=ON \
    >/dev/null
  cmake --build build-asan -j"$jobs"
  # oneDNN's JIT and the OpenMP runtime are not instrumented; leak checking of their one-time
  # allocations at exit is noise, every other ASan check stays on (the fuzzers check leaks).
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"

  echo "== fuzzing: the six targets for 60 s, all at once"
  bash scripts/fuzz.sh --build build-asan --seconds 60 --jobs 6

  echo "== clang TSan build and the multi-threaded tests"
  cmake -S . -B build-tsan "${clang_args[@]}" -DVQM_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$jobs" --target test_robust test_apps capi_test
  # OpenMP's runtime is not TSan-instrumented (its barriers are invisible to TSan), so OpenMP
  # runs one thread per team here; the threads under test are the application's own.
  # tests/tsan.supp: the one suppression (races inside the uninstrumented libdnnl).
  OMP_NUM_THREADS=1 \
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" \
    -R '^(Concurrency\.|KillMidWrite\.|Evaluate\.|capi\.|tools\.)'
fi
