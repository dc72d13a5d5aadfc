#!/usr/bin/env bash
# Collect the natural photographs that Debian wallpaper packages ship into
# data/images/{train,valid,test}/ (super-resolution and image generation).
#
#   data/images/prepare.sh          fetch, unpack and split (skipped when up to date)
#   data/images/prepare.sh --force  redo it
#
# No root needed: the packages are fetched with `apt-get download` into data/images/cache/ and
# unpacked there with `dpkg -x`; the package lists must be present (`apt-get update`, or run
# as root, which fetches them when missing). Only photographs are taken (the packages also hold
# drawings and abstract art), listed below; plasma themes give their largest image. Each photo
# is linked into a split chosen by a hash of its package and path (about 80/10/10, the same on
# every machine).
# data/images/README.md lists the packages, their licences and what they hold.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/cache

# package -> photographs, as paths under the unpacked package (globs allowed).
declare -A PHOTOS=(
  [lomiri-wallpapers-16.04]="usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg
    usr/share/backgrounds/Dragonfly_by_Bolly.jpg usr/share/backgrounds/Picture_0B_by_freespace.jpg
    usr/share/backgrounds/Picture_1A_by_freespace.jpg usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg
    usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg usr/share/backgrounds/free_by_Peter_Nerlich.jpg
    usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg
    usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg
    usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg"
  [mate-backgrounds]="usr/share/backgrounds/mate/nature/*.jpg"
  [mate-screensaver-common]="usr/share/backgrounds/cosmos/*.jpg"
  [plasma-workspace-wallpapers]="BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf
    Grey Kite OneStandsOut Path summer_1am"
)

source "$HERE/../prepare_lib.sh"
prepare_options -- "$@"
if up_to_date "$HERE/.prepared" "$0" "$HERE/../prepare_lib.sh"; then
  echo "data/images/{train,valid,test} are up to date (use --force to rebuild)"
  exit 0
fi

fetch_and_unpack "$CACHE" "${!PHOTOS[@]}"

# The largest image of a plasma theme: file names are WIDTHxHEIGHT.ext.
largest_of_theme() {
  local dir=$CACHE/extract/plasma-workspace-wallpapers/usr/share/wallpapers/$1/contents/images
  local best="" best_area=0 f w h
  for f in "$dir"/*; do
    [[ $(basename "$f") =~ ^([0-9]+)x([0-9]+)\. ]] || continue
    w=${BASH_REMATCH[1]} h=${BASH_REMATCH[2]}
    if ((w * h > best_area)); then best=$f best_area=$((w * h)); fi
  done
  [[ -n $best ]] || { echo "prepare.sh: no image in plasma theme $1" >&2; exit 1; }
  printf '%s\n' "$best"
}

files=()
for pkg in "${!PHOTOS[@]}"; do
  for entry in ${PHOTOS[$pkg]}; do
    if [[ $pkg == plasma-workspace-wallpapers ]]; then
      files+=("$(largest_of_theme "$entry")")
    else
      for f in "$CACHE/extract/$pkg"/$entry; do
        [[ -f $f ]] || { echo "prepare.sh: $pkg has no $entry" >&2; exit 1; }
        files+=("$f")
      done
    fi
  done
done

read -r n_train n_valid n_test < <(printf '%s\0' "${files[@]}" | sort -z | split_files "$CACHE" "$HERE")

touch "$HERE/.prepared"
echo "data/images: $n_train train, $n_valid valid, $n_test test photographs"
