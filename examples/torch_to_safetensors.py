#!/usr/bin/python3
"""Convert a PyTorch checkpoint (torch.save) into a safetensors file for chainrule.

    /usr/bin/python3 examples/torch_to_safetensors.py model.pt model.safetensors [options]

PyTorch users have .pt files; chainrule reads safetensors (chainrule/io.h).
The input is what torch.save wrote: a state_dict (name -> tensor), a
checkpoint dict holding one (pick it with --key), or, with --allow-pickle,
a whole pickled nn.Module.  Tensors keep their state_dict names, which for
nn.RNN / nn.LSTM / nn.GRU are already chainrule's (weight_ih_l0,
weight_hh_l0, bias_ih_l0, bias_hh_l0, ...), so the file loads with
cr_rnn_load; --prefix keeps only the tensors under a prefix and strips it
(a model's "rnn.weight_ih_l0" becomes "weight_ih_l0"), --rename changes a
prefix.  (cr_rnn_load also takes a prefix, so keeping "rnn." and passing
"rnn." there works too.)

chainrule stores F32 and F64.  float32 and float64 tensors are written as
they are; float16 and bfloat16 only with --dtype f32 or f64 (a lossless
widening); integer, bool and complex tensors are refused with a message
naming them (drop them with --exclude or --prefix).  --dtype converts every
tensor.  The output is written atomically (a temporary file, then rename)
and is byte-for-byte the same for the same input and options.

Options:
  --key K          take the state_dict at checkpoint[K] (K may be a.b for
                   nested dicts), e.g. --key model or --key state_dict
  --prefix P       keep only tensors whose name starts with P; strip P
  --rename OLD=NEW replace the name prefix OLD by NEW (repeatable; after --prefix)
  --exclude REGEX  drop tensors whose (original) name matches REGEX (repeatable)
  --dtype keep|f32|f64   (default keep)
  --allow-pickle   load with full unpickling (whole modules; ONLY for files
                   you trust: unpickling can run arbitrary code)
  --list           print what would be written, write nothing

Needs PyTorch (Debian: apt install python3-torch, then use /usr/bin/python3).
Exit status 0 on success, 1 on an error (the message says what to do), 2 for
bad usage.
"""
import argparse
import json
import os
import re
import struct
import sys
import tempfile

try:
    import torch
except ImportError:
    sys.exit("torch_to_safetensors: PyTorch is not importable from %s; on Debian install "
             "python3-torch and run this with /usr/bin/python3" % sys.executable)

PROG = "torch_to_safetensors"

# torch dtype -> (safetensors dtype, numpy little-endian type) for what chainrule stores
STORED = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8")}
TARGET = {"f32": torch.float32, "f64": torch.float64}
WIDENABLE = (torch.float16, torch.bfloat16)


class ConvertError(Exception):
    pass


def load_checkpoint(path, allow_pickle):
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise ConvertError("%s: no such file" % path)
    except Exception as e:  # weights_only refuses anything but tensors and containers
        if allow_pickle:
            raise ConvertError("%s: torch.load failed: %s" % (path, e))
        raise ConvertError(
            "%s: not a plain state_dict or checkpoint dict (%s: %s).  If it is a whole "
            "pickled model and you trust the file, rerun with --allow-pickle (unpickling can "
            "run arbitrary code; the model's classes must be importable)"
            % (path, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))


def find_state_dict(obj, key, path):
    """The name -> tensor mapping inside what torch.load returned."""
    if key:
        for part in key.split("."):
            if isinstance(obj, torch.nn.Module):
                obj = obj.state_dict()
            if not isinstance(obj, dict) or part not in obj:
                have = ", ".join(repr(k) for k in obj) if isinstance(obj, dict) else type(obj).__name__
                raise ConvertError("%s: no key %r in the checkpoint (it has: %s)" % (path, part, have))
            obj = obj[part]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        raise ConvertError("%s: holds a single tensor, not a state_dict; save a dict "
                           "{name: tensor} instead" % path)
    if not isinstance(obj, dict):
        raise ConvertError("%s: holds a %s, not a state_dict" % (path, type(obj).__name__))
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        dicts = [k for k in others if isinstance(obj[k], (dict, torch.nn.Module))]
        hint = (" -- a checkpoint dict? pick the state_dict with --key %s" % dicts[0]) if dicts else ""
        raise ConvertError("%s: entries that are not tensors: %s%s"
                           % (path, ", ".join(repr(k) for k in others[:8]), hint))
    return obj


