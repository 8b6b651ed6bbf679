#!/usr/bin/env bash
# System packages the project needs on Debian 12 (idempotent; root or sudo).
set -euo pipefail
need=()
for p in build-essential pkg-config openssl curl ca-certificates libudev-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
