#!/usr/bin/env bash
# deps.sh: installs the Debian packages the build, the bindings and the tests need, if missing.
# Sourced by demo.sh, test.sh and bench/run. Go (>= 1.24) must already be on PATH.
set -euo pipefail

ag_need_packages() {
  local pkgs=(cmake ninja-build gcc g++ make pkg-config gzip
              swig lua5.4 liblua5.4-dev lua-cjson libffi-dev libcjson-dev
              valgrind clang libomp-14-dev libclang-rt-14-dev)
  [ "${1:-}" = bench ] && pkgs+=(libopenblas-dev python3-torch)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "deps.sh: Go 1.24 or newer is required on PATH for the Go binding" >&2
    return 1
  fi
}
