#!/usr/bin/env bash
# GPU machine check: build xformer against the LibTorch inside the machine's PyTorch 2.x (CUDA),
# run the CUDA tests and then the whole suite there, and the GPU benchmarks.
# Expects Debian's header-library packages in .deps/ (see docs/gpu.md); logs go to $OUT.
# Usage: scripts/gpu/check.sh [build|tests|bench]...   (default: all three, in that order)
set -uo pipefail
OUT=${OUT:-/tmp/xformer_gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
cd "$(dirname "$0")/../.."
stages=("${@:-build tests bench}")
stages=(${stages[*]})
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }
SECONDS=0
stamp() { echo "== [$SECONDS s] $*"; }

stamp versions
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
nproc; g++ --version | head -1

compgen -G ".deps/*.deb" > /dev/null || { echo "no .deps/*.deb: run scripts/gpu/fetch_deps.sh on the Debian machine and carry .deps"; exit 1; }
rm -rf /tmp/deps && mkdir -p /tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
arch=/tmp/deps/usr/lib/x86_64-linux-gnu/cmake

# NCCL's header ships in the wheel's nvidia-nccl package: build the NCCL backend when it is there.
nccl_include=$(python3 -c 'import nvidia.nccl as n, os; d = os.path.join(list(n.__path__)[0], "include"); print(d if os.path.exists(os.path.join(d, "nccl.h")) else "")' 2>/dev/null)
nccl_flags=()
[[ -n "$nccl_include" ]] && nccl_flags=(-DXFORMER_NCCL=ON -DNCCL_INCLUDE_DIR="$nccl_include")
echo "nccl.h: ${nccl_include:-not found (CUDA ranks will use Gloo)}"

configure() {
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;/tmp/deps/usr" -DCMAKE_CXX_COMPILER_LAUNCHER= \
    -Dspdlog_DIR=$arch/spdlog -Dfmt_DIR=$arch/fmt -DCatch2_DIR=/tmp/deps/usr/lib/cmake/Catch2 \
    -DXFORMER_HEADER_ONLY_LOGGING=ON -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON "$@" \
    > "$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
  grep -E "SentencePiece|gloo" "$OUT/cmake.log"; grep HAVE_ build-cuda/generated/xformer_build_config.h
}
build() { ninja -C build-cuda -j16 -k 0 xformer xformer_spm xformer_tests > "$OUT/build.log" 2>&1; }

if has build; then
  stamp configure
  configure "${nccl_flags[@]}"
  stamp build
  if ! build; then
    grep -E "error|FAILED" -A5 "$OUT/build.log" | head -80
    [[ ${#nccl_flags[@]} -gt 0 ]] || exit 1
    stamp "build failed with NCCL: again without it (CUDA ranks use Gloo)"
    configure -DXFORMER_NCCL=OFF
    build || { grep -E "error|FAILED" -A5 "$OUT/build.log" | head -80; exit 1; }
  fi
  # The benchmarks' binary apart: a failure there must not cost the tests.
  ninja -C build-cuda -j16 xformer_bench > "$OUT/build_bench.log" 2>&1 ||
    { echo "xformer_bench did not build:"; grep -E "error" -A5 "$OUT/build_bench.log" | head -30; }
  build-cuda/xformer info
  # libstdc++ must come before LibTorch (whose copies of std::filesystem crash): see CMakeLists.txt.
  readelf -d build-cuda/xformer_tests | grep NEEDED | head -3
fi

if has tests; then
  stamp "CUDA tests"
  (cd build-cuda && timeout 240 ./xformer_tests "[cuda]" --durations yes > "$OUT/cuda_tests.log" 2>&1)
  grep -E "FAILED|passed|failed|SIGSEGV|with message|^  [A-Z]" "$OUT/cuda_tests.log" | head -60
  stamp "SentencePiece helper: its libraries, and the tokenizer tests"
  ldd build-cuda/xformer_spm | grep -E "sentencepiece|protobuf|stdc|torch"
  (cd build-cuda && timeout 60 ./xformer_tests "[tokenizer]" > "$OUT/tokenizer_tests.log" 2>&1;
     echo "exit $?"; grep -E "FAILED|passed|failed|CHECK|with message" "$OUT/tokenizer_tests.log" | head -10)
  stamp "tiny translation run on the GPU: train, eval, sample"
  rm -rf /tmp/xf_gpu_tiny
  timeout 120 build-cuda/xformer train --config configs/translation/tiny.json --run-dir /tmp/xf_gpu_tiny \
    --set train.max_steps=30 > "$OUT/tiny_train.log" 2>&1; echo "train exit $?"; tail -3 "$OUT/tiny_train.log"
  timeout 60 build-cuda/xformer eval --run /tmp/xf_gpu_tiny --split valid 2>&1 | tail -2
  echo "ein kleiner Test ." | timeout 60 build-cuda/xformer sample --run /tmp/xf_gpu_tiny 2>&1 | tail -2
  stamp "whole suite (LibTorch 2.x, 16 jobs)"
  (cd build-cuda && timeout 240 ctest -j16 --timeout 200 -E cuda/ 2>&1 | tail -25)
  cp build-cuda/Testing/Temporary/LastTest.log "$OUT/ctest_last.log" 2>/dev/null
  stamp "C++ runtime symbols the test binary binds to LibTorch (expected: none)"
  (cd build-cuda && LD_DEBUG=bindings ./xformer_tests "extends chains merge parent and child" 2>&1 |
     grep -E "xformer_tests \[0\] to .*libtorch.*(St10filesystem|NSt7__cxx11)" | sed 's/.*normal symbol//' | head -10)
fi

if has bench; then
  stamp "GPU benchmarks"
  BENCH_LOG="$OUT/bench_stderr.log" timeout 300 scripts/bench/translation_train_gpu.sh --build build-cuda 2>&1
  stamp "relative attention on the GPU"
  timeout 120 scripts/bench/relative_attention_gpu.sh --build build-cuda 2>&1
  stamp "activation recomputation on the GPU (base shape, bf16, 256 + 256 tokens)"
  timeout 90 scripts/bench/recompute.sh --build build-cuda --device cuda --rounds 1 --steps 10 -- \
    --d-model 512 --heads 8 --ffn 2048 --layers 6 --vocab 32000 --batch 64 --src-len 256 --tgt-len 256 2>&1
fi
stamp done
