#!/usr/bin/env bash
# The README's demo: install what is missing, build, prepare the English->German demo corpus,
# train the demo Transformer, evaluate it on the test split, and translate a few sentences.
# Running it again continues (or reuses) the same run in runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh xformer
data/translation/prepare.sh

run=runs/demo
if [[ -f $run/checkpoints/last.pt ]]; then
  echo "demo: continuing the run in $run"
  build/xformer train --resume --run-dir "$run"
else
  build/xformer train --config configs/translation/demo.json --run-dir "$run" --force
fi

echo
echo "demo: evaluating the best checkpoint on the test split"
build/xformer eval --run "$run" --split test --checkpoint best

echo
echo "demo: sample translations (beam 4, as eval searches)"
cat > "$run/samples/sample_demo_input.txt" <<'TXT'
Where is the train station?
I would like a cup of coffee.
The weather is nice today.
He does not know what to do.
We have to talk about it.
TXT
if ! build/xformer sample --run "$run" --input "$run/samples/sample_demo_input.txt" \
  --out "$run/samples/sample_demo_output.txt" 2>"$run/samples/sample_demo.log"; then
  cat "$run/samples/sample_demo.log" >&2
  exit 1
fi
paste -d '\n' "$run/samples/sample_demo_input.txt" "$run/samples/sample_demo_output.txt" | sed 'n;s/^/  -> /'

echo
echo "demo: the run is in $run (metrics.jsonl, checkpoints/, samples/)"
if [[ -d $run/tensorboard ]]; then
  echo "      and its training curves in $run/tensorboard/ (view them with: tensorboard --logdir runs)"
fi
