#!/usr/bin/env bash
# Local 2D attention (Image Transformer): time and peak memory of one causal self-attention
# layer over an image's channel tokens (S x S pixels x 3 channels in raster order; forward +
# backward, batch 1, d_model 256, 4 heads), local 2D (query blocks of 8 pixels x 8 rows, 8 rows /
# 8 pixels of memory flange) against full causal attention, at S = 32, 64, 128. Each measurement
# runs in its own process; full attention is skipped where its scores alone exceed --full-max-mb.
# Then super-resolution sampling speed (pixels/s, the CPU demo's model shape, untrained) over
# the key/value caches against recomputing every step at 2x2 -> 8x8 (recomputation is quadratic),
# and with the caches at 4x4 -> 16x16 and 8x8 -> 32x32.
# Usage: scripts/bench/local_attention.sh [--sides "32 64 128"] [--full-max-mb 10000]
set -euo pipefail
cd "$(dirname "$0")/../.."
sides="32 64 128" full_max=10000
while [[ $# -gt 0 ]]; do
  case $1 in
    --sides) sides=$2; shift 2 ;;
    --full-max-mb) full_max=$2; shift 2 ;;
    *) echo "usage: $0 [--sides \"S ...\"] [--full-max-mb MB]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >/dev/null
scripts/build.sh xformer_bench >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for S in $sides; do
  for method in full local2d; do
    L=$((3 * S * S))
    # Scores and probabilities, forward and backward: about 4 (L x L) float tensors per head.
    mb=$((4 * 4 * L / 1024 * L / 1024 * 4))
    if [[ $method == full && $mb -gt $full_max ]]; then
      echo "{\"method\": \"full\", \"side\": $S, \"positions\": $L, \"skipped\": \"needs ~$mb MB\"}"
      continue
    fi
    build/xformer_bench image-attention --method "$method" --side "$S" --d-model 256 --heads 4 --reps 2 2>/dev/null
  done
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print("%5s %9s %8s %10s %10s" % ("side", "positions", "method", "ms", "peak MB"))
for r in rows:
    if "skipped" in r:
        print("%5d %9d %8s   skipped: %s" % (r["side"], r["positions"], r["method"], r["skipped"]))
    else:
        print("%5d %9d %8s %10.1f %10.1f" % (r["side"], r["positions"], r["method"], r["ms"], r["peak_extra_mb"]))
'

echo "super-resolution sampling, 8 images, untrained image_transformer (d_model 96, 4 heads, ffn 384, 3 layers):"
for run in "8 on" "8 off" "16 on" "32 on"; do
  set -- $run
  build/xformer_bench image-sample --side "$1" --scale 4 --cache "$2" --d-model 96 --heads 4 --ffn 384 \
    --layers 3 --batch 8 2>/dev/null
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
ref = {r["side"]: r for r in rows if not r["cache"]}
for r in rows:
    x = ref.get(r["side"])
    ratio = "  (%.1fx recomputing)" % (r["pixels_per_s"] / x["pixels_per_s"]) if x and r["cache"] else ""
    print("  %2dx%-2d cache %-3s: %8.1f pixels/s%s" % (r["side"], r["side"], "on" if r["cache"] else "off",
          r["pixels_per_s"], ratio))
'
