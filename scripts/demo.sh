#!/usr/bin/env bash
# The main job end to end on the shipped Fashion-MNIST DeiT-Tiny: convert the timm checkpoint
# to .vqm, classify sample images (top-5 with class names), evaluate on the 10,000 t10k images.
# Usage: bash scripts/demo.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
mkdir -p out
"$bin/vit-convert" tests/data/models/fmnist_deit_tiny.safetensors -o out/fmnist_deit_tiny.vqm
"$bin/vit-run" --model out/fmnist_deit_tiny.vqm tests/data/images/fmnist_t10k_*.png
"$bin/vit-eval" --model out/fmnist_deit_tiny.vqm --data /usr/share/datasets/fashion-mnist
