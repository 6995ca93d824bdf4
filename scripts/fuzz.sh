#!/usr/bin/env bash
# libFuzzer runs of the fuzz targets (tests/fuzz: vqm, safetensors, image, config, idx, pth) in a
# clang ASan+UBSan build configured with -DVQM_FUZZ=ON (scripts/test.sh makes one: build-asan).
#
#   bash scripts/fuzz.sh                      # CI: 60 s per target, as many at once as cores
#   bash scripts/fuzz.sh --seconds 900 image  # local: longer, chosen targets
#
# Seeds are written from tests/data by the fuzz_seeds tool; the corpus each run grows is kept in
# BUILD/fuzz/corpus/TARGET, so a later run starts where the last one stopped. A crash leaves its
# input in BUILD/fuzz/crashes/TARGET/ and fails the run; once fixed, copy the input to
# tests/fuzz/regressions/TARGET/ (replayed by tests/robust in every build) and add a test that
# states the fixed behaviour. Logs: BUILD/fuzz/logs/TARGET.log.
# Usage: bash scripts/fuzz.sh [--build DIR] [--seconds N] [--jobs N] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-asan
seconds=60
jobs=$(nproc)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(vqm safetensors image config idx pth)

for t in "${targets[@]}"; do
  if [ ! -x "$build/bin/fuzz_$t" ]; then
    echo "fuzz.sh: no $build/bin/fuzz_$t; configure with clang and -DVQM_FUZZ=ON" \
         "(see scripts/test.sh) or name a target of tests/fuzz" >&2
    exit 2
  fi
done

work=$build/fuzz
"$build/bin/fuzz_seeds" "$work/seeds" >/dev/null

# Leaks count (a parser that leaks per input is a bug); every UBSan report is fatal. One OpenMP
# thread: the targets run sessions with n_threads = 1, and parallel jobs share the cores.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1

run_one() {
  local t=$1 dict=()
  mkdir -p "$work/corpus/$t" "$work/crashes/$t" "$work/logs" "tests/fuzz/regressions/$t"
  case $t in
    vqm|config|safetensors) dict=(-dict=tests/fuzz/json.dict) ;;
    pth) dict=(-dict=tests/fuzz/pth.dict) ;;
  esac
  # -malloc_limit_mb: no input of a few KB may make vqm allocate 512 MB at once (a missing limit
  # check); -timeout: none may take 10 s (a hang).
  "$build/bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$work/crashes/$t/" \
    "$work/corpus/$t" "$work/seeds/$t" "tests/fuzz/regressions/$t" >"$work/logs/$t.log" 2>&1
}

pids=()
names=()
status=0
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || { echo "fuzz.sh: ${names[0]} FAILED (see $work/logs/${names[0]}.log)"; status=1; }
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "fuzz.sh: ${names[$i]} FAILED (see $work/logs/${names[$i]}.log)"; status=1; }
done

for t in "${targets[@]}"; do
  log=$work/logs/$t.log
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  printf "fuzz %-12s %8s inputs, %s, corpus %s files\n" "$t" "$runs" \
    "${cov:-cov: ?}" "$(find "$work/corpus/$t" -type f | wc -l)"
  if [ "$status" -ne 0 ] && grep -q -E '^==[0-9]+==ERROR|^SUMMARY|deadly signal|fuzz invariant' "$log"; then
    grep -m3 -E 'ERROR|SUMMARY|invariant|Test unit written' "$log" | sed 's/^/    /'
  fi
done
exit $status
