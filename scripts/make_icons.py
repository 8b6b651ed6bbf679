#!/usr/bin/env python3
"""Generate the Studio's icons (a blue sphere with a highlight) as RGBA PNGs: icons/*.png.

Plain Python (zlib + struct), no imaging library; run once, the PNGs are committed."""
import math
import struct
import zlib
from pathlib import Path


def png(size: int) -> bytes:
    rows = []
    c = (size - 1) / 2
    r = size * 0.46
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            dx, dy = (x - c) / r, (y - c) / r
            d = math.hypot(dx, dy)
            if d > 1.0:
                row += bytes([0, 0, 0, 0])
                continue
            # Lambert shading from the upper left, plus a soft highlight.
            z = math.sqrt(max(0.0, 1 - d * d))
            light = max(0.0, (-0.5 * dx - 0.6 * dy + 0.62 * z))
            spec = max(0.0, light) ** 18
            base = (18, 86, 168)
            px = [min(255, int(b * (0.35 + 0.75 * light) + 255 * spec * 0.7)) for b in base]
            alpha = int(255 * min(1.0, (1.0 - d) * r / 1.5 + 0.0)) if d > 1 - 1.5 / r else 255
            row += bytes(px + [alpha])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


out = Path(__file__).resolve().parent.parent / "icons"
out.mkdir(exist_ok=True)
for name, size in [("32x32.png", 32), ("128x128.png", 128), ("icon.png", 256)]:
    (out / name).write_bytes(png(size))
    print(out / name)
