#!/usr/bin/env bash
# Activation recomputation (train.recompute_activations): training throughput and the peak
# memory training adds, with the Transformer layers' activations kept (the reference) and
# recomputed in backward, in the same run. Each measurement runs in its own process (on the CPU
# the peak is the growth of the peak resident size); rounds alternate the two.
#
# Usage: scripts/bench/recompute.sh [--build DIR] [--device cpu|cuda] [--rounds N] [--steps N]
#                                   [-- shape options of `xformer_bench train`]
# Default shape: the translation training benchmark's model (d_model 256, 4 heads, ffn 1024,
# 3+3 layers, vocabulary 8000), batch 32 sentences x 128 source and 128 target tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build device=cpu rounds=2 steps=6
shape=(--batch 32 --src-len 128 --tgt-len 128)
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --) shift; shape=("$@"); break ;;
    *) echo "usage: $0 [--build DIR] [--device cpu|cuda] [--rounds N] [--steps N] [-- shape options]" >&2; exit 2 ;;
  esac
done
if [[ $build == build ]]; then
  scripts/setup.sh >/dev/null
  scripts/build.sh xformer_bench >/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); device $device"
echo "shape: ${shape[*]}"
for ((r = 0; r < rounds; ++r)); do
  for flag in "" --recompute; do
    "$build/xformer_bench" train "${shape[@]}" --steps "$steps" --warmup 2 --device "$device" $flag 2>/dev/null
  done
done | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
def median(recompute, key):
    return statistics.median(r[key] for r in rows if r["recompute"] == recompute)
kept = {k: median(False, k) for k in ("tgt_tokens_per_s", "peak_extra_mb")}
recomputed = {k: median(True, k) for k in ("tgt_tokens_per_s", "peak_extra_mb")}
print("%-26s %14s %14s" % ("activations", "tgt tokens/s", "peak MB added"))
print("%-26s %14.0f %14.1f" % ("kept (reference)", kept["tgt_tokens_per_s"], kept["peak_extra_mb"]))
print("%-26s %14.0f %14.1f" % ("recomputed in backward", recomputed["tgt_tokens_per_s"], recomputed["peak_extra_mb"]))
print("ratio recomputed / kept: speed %.2fx, memory %.2fx (medians of %d rounds)" % (
    recomputed["tgt_tokens_per_s"] / kept["tgt_tokens_per_s"],
    recomputed["peak_extra_mb"] / kept["peak_extra_mb"], len(rows) // 2))
'
