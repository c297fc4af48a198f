#!/usr/bin/env bash
# examples/torch_to_safetensors.py end to end: PyTorch saves recurrent models
# with torch.save (a model's state_dict, a checkpoint dict, a whole pickled
# module, float32, float64 and float16), the converter turns them into
# safetensors, and a C program loads each with cr_st_open + cr_rnn_load and
# checks its forward pass against PyTorch's outputs for the same input
# (written separately with tests/fixtures/st_write.py, not by the converter).
# The converter's refusals (int tensors, float16 without --dtype, pickled
# modules without --allow-pickle, a missing --key) are checked by message.
# Skipped (exit 77) where PyTorch is not importable, as in CI.
#   usage: test_torch_convert.sh PYTHON CONVERTER CHECK_PROGRAM ST_WRITE_DIR
set -u
PY="$1" CONV=$(realpath "$2") CHECK=$(realpath "$3") STW=$(realpath "$4")

# The test (run in a subshell with errexit, from the end of the file).
main() {
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d"

# ---- PyTorch: models, their checkpoints, and reference outputs
PYTHONPATH="$STW" "$PY" - <<'EOF'
import torch
from st_write import write_safetensors

torch.manual_seed(0)

class Net(torch.nn.Module):
    """A model as users have them: an LSTM under "rnn.", a head, an int buffer."""
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 5, num_layers=2)
        self.head = torch.nn.Linear(5, 2)
        self.register_buffer("steps", torch.tensor(7))

def reference(path, rnn, cell, x):
    with torch.no_grad():
        out, state = rnn(x)
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    tensors = [("x", x), ("output", out), ("h_n", h_n)] + ([("c_n", c_n)] if c_n is not None else [])
    write_safetensors(path, tensors, {
        "cell": cell, "input_size": str(rnn.input_size), "hidden_size": str(rnn.hidden_size),
        "num_layers": str(rnn.num_layers), "batch_first": "1" if rnn.batch_first else "0"})

net = Net()
x = torch.randn(7, 4, 3)                           # [T, B, I]
torch.save(net.state_dict(), "net.pt")             # rnn.weight_ih_l0, ..., head.*, steps
reference("ref_lstm.safetensors", net.rnn, "lstm", x)

torch.save({"model": net.state_dict(), "epoch": 3}, "ckpt.pt")   # a checkpoint dict
torch.save(net.rnn, "module.pt")                                 # a whole pickled module

net64 = Net().double()                             # float64 weights and input
torch.save(net64.state_dict(), "net64.pt")
reference("ref_lstm64.safetensors", net64.rnn, "lstm", x.double())

gru = torch.nn.GRU(4, 6, num_layers=1, batch_first=True)
torch.save(gru.state_dict(), "gru.pt")
reference("ref_gru.safetensors", gru, "gru", torch.randn(3, 5, 4))   # [B, T, I]

half = torch.nn.RNN(3, 4).half()                   # float16 weights
torch.save(half.state_dict(), "half.pt")
half.float()                                       # the exact widening the converter makes
reference("ref_half.safetensors", half, "rnn_tanh", torch.randn(5, 2, 3))
EOF

# ---- the converter on each of them.  One Python process runs every
# conversion through the converter's own main() (its command line: argv in,
# exit status and messages out), so torch is imported once, not 17 times
# (~2 s each); a real command line runs once at the end.
CONV="$CONV" "$PY" - <<'EOF'
import contextlib, importlib.util, io, os, re, shlex, sys
spec = importlib.util.spec_from_file_location("conv", os.environ["CONV"])
conv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conv)
fails = 0

def run(args, refusal=None):
    """Convert; with refusal, expect exit status 1 and a message matching it."""
    global fails
    print("$ torch_to_safetensors.py " + args)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = conv.main(shlex.split(args))
    msg = err.getvalue().strip()
    if msg:
        print("  " + msg)
    good = rc == 0 if refusal is None else rc == 1 and re.search(refusal, msg) is not None
    print(("ok: " if good else "FAIL: ") + ("converted" if refusal is None else "refused as expected"))
    fails += not good

