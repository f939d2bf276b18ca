#!/usr/bin/env bash
# Installs everything deeperlab builds, tests and benchmarks with (Debian 12). Idempotent.
set -euo pipefail
pkgs=(build-essential cmake ninja-build libstb-dev nlohmann-json3-dev catch2 libopenblas-dev
      python3-torch python3-torchvision python3-numpy)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
echo "deeperlab: dependencies installed"
