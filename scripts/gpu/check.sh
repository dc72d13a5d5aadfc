#!/usr/bin/env bash
# GPU machine check: build xformer against the LibTorch inside the machine's PyTorch 2.x (CUDA),
# run the tokenizer and a tiny translation run there, the CUDA tests, the whole suite, and the GPU
# benchmarks. Expects Debian's packages in .deps/ (scripts/gpu/fetch_deps.sh; see docs/gpu.md);
# logs go to $OUT.
#
# Usage: scripts/gpu/check.sh [build|tests|bench]...   (default: all three, in that order)
# One device call may run 600 s: run `build tests` in one call and `bench` in the next. Every
# step's time limit is cut to what is left of CHECK_DEADLINE seconds (default 570) since the
# start, so the script ends, with its summary, before the call is killed. Exit status 1 when a
# step failed (each prints "exit N"), 0 when all passed.
set -uo pipefail
OUT=${OUT:-/tmp/xformer_gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
cd "$(dirname "$0")/../.."
stages=("${@:-build tests bench}")
stages=(${stages[*]})
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }
SECONDS=0
deadline=${CHECK_DEADLINE:-570}
failed=()
stamp() { echo "== [$SECONDS s] $*"; }
# limit N: N seconds, or what is left before the deadline when that is less (at least 1).
limit() { local left=$((deadline - SECONDS)); ((left < $1)) && echo $((left > 1 ? left : 1)) || echo "$1"; }
# report NAME RC: prints the step's exit status and remembers a failure.
report() {
  echo "   $1: exit $2$( (($2 == 124)) && echo ' (timed out)')"
  (($2 == 0)) || failed+=("$1")
}
finish() {
  stamp "done; failed: ${failed[*]:-none}"
  exit $((${#failed[@]} > 0))
}

stamp versions
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
nproc; g++ --version | head -1

compgen -G ".deps/*.deb" > /dev/null || { echo "no .deps/*.deb: run scripts/gpu/fetch_deps.sh on the Debian machine and carry .deps"; exit 1; }
rm -rf /tmp/deps && mkdir -p /tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps || { echo "cannot unpack $f"; exit 1; }; done
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
    > "$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; report configure 1; finish; }
  grep -E "SentencePiece|gloo" "$OUT/cmake.log"; grep HAVE_ build-cuda/generated/xformer_build_config.h
}
# -k 0: every compile error of the build in one log, not only the first.
build() { timeout "$(limit 400)" ninja -C build-cuda -j16 -k 0 xformer xformer_spm xformer_tests > "$OUT/build.log" 2>&1; }

if has build; then
  [[ -n "$TORCH_PREFIX" ]] || { echo "python3 has no torch: no LibTorch to build against"; report build 1; finish; }
  stamp configure
  configure "${nccl_flags[@]}"
  stamp build
  build; rc=$?
  if ((rc != 0)); then
    grep -E "error|FAILED" -A5 "$OUT/build.log" | head -80
    if [[ ${#nccl_flags[@]} -gt 0 ]] && grep -qi nccl "$OUT/build.log"; then
      stamp "build failed in NCCL code: again without it (CUDA ranks use Gloo)"
      configure -DXFORMER_NCCL=OFF
      build; rc=$?
      ((rc == 0)) || grep -E "error|FAILED" -A5 "$OUT/build.log" | head -80
    fi
  fi
  report build $rc
  ((rc == 0)) || finish
  # The benchmarks' binary apart: a failure there must not cost the tests.
  timeout "$(limit 200)" ninja -C build-cuda -j16 xformer_bench > "$OUT/build_bench.log" 2>&1; rc=$?
  ((rc == 0)) || { echo "xformer_bench did not build:"; grep -E "error" -A5 "$OUT/build_bench.log" | head -30; }
  report build_bench $rc
  build-cuda/xformer info
  # libstdc++ must come before LibTorch (whose copies of std::filesystem crash): see CMakeLists.txt.
  readelf -d build-cuda/xformer_tests | grep NEEDED | head -3
fi

if has tests; then
  [[ -x build-cuda/xformer_tests ]] || { echo "no build-cuda/xformer_tests: run the build stage first"; report tests 1; finish; }
  # The tokenizer first: translation (the tiny run, CUDA training tests) needs it.
  stamp "SentencePiece helper: its libraries, and the tokenizer tests"
  ldd build-cuda/xformer_spm | grep -E "sentencepiece|protobuf|stdc|torch"
  (cd build-cuda && timeout "$(limit 60)" ./xformer_tests "[tokenizer]" > "$OUT/tokenizer_tests.log" 2>&1); rc=$?
  grep -E "FAILED|passed|failed|CHECK|with message" "$OUT/tokenizer_tests.log" | head -10
  report tokenizer_tests $rc
  stamp "tiny translation run on the GPU: train, eval, sample"
  rm -rf /tmp/xf_gpu_tiny
  timeout "$(limit 120)" build-cuda/xformer train --config configs/translation/tiny.json --run-dir /tmp/xf_gpu_tiny \
    --set train.max_steps=30 > "$OUT/tiny_train.log" 2>&1; rc=$?
  tail -3 "$OUT/tiny_train.log"; report tiny_train $rc
  timeout "$(limit 60)" build-cuda/xformer eval --run /tmp/xf_gpu_tiny --split valid > "$OUT/tiny_eval.log" 2>&1; rc=$?
  tail -2 "$OUT/tiny_eval.log"; report tiny_eval $rc
  echo "ein kleiner Test ." | timeout "$(limit 60)" build-cuda/xformer sample --run /tmp/xf_gpu_tiny > "$OUT/tiny_sample.log" 2>&1; rc=$?
  tail -2 "$OUT/tiny_sample.log"; report tiny_sample $rc
  stamp "CUDA tests"
  (cd build-cuda && XFORMER_REQUIRE_CUDA=1 timeout "$(limit 240)" ./xformer_tests "[cuda]" --durations yes \
     > "$OUT/cuda_tests.log" 2>&1); rc=$?
  grep -E "FAILED|passed|failed|SIGSEGV|with message|^  [A-Z]" "$OUT/cuda_tests.log" | head -60
  report cuda_tests $rc
  stamp "whole suite (LibTorch 2.x, 16 jobs)"
  (cd build-cuda && timeout "$(limit 240)" ctest -j16 --timeout 200 -E cuda/ > "$OUT/ctest.log" 2>&1); rc=$?
  tail -25 "$OUT/ctest.log"; report whole_suite $rc
  cp build-cuda/Testing/Temporary/LastTest.log "$OUT/ctest_last.log" 2>/dev/null
  stamp "C++ runtime symbols the test binary binds to LibTorch (expected: none)"
  (cd build-cuda && LD_DEBUG=bindings timeout "$(limit 30)" ./xformer_tests "extends chains merge parent and child" 2>&1 |
     grep -E "xformer_tests \[0\] to .*libtorch.*(St10filesystem|NSt7__cxx11)" | sed 's/.*normal symbol//' | head -10)
fi

if has bench; then
  [[ -x build-cuda/xformer_bench ]] || { echo "no build-cuda/xformer_bench: run the build stage first"; report bench 1; finish; }
  stamp "GPU benchmarks"
  BENCH_LOG="$OUT/bench_stderr.log" timeout "$(limit 300)" scripts/bench/translation_train_gpu.sh --build build-cuda 2>&1
  report translation_bench $?
  stamp "relative attention on the GPU"
  timeout "$(limit 120)" scripts/bench/relative_attention_gpu.sh --build build-cuda 2>&1
  report relative_attention_bench $?
  stamp "activation recomputation on the GPU (base shape, bf16, 256 + 256 tokens)"
  timeout "$(limit 90)" scripts/bench/recompute.sh --build build-cuda --device cuda --rounds 1 --steps 10 -- \
    --d-model 512 --heads 8 --ffn 2048 --layers 6 --vocab 32000 --batch 64 --src-len 256 --tgt-len 256 2>&1
  report recompute_bench $?
fi
finish
