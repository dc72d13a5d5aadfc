#!/usr/bin/env python3
"""Writes the small MIDI fixtures of the music tests (tests/data/music/{train,valid,test}).

Deterministic pieces made here, no external data: scales, arpeggios and chord progressions in
several keys, tempi and velocities, as format 1 files (a tempo track and a notes track using
running status and the sustain pedal). Run it again to regenerate; the output is identical.
Licence: the same as the project's code.
"""
import os
import random
import struct


def vlq(v):
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def chunk(tag, body):
    return tag + struct.pack(">I", len(body)) + body


def piece(rng, key):
    """Returns (tick, status, a, b) events at 480 ticks per quarter."""
    major = [0, 2, 4, 5, 7, 9, 11, 12]
    events, t = [], 0
    # A scale up and down in eighths.
    for d in major + major[::-1]:
        vel = rng.randint(60, 100)
        events += [(t, 0x90, key + d, vel), (t + 220, 0x90, key + d, 0)]
        t += 240
    # Arpeggios over I-IV-V-I with the pedal down for each chord.
    for root in (0, 5, 7, 0):
        events.append((t, 0xB0, 64, 127))
        for d in (0, 4, 7, 12):
            events += [(t, 0x90, key + root + d, rng.randint(50, 90)), (t + 120, 0x80, key + root + d, 64)]
            t += 120
        events.append((t, 0xB0, 64, 0))
    # Block chords with a held bass.
    for root in (0, 9, 5, 7):
        notes = [key - 12 + root, key + root, key + root + 4, key + root + 7]
        for n in notes:
            events.append((t, 0x90, n, rng.randint(40, 110)))
        for n in notes:
            events.append((t + 470, 0x90, n, 0))
        t += 480
    return sorted(events)


def midi_file(events, tempo_us):
    tempo = b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big") + b"\x00\xff\x2f\x00"
    body, now, running = b"", 0, None
    for tick, status, a, b in events:
        body += vlq(tick - now)
        now = tick
        if status != running:
            body += bytes([status])
            running = status
        body += bytes([a, b])
    body += b"\x00\xff\x2f\x00"
    return chunk(b"MThd", struct.pack(">HHH", 1, 2, 480)) + chunk(b"MTrk", tempo) + chunk(b"MTrk", body)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(1)
    splits = {"train": 12, "valid": 3, "test": 3}
    for split, count in splits.items():
        os.makedirs(os.path.join(here, split), exist_ok=True)
        for i in range(count):
            key = rng.choice([48, 50, 53, 55, 57, 60, 62, 65])
            tempo = rng.choice([400000, 500000, 600000])
            with open(os.path.join(here, split, "piece_%02d.mid" % (i + 1)), "wb") as f:
                f.write(midi_file(piece(rng, key), tempo))
    print("wrote", sum(splits.values()), "files under", here)


if __name__ == "__main__":
    main()
