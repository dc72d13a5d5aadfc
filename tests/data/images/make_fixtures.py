#!/usr/bin/env python3
"""Writes the image fixtures of the tests: small smooth RGB pictures (gradients, discs and
stripes drawn from a seeded generator), as PNG files in train/, valid/ and test/, plus a broken
file in corrupt/. Standard library only (zlib + struct PNG writer). Run from this folder:
    python3 make_fixtures.py
"""
import math
import os
import random
import struct
import zlib


def write_png(path, width, height, pixels):
    """pixels: rows of (r, g, b) tuples."""
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def picture(rng, size):
    base = [rng.randrange(40, 200) for _ in range(3)]
    slope = [rng.uniform(-4, 4) for _ in range(6)]
    cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 6, size / 2)
    disc = [rng.randrange(0, 256) for _ in range(3)]
    period = rng.uniform(4, 12)
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
            stripe = 12 * math.sin(2 * math.pi * (x + y) / period)
            px = []
            for c in range(3):
                v = disc[c] if inside else base[c] + slope[2 * c] * x + slope[2 * c + 1] * y
                px.append(max(0, min(255, int(round(v + stripe)))))
            row.append(tuple(px))
        rows.append(row)
    return rows


def main():
    rng = random.Random(20261126)
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        os.makedirs(split, exist_ok=True)
        for i in range(count):
            size = 24
            write_png(f"{split}/picture_{i + 1:02d}.png", size, size, picture(rng, size))
    os.makedirs("corrupt", exist_ok=True)
    with open("corrupt/truncated.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00")


if __name__ == "__main__":
    main()
