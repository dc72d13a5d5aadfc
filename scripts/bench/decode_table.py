#!/usr/bin/env python3
"""Reads decoding benchmark lines (JSON: xformer_bench decode and translation_decode_ref.py)
from stdin and prints sentences/s per line, with xformer's ratio to PyTorch for each mode."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
reference = {(r["mode"], r["beam"]): r["sentences_per_s"] for r in rows if r["impl"] == "pytorch"}
for r in rows:
    what = "%-6s beam %d" % (r["mode"], r["beam"])
    if r["impl"] == "pytorch":
        print("  pytorch %s cache on : %7.1f sentences/s" % (what, r["sentences_per_s"]))
        continue
    ref = reference.get((r["mode"], r["beam"]))
    ratio = " (%.2fx pytorch)" % (r["sentences_per_s"] / ref) if ref and r["cache"] else ""
    print("  xformer %s cache %-3s: %7.1f sentences/s%s" % (what, "on" if r["cache"] else "off",
                                                          r["sentences_per_s"], ratio))
