#!/usr/bin/env python3
"""Check that a screenshot (PNG) shows a rendered page, not a blank one.

Decodes the PNG with the standard library only (zlib; 8-bit greyscale, RGB
or RGBA, not interlaced: what Chromium writes) and counts
  - ink: pixels that are not (near) white: text, rules and pictures, and
  - colour: strongly coloured pixels (max - min channel > 80): only the
    plots and the graph's fills have them, black text and grey rules do not.
A blank or failed page has almost no ink; a page whose images did not load
has ink but hardly any colour.

usage: png_check.py SHOT.png [MIN_INK_FRACTION] [MIN_COLOUR_FRACTION]
Prints the counts; exits 1 if either fraction is below its minimum.
"""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {ctype})")
    raw = zlib.decompress(b"".join(idat))
    stride, bpp = w * channels, channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # undo the row filter (PNG spec, section 9)
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, channels, rows


def main():
    path = sys.argv[1]
    min_ink = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
    min_colour = float(sys.argv[3]) if len(sys.argv) > 3 else 0.005
    w, h, ch, rows = decode(path)
    ink = colour = 0
    for line in rows:
        for x in range(0, w * ch, ch):
            px = line[x:x + 3] if ch >= 3 else line[x:x + 1] * 3
            lo, hi = min(px), max(px)
            if lo < 235:
                ink += 1
            if hi - lo > 80:
                colour += 1
    n = w * h
    print(f"{path}: {w}x{h}, ink {ink / n:.3f} of the pixels (min {min_ink}), "
          f"colour {colour / n:.3f} (min {min_colour})")
    sys.exit(0 if ink >= min_ink * n and colour >= min_colour * n else 1)


if __name__ == "__main__":
    main()
