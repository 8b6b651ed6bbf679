#!/usr/bin/env bash
# What the project needs on Debian 12 (idempotent; root or sudo): system packages for the
# CLI (libdbus for Bluetooth LE through BlueZ), the Studio (WebKitGTK) and its real-window tests
# (Xvfb, WebKitWebDriver; xdotool for the OS file dialog and a real drag, python3-gi for the GTK
# drag source), Node.js for the Studio's frontend, and tauri-driver.
set -euo pipefail
need=()
for p in build-essential pkg-config openssl curl ca-certificates libudev-dev libdbus-1-dev \
  libssl-dev libwebkit2gtk-4.1-dev xvfb webkit2gtk-driver xdotool python3-gi gir1.2-gtk-3.0; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# The frontend's tools need Node.js 20 or newer (Debian 12's own is 18).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "note: Node.js 20+ not found (have: $(node --version 2>/dev/null || echo none)); installing Debian's nodejs and npm" >&2
  need+=(nodejs npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
if [ "${1:-}" = "--with-driver" ] && ! command -v tauri-driver >/dev/null 2>&1; then
  cargo install -q tauri-driver --version ^2 --locked
fi
