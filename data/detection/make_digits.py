#!/usr/bin/env python3
"""Detection data from MNIST digits: each canvas gets 1..--max-objects digits pasted at random
sizes and places (no two boxes overlap), over faint uniform noise; every digit's box is the tight
box of its ink. Writes OUT/<split>/NNNNNN.png (grey) and OUT/<split>.json in COCO format (file
names relative to OUT, categories "0".."9" with ids 1..10). Deterministic for a seed.

  make_digits.py --images IDX --labels IDX --out DIR --split NAME --count N [--canvas 64]
                 [--min-size 12] [--max-size 32] [--max-objects 3] [--seed 1]
"""
import argparse
import json
import os
import random
import struct
import zlib


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise SystemExit("%s: not an unsigned-byte IDX file" % path)
    ndims = data[3]
    dims = struct.unpack(">%dI" % ndims, data[4:4 + 4 * ndims])
    return list(dims), data[4 + 4 * ndims:]


def write_png(path, width, height, pixels):  # 8-bit grey, row-major
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, path)


def ink_box(digit, side):
    ys = [i // side for i, v in enumerate(digit) if v > 0]
    xs = [i % side for i, v in enumerate(digit) if v > 0]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def main():
    p = argparse.ArgumentParser()
    for name in ("--images", "--labels", "--out", "--split"):
        p.add_argument(name, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--canvas", type=int, default=64)
    p.add_argument("--min-size", type=int, default=12)
    p.add_argument("--max-size", type=int, default=32)
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    dims, pixels = read_idx(a.images)
    _, labels = read_idx(a.labels)
    n, side = dims[0], dims[1]
    rng = random.Random("%d:%s" % (a.seed, a.split))
    S = a.canvas
    os.makedirs(os.path.join(a.out, a.split), exist_ok=True)
    images, annotations = [], []
    for i in range(a.count):
        canvas = [rng.randrange(40) for _ in range(S * S)]
        boxes = []
        for _ in range(rng.randint(1, a.max_objects)):
            k = rng.randrange(n)
            digit = pixels[k * side * side:(k + 1) * side * side]
            x0, y0, x1, y1 = ink_box(digit, side)
            target = rng.randint(a.min_size, a.max_size)
            scale = target / max(x1 - x0, y1 - y0)
            w, h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            for _try in range(20):
                x, y = rng.randint(0, S - w), rng.randint(0, S - h)
                if all(x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y for bx, by, bw, bh, _ in boxes):
                    break
            else:
                continue
            for dy in range(h):  # nearest-neighbour resampling of the ink box
                sy = y0 + min(y1 - y0 - 1, int(dy / scale))
                for dx in range(w):
                    sx = x0 + min(x1 - x0 - 1, int(dx / scale))
                    c = (y + dy) * S + x + dx
                    canvas[c] = max(canvas[c], digit[sy * side + sx])
            boxes.append((x, y, w, h, labels[k]))
        name = "%s/%06d.png" % (a.split, i + 1)
        write_png(os.path.join(a.out, name), S, S, canvas)
        images.append({"id": i + 1, "file_name": name, "width": S, "height": S})
        for x, y, w, h, label in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(10)]}
    tmp = os.path.join(a.out, a.split + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(coco, f)
    os.replace(tmp, os.path.join(a.out, a.split + ".json"))
    print("%s: %d images, %d digits" % (a.split, len(images), len(annotations)))


if __name__ == "__main__":
    main()
