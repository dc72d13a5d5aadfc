#!/usr/bin/env python3
"""Writes the classification fixture: MNIST subsets at 14x14 (2x2 area averages, rounded) as IDX
files: train (the first 400 of data/classification/mnist/train), valid (the first 100 of valid)
and test (the first 100 of t10k). Run data/classification/prepare.sh first."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "..", "data", "classification", "mnist")


def read(name):
    with open(os.path.join(SRC, name), "rb") as f:
        data = f.read()
    ndims = data[3]
    return list(struct.unpack(">%dI" % ndims, data[4:4 + 4 * ndims])), data[4 + 4 * ndims:]


def write(name, dims, values):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(">%dI" % len(dims), *dims) + bytes(values))


def halve(image):  # 28x28 bytes -> 14x14
    return [round(sum(image[(2 * y + dy) * 28 + 2 * x + dx] for dy in (0, 1) for dx in (0, 1)) / 4)
            for y in range(14) for x in range(14)]


for split, source, n in (("train", "train", 400), ("valid", "valid", 100), ("test", "t10k", 100)):
    _, images = read(source + "-images-idx3-ubyte")
    _, labels = read(source + "-labels-idx1-ubyte")
    small = []
    for i in range(n):
        small += halve(images[i * 784:(i + 1) * 784])
    write(split + "-images-idx3-ubyte", [n, 14, 14], small)
    write(split + "-labels-idx1-ubyte", [n], labels[:n])
