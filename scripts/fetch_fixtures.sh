#!/usr/bin/env bash
# Fetch one real firmware version pair of the public delta corpus into target/fixtures/:
# SeaBIOS bios.bin 1.16.2 -> 1.16.3 (the Debian packages seabios_1.16.2-1 and _1.16.3-2,
# LGPL-3), checking the SHA-256 values that ../shared/bench/delta/corpus-public.manifest fixes.
# The end-to-end tests install a delta between them on the virtual device.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/fixtures/seabios
mkdir -p "$out"
uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
uri=${uri:-http://deb.debian.org/debian}
fetch() { # version name sha256
  local ver=$1 name=$2 sha=$3
  if [ -f "$out/$name" ] && echo "$sha  $out/$name" | sha256sum -c --quiet 2>/dev/null; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/p.deb" "$uri/pool/main/s/seabios/seabios_${ver}_all.deb"
  dpkg-deb -x "$tmp/p.deb" "$tmp/x"
  cp "$tmp/x/usr/share/seabios/bios.bin" "$out/$name.part"
  echo "$sha  $out/$name.part" | sha256sum -c --quiet
  mv "$out/$name.part" "$out/$name"
  rm -rf "$tmp"
}
fetch 1.16.2-1 old.bin 7ba476745bd8d32d66b7a5bd12999e2445e7a345a4a72c30352b1d4a69a26e88
fetch 1.16.3-2 new.bin 4ee65f3d02c5e37c3c358618334de65c5b161fac6504aaacd39675eb4ecb80ca
echo "fixtures: $out/old.bin $out/new.bin (SeaBIOS 1.16.2 -> 1.16.3)"
