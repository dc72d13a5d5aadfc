#!/usr/bin/env bash
# GPU machine check: build xformer against the LibTorch inside the machine's PyTorch 2.x (CUDA),
# run the test suite there, and train/eval/sample the tiny config on the GPU.
# Expects Debian's header-library packages in .deps/ (see docs/gpu.md); logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/xformer_gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
cd "$(dirname "$0")/../.."

echo "== versions"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -2
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
cmake --version | head -1; g++ --version | head -1; ldd --version | head -1
grep PRETTY_NAME /etc/os-release

echo "== unpack .deps"
rm -rf /tmp/deps && mkdir -p /tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
arch=/tmp/deps/usr/lib/x86_64-linux-gnu/cmake

echo "== configure"
time cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;/tmp/deps/usr" -DCMAKE_CXX_COMPILER_LAUNCHER= \
  -Dspdlog_DIR=$arch/spdlog -Dfmt_DIR=$arch/fmt -DCatch2_DIR=/tmp/deps/usr/lib/cmake/Catch2 \
  -DXFORMER_HEADER_ONLY_LOGGING=ON > "$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
tail -3 "$OUT/cmake.log"

echo "== build"
time ninja -C build-cuda -j16 -k 0 xformer xformer_tests > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -80; exit 1; }

echo "== info"
build-cuda/xformer info

echo "== tests (LibTorch 2.x)"
(cd build-cuda && timeout 400 ./xformer_tests --durations no 2>&1 | tail -40)

echo "== tiny config on CUDA"
run=/tmp/xformer_cuda_run; rm -rf $run
timeout 200 build-cuda/xformer train --config configs/translation/tiny.json --run-dir $run \
  --set train.device=cuda --set task.spm_cache=/tmp/spm --set train.max_steps=100 2>&1 | tail -15
timeout 100 build-cuda/xformer eval --run $run --split test 2>&1 | tail -3
printf 'Where is the station?\nThank you.\n' | timeout 60 build-cuda/xformer sample --run $run --beam 4 2>&1 | tail -3
cp $run/metrics.jsonl "$OUT/cuda_metrics.jsonl" 2>/dev/null
echo "== done"