def select(sd, prefix, renames, excludes):
    """[(new name, original name, tensor)] in state_dict order."""
    out, seen = [], {}
    for name, t in sd.items():
        if not isinstance(name, str):
            raise ConvertError("tensor key %r is not a string" % (name,))
        if any(re.search(rx, name) for rx in excludes):
            continue
        new = name
        if prefix:
            if not new.startswith(prefix):
                continue
            new = new[len(prefix):]
        for old, repl in renames:
            if new.startswith(old):
                new = repl + new[len(old):]
                break
        if not new or new == "__metadata__":
            raise ConvertError("tensor %r would be named %r, which safetensors does not allow"
                               % (name, new))
        if new in seen:
            raise ConvertError("tensors %r and %r would both be named %r" % (seen[new], name, new))
        seen[new] = name
        out.append((new, name, t))
    if not out:
        raise ConvertError("no tensors left to write (check --prefix / --exclude; the names are: %s)"
                           % ", ".join(list(sd)[:12]))
    return out


def convert(t, name, want):
    """t as a contiguous CPU tensor of a dtype chainrule stores."""
    t = t.detach().to("cpu")
    if t.is_sparse or t.layout != torch.strided:
        raise ConvertError("tensor %r is sparse; chainrule stores dense tensors" % name)
    if want is not None:
        if not (t.dtype.is_floating_point):
            raise ConvertError("tensor %r has dtype %s, which is not floating point; converting "
                               "it to %s would be meaningless: drop it with --exclude '^%s$'"
                               % (name, t.dtype, want, re.escape(name)))
        t = t.to(TARGET[want])
    elif t.dtype not in STORED:
        if t.dtype in WIDENABLE:
            raise ConvertError("tensor %r has dtype %s; chainrule stores F32 and F64: rerun with "
                               "--dtype f32 (or f64) to widen it exactly" % (name, t.dtype))
        raise ConvertError("tensor %r has dtype %s; chainrule stores only F32 and F64 (float32, "
                           "float64): drop it with --exclude '^%s$' or --prefix"
                           % (name, t.dtype, re.escape(name)))
    return t.contiguous()


def safetensors_bytes(items, metadata):
    """The file's bytes: header length, JSON header (space padded to a multiple
    of 8, as chainrule writes it), then the data in order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, t in items:
        st_dtype, np_type = STORED[t.dtype]
        b = t.numpy().astype(np_type, copy=False).tobytes()
        header[name] = {"dtype": st_dtype, "shape": [int(s) for s in t.shape],
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return b"".join([struct.pack("<Q", len(h)), h] + blobs)


def write_atomic(path, data):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="float32/float64 are kept, float16/bfloat16 need --dtype, other dtypes "
                                "are refused.  Names are kept: nn.RNN/LSTM/GRU's are chainrule's.  "
                                "See README.md, 'Using the library'.")
    p.add_argument("input", help="a file written by torch.save")
    p.add_argument("output", nargs="?", help="the .safetensors file to write")
    p.add_argument("--key", help="take the state_dict at checkpoint[KEY] (a.b for nested dicts)")
    p.add_argument("--prefix", default="", help="keep only tensors whose name starts with PREFIX, "
                   "and strip it (e.g. rnn.)")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="replace the name prefix OLD by NEW (repeatable; applied after --prefix)")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                   help="drop tensors whose original name matches REGEX (repeatable)")
    p.add_argument("--dtype", choices=["keep", "f32", "f64"], default="keep",
                   help="convert every tensor (default: keep float32/float64; needed for float16)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="full unpickling, for whole pickled modules: ONLY for files you trust")
    p.add_argument("--list", action="store_true", help="print what would be written, write nothing")
    a = p.parse_args(argv)
    if not a.list and not a.output:
        p.error("an output file is needed (or --list)")
    renames = []
    for r in a.rename:
        if "=" not in r:
            p.error("--rename takes OLD=NEW, got %r" % r)
        renames.append(tuple(r.split("=", 1)))
    a.rename = renames
    for rx in a.exclude:
        try:
            re.compile(rx)
        except re.error as e:
            p.error("--exclude %r: %s" % (rx, e))
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sd = find_state_dict(load_checkpoint(a.input, a.allow_pickle), a.key, a.input)
        want = None if a.dtype == "keep" else a.dtype
        items = [(new, convert(t, orig, want)) for new, orig, t in
                 select(sd, a.prefix, a.rename, a.exclude)]
    except ConvertError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    for name, t in items:
        if 0 in t.shape:
            print("%s: warning: tensor %r has a size-0 dimension %s; chainrule cannot load it"
                  % (PROG, name, list(t.shape)), file=sys.stderr)
    if a.list:
        for name, t in items:
            print("%-32s %s %s" % (name, STORED[t.dtype][0], list(t.shape)))
        return 0
    data = safetensors_bytes(items, {"converted_from": os.path.basename(a.input),
                                     "converter": PROG})
    try:
        write_atomic(a.output, data)
    except OSError as e:
        print("%s: %s: %s" % (PROG, a.output, e.strerror or e), file=sys.stderr)
        return 1
    n = sum(t.numel() for _, t in items)
    print("%s: wrote %d tensors (%d values, %s) to %s"
          % (PROG, len(items), n, "/".join(sorted({STORED[t.dtype][0] for _, t in items})), a.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
