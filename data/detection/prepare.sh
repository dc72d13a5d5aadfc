#!/usr/bin/env bash
# The detection demo set, data/detection/digits/: 64x64 canvases with 1-3 MNIST digits each
# (12-32 pixels, not overlapping, over faint noise), COCO-format annotations train.json (4,000
# canvases from the 55,000 training digits), valid.json (500, from the 5,000 validation digits)
# and test.json (500, from the 10,000 test digits). Deterministic.
#
#   data/detection/prepare.sh          generate (skipped when up to date)
#   data/detection/prepare.sh --force  redo it
#
# Runs data/classification/prepare.sh first for the MNIST files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/digits
MNIST=$HERE/../classification/mnist

source "$HERE/../prepare_lib.sh"
prepare_options -- "$@"
if up_to_date "$OUT/.prepared" "$0" "$HERE/make_digits.py"; then
  echo "data/detection/digits is up to date (use --force to rebuild)"
  exit 0
fi

"$HERE/../classification/prepare.sh"
rm -rf "$OUT"
for spec in "train 4000 train" "valid 500 valid" "test 500 t10k"; do
  read -r split count source <<< "$spec"
  python3 "$HERE/make_digits.py" --images "$MNIST/$source-images-idx3-ubyte" --labels "$MNIST/$source-labels-idx1-ubyte" \
    --out "$OUT" --split "$split" --count "$count" --canvas 64 --min-size 12 --max-size 32 --max-objects 3
done
touch "$OUT/.prepared"
