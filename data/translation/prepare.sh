#!/usr/bin/env bash
# Prepare the English->German demo corpus from the Ding dictionary
# (Debian package trans-de-en).
#
#   data/translation/prepare.sh            build data/translation/en-de/*.tsv
#   data/translation/prepare.sh --force    rebuild even if up to date
#   data/translation/prepare.sh --fixture  also rebuild the small test
#                                          fixture in tests/data/translation/
#
# No root needed: the package is fetched with `apt-get download` into
# data/translation/cache/ and unpacked there with `dpkg -x`.  The package
# lists must be present (`apt-get update`, or run as root, which fetches them when missing).
#
# Environment: PYTHON  python interpreter to use (default /usr/bin/python3,
#                      else python3 from PATH).  Standard library only.
set -euo pipefail

PKG=trans-de-en
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=$HERE/cache
EXTRACT=$CACHE/extract/$PKG
OUT=$HERE/en-de
FIXTURE_DIR=$ROOT/tests/data/translation
PARSER=$HERE/ding_to_tsv.py
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
SPLITS=(train valid test)

source "$HERE/../prepare_lib.sh"
prepare_options --fixture -- "$@"

die() { echo "prepare.sh: $*" >&2; exit 1; }

find_python() {
  if [[ -n ${PYTHON:-} ]]; then
    echo "$PYTHON"
  elif [[ -x /usr/bin/python3 ]]; then
    echo /usr/bin/python3
  elif command -v python3 >/dev/null 2>&1; then
    command -v python3
  else
    die "python3 not found; install it (apt-get install python3, or scripts/setup.sh)"
  fi
}

# Path of the Ding dictionary inside the unpacked package.
find_dict() {
  local dict
  dict=$(find "$EXTRACT" -type f -path '*/share/trans/de-en' | head -n 1)
  [[ -n $dict ]] || dict=$(find "$EXTRACT" -type f -name 'de-en' | head -n 1)
  [[ -n $dict ]] || die "no Ding dictionary (de-en) found in package $PKG"
  echo "$dict"
}

build_corpus() {
  local py=$1 dict tmp s
  fetch_and_unpack "$CACHE" "$PKG"
  dict=$(find_dict)
  echo "parsing ${dict#"$ROOT"/}" >&2
  tmp=$(mktemp -d "$CACHE/en-de.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "$py" "$PARSER" corpus "$dict" "$tmp" --valid 1000 --test 1000
  mkdir -p "$OUT"
  for s in "${SPLITS[@]}"; do
    mv -f "$tmp/$s.tsv" "$OUT/$s.tsv"
  done
  rm -rf "$tmp"
  trap - EXIT
  touch "$OUT/.prepared"
}

PY=$(find_python)

rebuilt=0
if up_to_date "$OUT/.prepared" "$SELF" "$PARSER" "$HERE/../prepare_lib.sh" &&
   [[ -s $OUT/train.tsv && -s $OUT/valid.tsv && -s $OUT/test.tsv ]]; then
  echo "${OUT#"$ROOT"/}/{train,valid,test}.tsv are up to date (use --force to rebuild)"
else
  build_corpus "$PY"
  rebuilt=1
  echo "wrote ${OUT#"$ROOT"/}/{train,valid,test}.tsv"
fi

if [[ $fixture == 1 ]]; then
  "$PY" "$PARSER" fixture "$OUT" "$FIXTURE_DIR" \
    --train 600 --valid 40 --test 40 --max-words 10
  echo "wrote ${FIXTURE_DIR#"$ROOT"/}/{train,valid,test,corrupt}.tsv"
fi

if [[ $rebuilt == 1 ]]; then
  "$PY" "$PARSER" stats "$OUT/train.tsv" "$OUT/valid.tsv" "$OUT/test.tsv"
fi
