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
# lists must be present (`apt-get update`, or scripts/setup.sh).
#
# Environment: PYTHON  python interpreter to use (default /usr/bin/python3,
#                      else python3 from PATH).  Standard library only.
set -euo pipefail

PKG=trans-de-en
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=$HERE/cache
EXTRACT=$CACHE/extract
OUT=$HERE/en-de
FIXTURE_DIR=$ROOT/tests/data/translation
PARSER=$HERE/ding_to_tsv.py
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
SPLITS=(train valid test)

force=0
fixture=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    --fixture) fixture=1 ;;
    -h|--help) sed -n '2,15p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

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

up_to_date() {
  local s
  for s in "${SPLITS[@]}"; do
    [[ -s $OUT/$s.tsv && $OUT/$s.tsv -nt $SELF && $OUT/$s.tsv -nt $PARSER ]] \
      || return 1
  done
}

fetch_deb() {
  local deb log
  mkdir -p "$CACHE"
  deb=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | sort | tail -n 1)
  if [[ -n $deb ]]; then
    echo "using cached $(basename "$deb")" >&2
  else
    command -v apt-get >/dev/null 2>&1 \
      || die "apt-get not found; this script needs Debian/Ubuntu (package $PKG)"
    echo "downloading $PKG with apt-get download ..." >&2
    if ! log=$(cd "$CACHE" && apt-get download "$PKG" 2>&1); then
      if grep -qE "Unable to locate package|has no installation candidate|Can't select candidate|No packages found" <<<"$log"; then
        die "package $PKG not found in the apt package lists; run 'apt-get update' (or scripts/setup.sh) and try again"
      fi
      echo "$log" >&2
      die "apt-get download $PKG failed"
    fi
    deb=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | sort | tail -n 1)
    [[ -n $deb ]] || die "apt-get download $PKG produced no .deb in $CACHE"
  fi
  echo "$deb"
}

# Path of the Ding dictionary inside the unpacked package.
extract_dict() {
  local deb=$1 dict
  if [[ $force == 1 || ! -d $EXTRACT || $deb -nt $EXTRACT ]]; then
    rm -rf "$EXTRACT"
    mkdir -p "$EXTRACT"
    dpkg -x "$deb" "$EXTRACT" || die "dpkg -x $deb failed"
    touch "$EXTRACT"
  fi
  dict=$(find "$EXTRACT" -type f -path '*/share/trans/de-en' | head -n 1)
  [[ -n $dict ]] || dict=$(find "$EXTRACT" -type f -name 'de-en' | head -n 1)
  [[ -n $dict ]] || die "no Ding dictionary (de-en) found in $deb"
  echo "$dict"
}

build_corpus() {
  local py=$1 deb dict tmp s
  deb=$(fetch_deb)
  dict=$(extract_dict "$deb")
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
}

PY=$(find_python)

rebuilt=0
if [[ $force == 0 ]] && up_to_date; then
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
