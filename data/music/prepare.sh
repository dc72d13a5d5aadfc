#!/usr/bin/env bash
# Collect the MIDI files that Debian packages ship into data/music/{train,valid,test}/.
#
#   data/music/prepare.sh          fetch, unpack and split (skipped when up to date)
#   data/music/prepare.sh --force  redo it
#
# No root needed: the packages are fetched with `apt-get download` into data/music/cache/ and
# unpacked there with `dpkg -x`; the package lists must be present (`apt-get update`, or run
# as root, which fetches them when missing). Every .mid/.midi file is linked into a split
# chosen by a hash of its package and path (about 80/10/10, the same on every machine).
# data/music/README.md lists the packages, their licences and what they hold.
set -euo pipefail

PACKAGES=(simutrans-data planetblupi-music-midi openttd-openmsx mma)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/cache

source "$HERE/../prepare_lib.sh"
prepare_options -- "$@"
if up_to_date "$HERE/.prepared" "$0" "$HERE/../prepare_lib.sh"; then
  echo "data/music/{train,valid,test} are up to date (use --force to rebuild)"
  exit 0
fi

fetch_and_unpack "$CACHE" "${PACKAGES[@]}"
read -r n_train n_valid n_test < <(
  find "$CACHE/extract" -type f \( -iname '*.mid' -o -iname '*.midi' \) -print0 | sort -z | split_files "$CACHE" "$HERE")

touch "$HERE/.prepared"
echo "data/music: $n_train train, $n_valid valid, $n_test test MIDI files"
