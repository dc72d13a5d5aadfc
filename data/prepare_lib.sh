# Shared by the data/*/prepare.sh scripts (source it): their options, the up-to-date check, and
# Debian packages as data sources.
#
#   prepare_options [FLAG...] -- ARG...
#                                  parse the script's arguments: --force sets force=1, -h/--help
#                                  prints the script's header comment, each FLAG listed (e.g.
#                                  --fixture) sets the variable of its name (fixture=1); anything
#                                  else is refused with exit 2.
#   up_to_date STAMP FILE...       true unless --force was given, STAMP is missing, or a FILE
#                                  (the script, its helpers) is newer than STAMP; when false it
#                                  removes STAMP, so that a rebuild cut short is redone next time.
#   fetch_and_unpack CACHE PKG...  `apt-get download` each package into CACHE (once) and unpack
#                                  it afresh with `dpkg -x` into CACHE/extract/PKG.
#   split_files CACHE DEST         read NUL-separated file paths under CACHE/extract on stdin,
#                                  link each into DEST/{train,valid,test} (recreated), chosen by
#                                  the first byte of the SHA-256 of its package-relative path:
#                                  0-203 train, 204-229 valid, 230-255 test (about 80/10/10, the
#                                  same on every machine); prints "TRAIN VALID TEST" counts.

prepare_options() {
  local -a flags=()
  while [[ $# -gt 0 && $1 != -- ]]; do flags+=("$1"); shift; done
  shift  # the --
  force=0
  local flag arg
  for flag in "${flags[@]}"; do printf -v "${flag#--}" 0; done
  for arg in "$@"; do
    case $arg in
      --force) force=1 ;;
      -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
      *)
        for flag in "${flags[@]}"; do
          if [[ $arg == "$flag" ]]; then printf -v "${flag#--}" 1; continue 2; fi
        done
        echo "$(basename "$0"): unknown argument '$arg' (try --help)" >&2
        exit 2 ;;
    esac
  done
}

up_to_date() {
  local stamp=$1 file
  shift
  if [[ $force == 0 && -f $stamp ]]; then
    for file in "$@"; do [[ $stamp -nt $file ]] || { rm -f "$stamp"; return 1; }; done
    return 0
  fi
  rm -f "$stamp"
  return 1
}

fetch_and_unpack() {
  local cache=$1 pkg
  shift
  mkdir -p "$cache"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo"
  for pkg in "$@"; do
    # A package file that does not read as one (a copy cut short) is fetched again.
    local deb
    for deb in "$cache/${pkg}"_*.deb; do
      [[ -f $deb ]] && ! dpkg-deb --info "$deb" >/dev/null 2>&1 && { echo "prepare.sh: $deb is damaged: fetching it again" >&2; rm -f "$deb"; }
    done
    if ! ls "$cache/${pkg}"_*.deb >/dev/null 2>&1; then
      # Images with their packages installed may have no package lists: fetch them once.
      (cd "$cache" && apt-get download "$pkg") ||
        { { [[ $(id -u) -eq 0 ]] || [[ -n $sudo ]]; } && $sudo apt-get update -q >&2 &&
          (cd "$cache" && apt-get download "$pkg"); } || {
        echo "prepare.sh: cannot download $pkg (run apt-get update as root)" >&2
        return 1
      }
    fi
    rm -rf "$cache/extract/$pkg"
    mkdir -p "$cache/extract/$pkg"
    dpkg -x "$cache/${pkg}"_*.deb "$cache/extract/$pkg"
  done
}

split_files() {
  local cache=$1 dest=$2 file rel byte split name
  local -A count=([train]=0 [valid]=0 [test]=0)
  for split in train valid test; do rm -rf "${dest:?}/$split"; mkdir -p "$dest/$split"; done
  while IFS= read -r -d '' file; do
    rel=${file#"$cache/extract/"}
    byte=$((16#$(printf '%s' "$rel" | sha256sum | cut -c1-2)))
    if ((byte < 204)); then split=train; elif ((byte < 230)); then split=valid; else split=test; fi
    name=$(printf '%s' "$rel" | tr '/ ' '__')
    ln -sf "$file" "$dest/$split/$name"
    count[$split]=$((count[$split] + 1))
  done
  echo "${count[train]} ${count[valid]} ${count[test]}"
}
