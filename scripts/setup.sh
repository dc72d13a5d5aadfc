#!/usr/bin/env bash
# Installs what xformer needs to build, test and run, from Debian 12's packages, and only what
# is missing (safe to run again). With --bench it also installs Debian's PyTorch (python3-torch),
# the reference that scripts/bench/ compares against.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev          # LibTorch 1.13 (CPU)
  libopenblas0-pthread  # fast BLAS for LibTorch: the reference BLAS is ~30x slower on matmul
  libcli11-dev nlohmann-json3-dev libspdlog-dev catch2
  libsentencepiece-dev  # tokenizer (in a helper process, see apps/spm_helper/main.cpp)
  libstb-dev            # image files: PNG/JPEG/BMP read, PNG write (stb_image)
  zlib1g-dev            # gzipped IDX files (MNIST, Fashion-MNIST)
  libgloo-dev           # c10d Gloo headers: multi-process training (docs/scaling.md)
  python3               # data preparation scripts
)
if [[ "${1:-}" == "--bench" ]]; then packages+=(python3-torch); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}"
# Through env: sudo resets the environment, and debconf would stop to ask questions.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
