#!/usr/bin/env bash
# vqm against ONNX Runtime and PyTorch in one sitting: ../shared/peers/run.sh runs the peers and,
# in the same passes, vit-bench on random-weight DeiT geometry (EXTRA_BENCH), then prints one
# table. Arguments go to run.sh (e.g. `small`, `tiny fp32`); REPEAT=1 for a quick pass.
# Usage: bash scripts/bench-vs-peers.sh [run.sh words...]   (after scripts/setup.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
[ -f "$peers/run.sh" ] || { echo "bench-vs-peers: no peers harness at $peers (set PEERS_DIR)" >&2; exit 1; }
# vit-bench reads the harness's settings from the environment run.sh exports to EXTRA_BENCH.
# VQM_PRECISIONS picks vqm's configurations (default fp32 w8a8; also w6a6 w4a4 mp4).
export VQM_PRECISIONS=${VQM_PRECISIONS:-fp32 w8a8}
export EXTRA_BENCH="for m in \$PEERS_MODELS; do for p in \$VQM_PRECISIONS; do \
  '$root/build/bin/vit-bench' --arch \${m}_patch16_224 --precision \$p --json \
    --batch \$(echo \$PEERS_BATCHES | tr ' ' ,) --threads \$PEERS_THREADS --runs \$PEERS_MIN_RUNS \
    --min-time \$PEERS_MIN_TIME --warmup \$PEERS_WARMUP_TIME; done; done"
bash "$peers/run.sh" "$@"
