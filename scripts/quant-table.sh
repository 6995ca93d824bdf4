#!/usr/bin/env bash
# Reproduces the tables of docs/quantization.md: every method x bit-width and the ablations on
# the Fashion-MNIST DeiT-Tiny (32 calibration images from the train split, all 10,000 t10k images
# evaluated). Prints markdown; raw JSON lines go to out/quant-table.jsonl. ~20 min on 2 cores.
# Usage: bash scripts/quant-table.sh   (after scripts/setup.sh; needs python3 for the JSON)
#        ONLY='mixed' bash scripts/quant-table.sh   reruns only the configs whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
data=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p out/quant
fp32=out/quant/fp32.vqm
"$bin/vit-convert" tests/data/models/fmnist_deit_tiny.safetensors -o "$fp32" --quiet
jsonl=out/quant-table.jsonl
[ -n "${ONLY:-}" ] || : > "$jsonl"

run() {  # name, vit-quantize flags...
  local name=$1; shift
  [[ "$name" =~ ${ONLY:-.} ]] || return 0
  local out=out/quant/$name.vqm
  local stats
  stats=$( { /usr/bin/time -f "%e %M" "$bin/vit-quantize" --model "$fp32" --calib "$data" "$@" -o "$out" \
             --report "out/quant/$name.json" --quiet >/dev/null; } 2>&1 | tail -n 1)
  local acc
  acc=$("$bin/vit-eval" --model "$out" --data "$data" --json)
  local bits
  bits=$(python3 -c "import json;print(round(json.load(open('out/quant/$name.json'))['avg_bits'],2))")
  echo "{\"name\":\"$name\",\"flags\":\"$*\",\"seconds\":${stats% *},\"max_rss_kb\":${stats#* },\"avg_bits\":$bits,\"eval\":$acc,\"bytes\":$(stat -c %s "$out")}" >> "$jsonl"
  printf '| %s | `%s` | %s | %s | %s | %.1f | %.0f | %.2f |\n' "$name" "$*" "$bits" \
    "$(python3 -c "import json;print('%.4f'%json.loads('''$acc''')['top1'])")" \
    "$(python3 -c "import json;print('%.4f'%json.loads('''$acc''')['top5'])")" \
    "${stats% *}" "$(( ${stats#* } / 1024 ))" "$(python3 -c "print($(stat -c %s "$out") / 1e6)")"
}

echo "| config | flags | avg bits | top-1 | top-5 | quantize s | peak MB | file MB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
acc=$("$bin/vit-eval" --model "$fp32" --data "$data" --json)
echo "| fp32 | | 32 | $(python3 -c "import json;print('%.4f'%json.loads('''$acc''')['top1'])") | $(python3 -c "import json;print('%.4f'%json.loads('''$acc''')['top5'])") | | | $(python3 -c "print(round($(stat -c %s "$fp32") / 1e6, 2))") |"
for bits in 8 6 4; do
  for method in ptq minmax percentile; do run "${method}_w${bits}a${bits}" --bits "$bits" --method "$method"; done
done
run ptq_mixed4 --mixed 4
run ptq_mixed6 --mixed 6
run ptq_mixed3 --mixed 3
for method in ptq minmax percentile; do run "${method}_w3a3" --bits 3 --method "$method"; done
# Ablations at 4 bits, one switch at a time.
run abl_w4_no_ranking --bits 4 --no-ranking
run abl_w4_no_bias_correction --bits 4 --no-bias-correction
run abl_w4_per_tensor --bits 4 --per-tensor
run abl_w4_no_refine --bits 4 --no-refine
run abl_mixed4_no_ranking --mixed 4 --no-ranking
run abl_mixed4_no_bias_correction --mixed 4 --no-bias-correction
run abl_mixed4_sensitivity_at_module --mixed 4 --sensitivity-at module
run abl_mixed6_sensitivity_at_module --mixed 6 --sensitivity-at module
