#!/usr/bin/env bash
# demo.sh: the main job. Installs what is missing, builds (Release) and trains the digits
# classifier, which ends with a line test_accuracy=0.XXXX.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ag_need_packages
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DAG_BUILD_BINDINGS=OFF >/dev/null
ninja -C build/release digits >/dev/null
exec ./build/release/examples/digits "$@"
