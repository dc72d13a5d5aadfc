#!/usr/bin/env bash
# Configures and builds xformer in build/ (Release, Ninja, ccache when present).
# Extra arguments are ninja targets, e.g. `scripts/build.sh xformer` builds only the binary.
# To build against another LibTorch (official zip, or the one inside PyTorch 2.x):
#   XFORMER_TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)') scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${XFORMER_TORCH_PREFIX:-}" ]]; then args+=("-DCMAKE_PREFIX_PATH=${XFORMER_TORCH_PREFIX}"); fi
# A build/ configured for another LibTorch is configured anew (the cached Torch_DIR would keep
# the old one); without XFORMER_TORCH_PREFIX, build/ keeps the LibTorch it was configured with.
if [[ -n "${XFORMER_TORCH_PREFIX:-}" && -f build/CMakeCache.txt ]]; then
  cached=$(sed -n 's/^CMAKE_PREFIX_PATH:[A-Z]*=//p' build/CMakeCache.txt)
  if [[ "$cached" != "$XFORMER_TORCH_PREFIX" ]]; then
    echo "build.sh: build/ was configured for LibTorch prefix '${cached:-(the system one)}': configuring it for '$XFORMER_TORCH_PREFIX'" >&2
    rm -rf build/CMakeCache.txt build/CMakeFiles build/build.ninja
  fi
fi
if [[ ! -f build/build.ninja ]]; then cmake "${args[@]}"; fi
ninja -C build "$@"
