#!/usr/bin/env bash
# Relative attention on a GPU: one causal self-attention layer (forward + backward, batch 1,
# d_model 512, 8 heads, fp32 with TF32) at L = 1024 .. 4096, xformer against the same layer in
# PyTorch (relative_attention_ref.py: SDPA, skewing by pad + reshape) measured in the same run:
# plain attention, relative logits by skewing, and xformer's relative local attention. Each
# measurement runs in its own process; time is the median of 5 runs, memory the allocator's peak.
# Usage: scripts/bench/relative_attention_gpu.sh [--build DIR] [--lengths "1024 2048 4096"]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build lengths="1024 2048 4096"
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --lengths) lengths=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--lengths \"L ...\"]" >&2; exit 2 ;;
  esac
done
common=(--d-model 512 --heads 8 --reps 5)
for L in $lengths; do
  for method in plain skew; do
    python3 scripts/bench/relative_attention_ref.py --method "$method" --length "$L" --device cuda "${common[@]}"
    "$build/xformer_bench" attention --method "$method" --length "$L" --device cuda "${common[@]}" 2>/dev/null
  done
  "$build/xformer_bench" attention --method local --block 512 --length "$L" --device cuda "${common[@]}" 2>/dev/null
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
ref = {(r["method"], r["length"]): r for r in rows if r["impl"] == "pytorch"}
print("%6s %8s %7s %9s %10s %s" % ("L", "impl", "method", "ms", "peak MB", "xformer vs pytorch"))
for r in rows:
    p = ref.get((r["method"], r["length"]))
    vs, mb = "", r["peak_extra_mb"]
    if r["impl"] == "xformer" and p:
        vs = "%.2fx speed, %s memory" % (p["ms"] / r["ms"], "n/a" if mb is None else "%.2fx" % (mb / p["peak_extra_mb"]))
    print("%6d %8s %7s %9.2f %10s %s" % (r["length"], r["impl"], r["method"], r["ms"], "n/a" if mb is None else "%.1f" % mb, vs))
'
