#!/usr/bin/env bash
# Translation training throughput: xformer versus the same model and batch in PyTorch (Python)
# on the same LibTorch (Debian's python3-torch), measured in the same run, plus xformer's
# decoding speed (greedy and beam 4, with and without the key/value cache).
#
# Shape: d_model 256, 4 heads, ffn 1024, 3+3 layers, vocab 8000, batch 64 x 32 tokens,
# label smoothing 0.1, Adam. Usage: scripts/bench/translation_train.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=30
if [[ "${1:-}" == "--steps" ]]; then steps=$2; fi

scripts/setup.sh --bench >/dev/null
scripts/build.sh xformer xformer_bench >/dev/null
shape=(--d-model 256 --heads 4 --ffn 1024 --layers 3 --vocab 8000 --batch 64 --src-len 32 --tgt-len 32)

# Both sides use the same OpenBLAS kernels: the ones xformer picks (see core/runtime.h).
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(build/xformer info | sed -n "s/.*OpenBLAS kernels: //p")}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
ref=$(/usr/bin/python3 scripts/bench/translation_train_ref.py "${shape[@]}" --steps "$steps" 2>/dev/null)
ours=$(build/xformer_bench train "${shape[@]}" --steps "$steps" 2>/dev/null)
echo "pytorch : $ref"
echo "xformer : $ours"
/usr/bin/python3 - "$ref" "$ours" <<'PY'
import json, sys
ref, ours = (json.loads(a) for a in sys.argv[1:3])
print(f"training: xformer {ours['tgt_tokens_per_s']:.0f} tgt tok/s, pytorch {ref['tgt_tokens_per_s']:.0f} tgt tok/s,"
      f" ratio {ours['tgt_tokens_per_s'] / ref['tgt_tokens_per_s']:.2f}x")
PY

echo "decoding (64 sentences, source 32 tokens, 32 output tokens each, untrained model):"
for mode in greedy beam; do
  for cache in on off; do
    build/xformer_bench decode "${shape[@]}" --mode "$mode" --beam 4 --cache "$cache" 2>/dev/null
  done
done | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    cache = "on " if d["cache"] else "off"
    print("  %-6s beam %d cache %s: %6.1f sentences/s" % (d["mode"], d["beam"], cache, d["sentences_per_s"]))
'