# a model's state_dict: the LSTM's tensors under "rnn.", stripped by --prefix
run("net.pt lstm.safetensors --prefix rnn.")
# a checkpoint dict, names kept (cr_rnn_load's own prefix finds them)
run("ckpt.pt ckpt.safetensors --key model --exclude '^steps$'")
run("net.pt renamed.safetensors --prefix rnn. --rename weight_=encoder.weight_ --rename bias_=encoder.bias_")
# a whole pickled module: only with --allow-pickle
run("module.pt module.safetensors", refusal=r"--allow-pickle")
run("module.pt module.safetensors --allow-pickle")
run("net64.pt lstm64.safetensors --prefix rnn.")
run("gru.pt gru.safetensors")
# float16: refused, then widened exactly with --dtype f32
run("half.pt half.safetensors", refusal=r"dtype torch\.float16.*--dtype f32")
run("half.pt half.safetensors --dtype f32")
# what chainrule cannot store, and selections that find nothing
run("net.pt all.safetensors", refusal=r"'steps' has dtype torch\.int64.*--exclude")
run("net.pt all.safetensors --dtype f64", refusal=r"'steps' has dtype torch\.int64.*not floating point")
run("ckpt.pt x.safetensors", refusal=r"not tensors: 'model', 'epoch'.*--key model")
run("ckpt.pt x.safetensors --key state_dict", refusal=r"no key 'state_dict'.*'model', 'epoch'")
run("net.pt x.safetensors --prefix encoder.", refusal=r"no tensors left")
run("missing.pt x.safetensors", refusal=r"missing\.pt: no such file")
for f in ("all.safetensors", "x.safetensors"):
    if os.path.exists(f):
        print("FAIL: %s written although the conversion was refused" % f)
        fails += 1
run("net.pt again.safetensors --prefix rnn.")
with open("converter_failures", "w") as f:
    f.write(str(fails))
EOF

fails=$(cat converter_failures)
run() { echo "\$ $*"; "$@"; }
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

# ---- chainrule loads each file and reproduces PyTorch's outputs
run "$CHECK" lstm.safetensors ref_lstm.safetensors "" f32 1e-5 && ok "LSTM f32, --prefix rnn." || bad "LSTM f32"
# the same file read into a float64 model (values widened on load)
run "$CHECK" lstm.safetensors ref_lstm.safetensors "" f64 1e-6 && ok "LSTM f32 file read as f64" || bad "LSTM f32 as f64"
run "$CHECK" ckpt.safetensors ref_lstm.safetensors "rnn." f32 1e-5 &&
  ok "checkpoint dict (--key model), loaded with prefix rnn." || bad "checkpoint dict"
run "$CHECK" renamed.safetensors ref_lstm.safetensors "encoder." f32 1e-5 && ok "--rename" || bad "--rename"
run "$CHECK" module.safetensors ref_lstm.safetensors "" f32 1e-5 && ok "whole module, --allow-pickle" || bad "whole module"
grep -q '"dtype":"F64"' lstm64.safetensors && ! grep -q '"dtype":"F32"' lstm64.safetensors &&
  ok "float64 tensors written as F64" || bad "float64 tensors not F64"
run "$CHECK" lstm64.safetensors ref_lstm64.safetensors "" f64 1e-12 && ok "LSTM f64" || bad "LSTM f64"
run "$CHECK" gru.safetensors ref_gru.safetensors "" f32 1e-5 && ok "GRU, batch first" || bad "GRU"
run "$CHECK" half.safetensors ref_half.safetensors "" f32 1e-5 && ok "float16 widened with --dtype f32" || bad "float16"
cmp lstm.safetensors again.safetensors && ok "same input and options, same bytes" || bad "output differs between runs"

# ---- and once as a real command line: --list prints and writes nothing
echo "\$ $PY $CONV net.pt --list --exclude '^steps\$'"
"$PY" "$CONV" net.pt --list --exclude '^steps$' >list.txt
cat list.txt
grep -qE '^rnn.weight_hh_l1 +F32 \[20, 5\]$' list.txt && ok "command line, --list" || bad "--list"

echo "$fails failure(s)"
[ "$fails" = 0 ]
}

# The script's status is that of its last command, main's or the skip's:
# main runs in a subshell with errexit, and this shell never calls `exit`
# (bash leaks under valgrind, which CI runs the suite under, when it exits
# from inside a compound command).
if "$PY" -c 'import torch' 2>/dev/null; then
  (set -e; main)
else
  echo "skipped: $PY cannot import torch (Debian: apt install python3-torch)"
  (exit 77)
fi
