#!/usr/bin/env python3
"""ckpt_compare.py — how far apart the tensors of two safetensors files are.

  ckpt_compare.py A B [--prefix P]... [--tol X]

For every tensor of A whose name starts with one of the prefixes (default:
the char-lm model, "embed." "rnn." "head."), its relative difference from
B's tensor of that name, max|a - b| / max|b| (0 when both are zero), and
the largest over the tensors.  Prints "max relative difference D (tensor
NAME)" and, with --tol, exits 1 when D > X (or a tensor is missing or of
another shape or dtype).  Plain struct + json: no numpy needed."""
import json
import struct
import sys

FMT = {"F32": "f", "F64": "d"}


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        f = FMT[e["dtype"]]
        count = (end - b) // struct.calcsize(f)
        out[name] = (e["dtype"], e["shape"], struct.unpack("<%d%s" % (count, f), data[b:end]))
    return out


def main():
    args = sys.argv[1:]
    prefixes, tol, files = [], None, []
    i = 0
    while i < len(args):
        if args[i] == "--prefix":
            prefixes.append(args[i + 1])
            i += 2
        elif args[i] == "--tol":
            tol = float(args[i + 1])
            i += 2
        else:
            files.append(args[i])
            i += 1
    if len(files) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    prefixes = prefixes or ["embed.", "rnn.", "head."]
    a, b = read(files[0]), read(files[1])
    worst, worst_name, bad = 0.0, "", False
    names = [n for n in sorted(a) if any(n.startswith(p) for p in prefixes)]
    for name in names:
        if name not in b or a[name][:2] != b[name][:2]:
            print("tensor %s: missing or of another dtype/shape in %s" % (name, files[1]))
            bad = True
            continue
        x, y = a[name][2], b[name][2]
        scale = max(abs(v) for v in y)
        diff = max(abs(p - q) for p, q in zip(x, y))
        rel = diff / scale if scale > 0 else diff
        if rel > worst or not worst_name:
            worst, worst_name = rel, name
    print("max relative difference %.3g (tensor %s) over %d tensors" % (worst, worst_name, len(names)))
    if not names:
        bad = True
    sys.exit(1 if bad or (tol is not None and not worst <= tol) else 0)


if __name__ == "__main__":
    main()
