#!/usr/bin/env bash
# Translation training throughput: xformer versus the same model and batch in PyTorch (Python)
# on the same LibTorch (Debian's python3-torch), measured in the same run, plus xformer's
# decoding speed (greedy and beam 4, with and without the key/value cache) against PyTorch
# decoding with its cache (translation_decode_ref.py).
#
# Shape: d_model 256, 4 heads, ffn 1024, 3+3 layers, vocab 8000, batch 64 x 32 tokens,
# label smoothing 0.1, Adam; then the fused output projection + loss against the same composed
# from LibTorch ops (xformer_bench loss). Usage: scripts/bench/translation_train.sh [--steps N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=30 rounds=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--rounds R]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --bench >/dev/null
scripts/build.sh xformer xformer_bench >/dev/null
shape=(--d-model 256 --heads 4 --ffn 1024 --layers 3 --vocab 8000 --batch 64 --src-len 32 --tgt-len 32)

# Both sides use the same OpenBLAS kernels: the ones xformer picks (see core/runtime.h).
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(build/xformer info | sed -n "s/.*OpenBLAS kernels: //p")}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# Alternate the two sides for `rounds` rounds and compare medians: timings on a shared
# machine move by +-10% from one run to the next.
refs=(); ours=()
for ((i = 0; i < rounds; i++)); do
  refs+=("$(/usr/bin/python3 scripts/bench/translation_train_ref.py "${shape[@]}" --steps "$steps" 2>/dev/null)")
  ours+=("$(build/xformer_bench train "${shape[@]}" --steps "$steps" 2>/dev/null)")
done
printf '%s\n' "${refs[@]}" | sed 's/^/pytorch : /'
printf '%s\n' "${ours[@]}" | sed 's/^/xformer : /'
{ printf '%s\n' "${refs[@]}"; printf '%s\n' "${ours[@]}"; } | /usr/bin/python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda impl: statistics.median(r["tgt_tokens_per_s"] for r in runs if r["impl"] == impl)
x, p = med("xformer"), med("pytorch")
print(f"training (median of {len(runs)//2} rounds): xformer {x:.0f} tgt tok/s, pytorch {p:.0f} tgt tok/s, ratio {x/p:.2f}x")
'

echo "decoding (64 sentences, source 32 tokens, 32 output tokens each, untrained model; PyTorch with its cache):"
for mode in greedy beam; do
  /usr/bin/python3 scripts/bench/translation_decode_ref.py "${shape[@]}" --mode "$mode" --beam 4 2>/dev/null
  for cache in on off; do
    build/xformer_bench decode "${shape[@]}" --mode "$mode" --beam 4 --cache "$cache" 2>/dev/null
  done
done | /usr/bin/python3 scripts/bench/decode_table.py

echo "output projection + label-smoothed loss, forward + backward ($((64 * 32)) rows, vocab 8000):"
for method in composed fused; do
  build/xformer_bench loss "${shape[@]}" --method "$method" --reps 5 2>/dev/null
done | /usr/bin/python3 -c '
import json, sys
ms = {r["method"]: r["ms"] for r in map(json.loads, filter(str.strip, sys.stdin))}
c, f = ms["composed"], ms["fused"]
print(f"  composed from LibTorch ops {c:.0f} ms, fused {f:.0f} ms, ratio {c / f:.2f}x")
'
