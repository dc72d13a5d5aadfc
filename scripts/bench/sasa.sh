#!/usr/bin/env bash
# Stand-alone self-attention (SASA) against convolution: forward + backward time and peak memory
# of one spatial layer (batch 8, 7x7 neighbourhoods, 8 heads) as SASA's CPU kernels, as the
# LibTorch offset loop (the path off the CPU), as the fully unfolded neighbourhoods (the simple
# way), and as the 3x3 convolution it replaces, at the widths
# and map sizes of ResNet stages 1-3 on ImageNet; then training step time of ResNet-26 with
# convolutions against SASA (conv stem, 32x32 images, width 16, batch 32). Each measurement runs
# in its own process.
# Usage: scripts/bench/sasa.sh [--shapes "64:56 128:28 256:14"]
set -euo pipefail
cd "$(dirname "$0")/../.."
shapes="64:56 128:28 256:14"
while [[ $# -gt 0 ]]; do
  case $1 in
    --shapes) shapes=$2; shift 2 ;;
    *) echo "usage: $0 [--shapes \"C:S ...\"]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >/dev/null
scripts/build.sh xformer_bench >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for shape in $shapes; do
  C=${shape%%:*} S=${shape##*:}
  for method in conv kernel offsets unfold; do
    build/xformer_bench sasa --method "$method" --d-model "$C" --heads 8 --side "$S" --kernel 7 --batch 8 \
      --reps 2 2>/dev/null
  done
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
conv = {(r["channels"], r["side"]): r for r in rows if r["method"] == "conv"}
print("%8s %5s %8s %10s %8s %10s" % ("channels", "side", "method", "ms", "x conv", "peak MB"))
for r in rows:
    c = conv[(r["channels"], r["side"])]
    print("%8d %5d %8s %10.1f %8.2f %10.1f" % (r["channels"], r["side"], r["method"], r["ms"], r["ms"] / c["ms"],
                                              r["peak_extra_mb"]))
'
echo "ResNet-26 training step (Adam), 32x32 images, width 16, batch 32:"
for spatial in conv attention; do
  build/xformer_bench resnet --spatial "$spatial" --d-model 64 --heads 8 --side 32 --batch 32 --reps 3 2>/dev/null
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
for r in rows:
    print("  %-14s %6.0f ms/step %7.1f images/s  %.2fM params  %.3f GFLOPs/image  (%.2fx conv time)" % (
        r["model"], r["ms"], r["batch"] * 1000 / r["ms"], r["params"] / 1e6, r["gflops_per_image"],
        r["ms"] / rows[0]["ms"]))
'
