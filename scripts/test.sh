#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test (GPU cases skip themselves without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build && ctest --output-on-failure -j "${DEEPERLAB_JOBS:-$(nproc)}"
