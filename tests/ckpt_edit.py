#!/usr/bin/env python3
"""ckpt_edit.py — write a copy of a safetensors file with its metadata or
tensors changed, to make the bad checkpoints the char-lm tests feed it.

  ckpt_edit.py IN OUT [KEY=VALUE | over:KEY=TEXT | -KEY | nan:TENSOR |
                       shape:TENSOR=D0,D1,..]...

KEY=VALUE sets a metadata entry, over:KEY=TEXT overwrites the start of its
value with TEXT (keeping its length), -KEY deletes one, nan:TENSOR makes the
tensor's first element NaN, shape:TENSOR=... gives it another shape (its
data cut or zero-padded to fit).  Plain struct + json: no numpy needed."""
import json
import struct
import sys

SIZE = {"F32": 4, "F64": 8}


def main():
    src, dst, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
    raw = open(src, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        tensors[name] = [e["dtype"], e["shape"], bytearray(data[b:end])]
    for ed in edits:
        if ed.startswith("nan:"):
            dt, _, buf = tensors[ed[4:]]
            buf[0:SIZE[dt]] = struct.pack("<f" if dt == "F32" else "<d", float("nan"))
        elif ed.startswith("shape:"):
            name, dims = ed[6:].split("=")
            t = tensors[name]
            t[1] = [int(d) for d in dims.split(",")]
            want = SIZE[t[0]]
            for d in t[1]:
                want *= d
            t[2] = (t[2] + bytearray(max(0, want - len(t[2]))))[:want]
        elif ed.startswith("over:"):
            k, v = ed[5:].split("=", 1)
            meta[k] = v + meta[k][len(v):]
        elif ed.startswith("-"):
            meta.pop(ed[1:], None)
        else:
            k, v = ed.split("=", 1)
            meta[k] = v
    out, body = {"__metadata__": meta} if meta else {}, bytearray()
    for name, (dt, shape, buf) in tensors.items():
        out[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(body), len(body) + len(buf)]}
        body += buf
    js = json.dumps(out, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + body)


if __name__ == "__main__":
    main()
