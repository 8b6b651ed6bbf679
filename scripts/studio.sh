#!/usr/bin/env bash
# The main job: BlueSphere Studio. Installs what it needs (Debian 12), builds the frontend
# and the app, and opens the window. Without a display it says so and runs the CLI demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [ ! -f ui/dist/index.html ] || [ -n "$(find ui/src ui/index.html ui/package.json -newer ui/dist/index.html 2>/dev/null | head -n1)" ]; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi
cargo build -q --workspace --bins
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "No display here (DISPLAY and WAYLAND_DISPLAY are unset): running the CLI demo instead of the Studio."
  exec bash scripts/demo.sh
fi
exec ./target/debug/bluesphere-studio
