#!/usr/bin/env bash
# Downloads (does not install) the Debian packages that the GPU machine needs next to its PyTorch:
# the header libraries, SentencePiece for the helper process, and gloo's headers. They go to
# .deps/, which scripts/gpu/check.sh unpacks there (see docs/gpu.md). Run on a Debian 12 machine;
# safe to run again (packages already there are kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(libcli11-dev nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 catch2
          libsentencepiece-dev libsentencepiece0 libstb-dev libstb0 libgloo-dev)
mkdir -p .deps
missing=()
for p in "${packages[@]}"; do
  compgen -G ".deps/${p}_*.deb" > /dev/null || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "fetch_deps: all ${#packages[@]} packages are in .deps/"
  exit 0
fi
echo "fetch_deps: downloading ${missing[*]}"
if ! (cd .deps && apt-get download "${missing[@]}"); then
  [[ $(id -u) -eq 0 ]] || { echo "fetch_deps: apt-get download failed (as root, run apt-get update first)" >&2; exit 1; }
  apt-get update -q && (cd .deps && apt-get download "${missing[@]}")
fi
ls .deps
