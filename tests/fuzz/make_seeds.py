#!/usr/bin/env python3
"""make_seeds.py — write the small seed files of the fuzz corpora that do
not come from char-lm runs (see make_seeds.sh): for rnn_load, one valid
file per layer-stack configuration its first byte selects; for the
safetensors reader, files at the edges of the format.

  make_seeds.py CORPUS_DIR   (writes CORPUS_DIR/rnn_load/, CORPUS_DIR/safetensors/)"""
import json
import os
import struct
import sys


def safetensors(tensors, meta=None):
    """tensors: [(name, dtype, shape, values)] -> bytes"""
    header, body = {}, bytearray()
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, values in tensors:
        fmt = "<%d%s" % (len(values), "f" if dt == "F32" else "d")
        buf = struct.pack(fmt, *values)
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(body), len(body) + len(buf)]}
        body += buf
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + bytes(body)


def values(n, k):
    return [((i * 7 + k) % 11 - 5) / 10.0 for i in range(n)]


def main():
    root = sys.argv[1]
    os.makedirs(root + "/rnn_load", exist_ok=True)
    os.makedirs(root + "/safetensors", exist_ok=True)
    gates = [1, 1, 4, 3]  # rnn_tanh, rnn_relu, lstm, gru (fuzz_rnn_load.c's byte 0)
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    for sel in [0, 1, 2, 3, 4 | 2, 8 | 3, 16 | 2, 4 | 8 | 16]:
        g, layers = gates[sel & 3], 2 if sel & 4 else 1
        dt = "F64" if sel & 8 else "F32"
        prefix = "" if sel & 16 else "rnn."
        ts = []
        for l in range(layers):
            shapes = [[4 * g, 3 if l == 0 else 4], [4 * g, 4], [4 * g], [4 * g]]
            for n, s in zip(names, shapes):
                count = s[0] * (s[1] if len(s) > 1 else 1)
                ts.append(("%s%s_l%d" % (prefix, n, l), dt, s, values(count, l)))
        with open("%s/rnn_load/sel%02d.bin" % (root, sel), "wb") as f:
            f.write(bytes([sel]) + safetensors(ts))
    edges = {
        "empty_header.safetensors": safetensors([]),
        "meta_only.safetensors": safetensors([], {"a": "1", "b": "x\u00e9"}),
        "scalar.safetensors": safetensors([("s", "F64", [], [2.5])]),
        "zero_dim.safetensors": safetensors([("z", "F32", [0, 3], [])]),
        "mixed.safetensors": safetensors([("a", "F32", [2, 3], values(6, 1)),
                                          ("b", "F64", [4], values(4, 2)),
                                          ("c", "F32", [1, 1, 2], [float("nan"), float("inf")])],
                                         {"step": "3"}),
    }
    for name, b in edges.items():
        with open("%s/safetensors/%s" % (root, name), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main()
