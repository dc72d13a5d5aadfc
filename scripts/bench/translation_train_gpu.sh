#!/usr/bin/env bash
# Translation training on a GPU: xformer versus the same model in PyTorch (Python, eager, with
# scaled_dot_product_attention and fused Adam), both in bf16 autocast, measured in the same run,
# at the Transformer base and big shapes; plus decoding speed on the GPU against PyTorch's.
# Prints tokens/s, the ratio, and model FLOP utilisation against the GPU's dense bf16 peak.
#
# Usage: scripts/bench/translation_train_gpu.sh [--build DIR] [--steps N] [--peak-tflops P]
# Expects xformer_bench built in DIR (default build) against a CUDA LibTorch (docs/gpu.md) and
# the matching PyTorch in python3. Both sides' logs go to $BENCH_LOG (default: discarded).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build steps=20 peak=989  # H100/H200 SXM: 989 dense bf16 TFLOP/s
log=${BENCH_LOG:-/dev/null}
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --peak-tflops) peak=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--steps N] [--peak-tflops P]" >&2; exit 2 ;;
  esac
done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

declare -A shapes=(
  [base]="--d-model 512 --heads 8 --ffn 2048 --layers 6 --vocab 32000 --batch 256 --src-len 64 --tgt-len 64"
  [big]="--d-model 1024 --heads 16 --ffn 4096 --layers 6 --vocab 32000 --batch 128 --src-len 64 --tgt-len 64"
)
for name in base big; do
  read -ra shape <<< "${shapes[$name]}"
  ref=$(python3 scripts/bench/translation_train_ref.py "${shape[@]}" --steps "$steps" --device cuda --amp bf16 --sdpa 2>>"$log")
  ours=$("$build/xformer_bench" train "${shape[@]}" --steps "$steps" --device cuda --precision bf16 2>>"$log")
  echo "$name pytorch: $ref"
  echo "$name xformer: $ours"
  printf '%s\n%s\n' "$ref" "$ours" | python3 -c '
import json, sys
ref, ours = (json.loads(l) for l in sys.stdin)
peak, name = float(sys.argv[1]), sys.argv[2]
x, p = ours["tgt_tokens_per_s"], ref["tgt_tokens_per_s"]
tf = ours["model_tflops"]
print(f"{name}: xformer {x:.0f} tgt tok/s ({tf:.0f} TFLOP/s, MFU {100*tf/peak:.1f}%), "
      f"pytorch {p:.0f} tgt tok/s (MFU {100*tf*p/x/peak:.1f}%), ratio {x/p:.2f}x")
' "$peak" "$name"
done

echo "decoding on the GPU (base shape, 256 sentences, 64 output tokens each, untrained model, bf16):"
read -ra shape <<< "${shapes[base]}"
for mode in greedy beam; do
  python3 scripts/bench/translation_decode_ref.py "${shape[@]}" --device cuda --amp bf16 --sdpa \
    --mode "$mode" --beam 4 2>>"$log"
  "$build/xformer_bench" decode "${shape[@]}" --device cuda --precision bf16 --mode "$mode" --beam 4 2>>"$log"
done | python3 scripts/bench/decode_table.py
