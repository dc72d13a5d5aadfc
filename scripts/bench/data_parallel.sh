#!/usr/bin/env bash
# Multi-process data parallelism on this machine: training throughput (target tokens/s, after
# the first logged interval) of `xformer train --nproc N` against one process using all the
# cores, same config, same effective batch (update_freq = N batches of max_tokens / ... each).
# Usage: scripts/bench/data_parallel.sh [--nproc N] [--steps S] [--config F]
# The config's data must be prepared (configs/translation/demo.json: data/translation/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
nproc_ranks=2 steps=40 config=configs/translation/demo.json
while [[ $# -gt 0 ]]; do
  case $1 in
    --nproc) nproc_ranks=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    *) echo "usage: $0 [--nproc N] [--steps S] [--config F]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >/dev/null
scripts/build.sh xformer >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The default measures the model of the figures in docs/performance.md: the demo corpus with
# d_model 256, ffn 1024, dropout 0.1 and batches of 3000 tokens (4.7M parameters).
shape=()
[[ $config == configs/translation/demo.json ]] &&
  shape=(--set model.d_model=256 --set model.ffn_dim=1024 --set model.dropout=0.1 --set task.max_tokens=3000)
common=(--config "$config" "${shape[@]}" --set train.max_steps="$steps" --set train.log_every=10 --set train.eval_every=0
        --set train.save_every=0 --set task.eval_bleu=false --set train.best_metric=loss --set train.best_mode=min
        --set train.update_freq="$nproc_ranks")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
build/xformer train "${common[@]}" --run-dir "$out/one" >/dev/null 2>&1
build/xformer train --nproc "$nproc_ranks" "${common[@]}" --run-dir "$out/ranks" >/dev/null 2>&1
python3 - "$out" "$nproc_ranks" <<'PY'
import json, sys
out, n = sys.argv[1], sys.argv[2]
def rate(run):
    lines = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    train = [l for l in lines if l["split"] == "train"][1:]  # the first interval includes warm-up
    return sum(l["tokens_per_s"] for l in train) / len(train)
one, ranks = rate("one"), rate("ranks")
print(f"1 process, all cores: {one:8.0f} tokens/s")
print(f"{n} ranks (--nproc):    {ranks:8.0f} tokens/s   ratio {ranks / one:.2f}x")
PY
