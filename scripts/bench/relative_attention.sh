#!/usr/bin/env bash
# Relative position attention: time and peak memory of one causal self-attention layer
# (forward + backward, batch 1, d_model 512, 8 heads) with relative logits by skewing (Huang et
# al. 2018), by the naive (L, L, Dh) gather (Shaw et al. 2018), relative *local* attention
# (blocks of --block queries seeing their block and the previous one), and plain attention as
# the reference, at L = 512 .. 4096. Each measurement runs in its own process. Then music
# sampling speed (events/s) with and without the key/value cache at length 1024.
# Usage: scripts/bench/relative_attention.sh [--lengths "512 1024 2048 4096"] [--naive-max 1024]
#                                            [--block 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
lengths="512 1024 2048 4096" naive_max=1024 block=256
while [[ $# -gt 0 ]]; do
  case $1 in
    --lengths) lengths=$2; shift 2 ;;
    --naive-max) naive_max=$2; shift 2 ;;
    --block) block=$2; shift 2 ;;
    *) echo "usage: $0 [--lengths \"L ...\"] [--naive-max L] [--block B]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh >/dev/null
scripts/build.sh xformer_bench >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for L in $lengths; do
  for method in plain skew naive local; do
    if [[ $method == naive && $L -gt $naive_max ]]; then
      # The gather alone is H * L^2 * Dh floats, and backward needs as much again.
      echo "{\"method\": \"naive\", \"length\": $L, \"skipped\": \"needs ~$((2 * 8 * L * L * 64 * 4 / 1048576)) MB\"}"
      continue
    fi
    build/xformer_bench attention --method "$method" --length "$L" --block "$block" --d-model 512 --heads 8 2>/dev/null
  done
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
plain = {r["length"]: r for r in rows if r["method"] == "plain"}
print("%6s %6s %10s %8s %12s %9s" % ("L", "method", "ms", "x plain", "peak MB", "x plain"))
for r in rows:
    p = plain.get(r["length"])
    if "skipped" in r:
        print("%6d %6s   skipped: %s" % (r["length"], r["method"], r["skipped"]))
        continue
    print("%6d %6s %10.1f %8.2f %12.1f %9.2f" % (r["length"], r["method"], r["ms"], r["ms"] / p["ms"],
          r["peak_extra_mb"], r["peak_extra_mb"] / p["peak_extra_mb"]))
'

echo "music sampling, 1024 events, one row, untrained music_transformer (d_model 128, 4 heads, ffn 512, 3 layers):"
for cache in on off; do
  build/xformer_bench music-sample --length 1024 --cache "$cache" --d-model 128 --heads 4 --ffn 512 \
    --layers 3 --batch 1 2>/dev/null
done | python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("  cache %-3s: %7.1f events/s" % ("on" if d["cache"] else "off", d["events_per_s"]))
'
