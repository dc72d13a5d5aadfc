#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (Catch2 tests through ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
# --timeout is per test file (the longest, cli/test_cli, takes about 2 min here)
# setup.sh installs gloo's headers, so the multi-process tests must run, not skip.
XFORMER_REQUIRE_GLOO=1 ctest --output-on-failure --timeout 600 -j "$(nproc)"
