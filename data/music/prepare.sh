#!/usr/bin/env bash
# Collect the MIDI files that Debian packages ship into data/music/{train,valid,test}/.
#
#   data/music/prepare.sh          fetch, unpack and split (skipped when up to date)
#   data/music/prepare.sh --force  redo it
#
# No root needed: the packages are fetched with `apt-get download` into data/music/cache/ and
# unpacked there with `dpkg -x`; the package lists must be present (`apt-get update`, or
# scripts/setup.sh). Every .mid/.midi file is linked into a split chosen by a hash of its
# package and path (about 80/10/10, the same on every machine). data/music/README.md lists the
# packages, their licences and what they hold.
set -euo pipefail

PACKAGES=(simutrans-data planetblupi-music-midi openttd-openmsx mma)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/cache
SPLITS=(train valid test)

force=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [[ $force == 0 && -f $HERE/.prepared && $HERE/.prepared -nt $0 ]]; then
  echo "data/music/{train,valid,test} are up to date (use --force to rebuild)"
  exit 0
fi

mkdir -p "$CACHE"
for pkg in "${PACKAGES[@]}"; do
  if ! ls "$CACHE/${pkg}"_*.deb >/dev/null 2>&1; then
    (cd "$CACHE" && apt-get download "$pkg") || {
      echo "prepare.sh: cannot download $pkg (run apt-get update, or scripts/setup.sh)" >&2
      exit 1
    }
  fi
  rm -rf "$CACHE/extract/$pkg"
  mkdir -p "$CACHE/extract/$pkg"
  dpkg -x "$CACHE/${pkg}"_*.deb "$CACHE/extract/$pkg"
done

for s in "${SPLITS[@]}"; do rm -rf "${HERE:?}/$s"; mkdir -p "$HERE/$s"; done
declare -A count=([train]=0 [valid]=0 [test]=0)
while IFS= read -r -d '' file; do
  rel=${file#"$CACHE/extract/"}
  # Split by the first byte of the path's SHA-256: 0-203 train, 204-229 valid, 230-255 test.
  byte=$((16#$(printf '%s' "$rel" | sha256sum | cut -c1-2)))
  if ((byte < 204)); then s=train; elif ((byte < 230)); then s=valid; else s=test; fi
  name=$(printf '%s' "$rel" | tr '/ ' '__')
  ln -sf "$file" "$HERE/$s/$name"
  count[$s]=$((count[$s] + 1))
done < <(find "$CACHE/extract" -type f \( -iname '*.mid' -o -iname '*.midi' \) -print0 | sort -z)

touch "$HERE/.prepared"
echo "data/music: ${count[train]} train, ${count[valid]} valid, ${count[test]} test MIDI files"
