"""bench_torch.py -- the PyTorch twin of bench-rnn (tests/bench/bench_rnn.c).

The same training step of a character model, in float32:
    ids [T,B] (random, vocab V = 65, seeded) -> nn.Embedding(V, E), E = H
    -> one recurrent layer -> nn.Linear(H, V) -> F.cross_entropy
    -> backward -> SGD step (lr 0.1, no momentum)
in two variants:
    fused  nn.RNN(tanh) / nn.LSTM / nn.GRU over the whole sequence
    loop   nn.RNNCell / nn.LSTMCell / nn.GRUCell unrolled in Python over
           x.unbind(0) (indexing x[t] instead makes PyTorch's backward
           zero-fill a whole [T,B,E] gradient per step: 13x slower for
           rnn_tanh small)
for the configs tiny (H 32, batch 1, seq 32), small (H 128, batch 32,
seq 64) and medium (H 512, batch 32, seq 64), with torch.set_num_threads(1)
and (2).  Each row is warmed up, then timed over enough steps for about
1.5 s (time.perf_counter).

Columns are those of bench-rnn: ms/step is the median step time (robust
to other processes on a shared machine; "mean ms" is the mean); tokens/s
counts T*B tokens per step;
GFLOP/s counts 3x the forward matrix-product FLOPs of a step,
    3 * (2*T*B*E*G*H + 2*T*B*H*G*H + 2*T*B*H*V),  G = 1 rnn, 4 lstm, 3 gru;
the peak RSS (getrusage) is printed at the end.

Run it with Debian's python3-torch (the python3 on PATH cannot import
torch), with the OpenBLAS tuning variables of this machine's environment
removed for this one command (they slow an OpenBLAS down here; leave them
set elsewhere):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tests/bench/bench_torch.py

Which BLAS PyTorch really uses: Debian's torch calls the generic
libblas.so.3, which the alternatives system may point at BLIS (on the
Debian 12 machines of this project: blis-openmp, and no OpenBLAS is
installed at all).  BLIS's own CPU detection does not know AMD family 0x1A
(Zen 5) and falls back to its slow "generic" kernels (1024^3 sgemm: about
30 GFLOP/s instead of about 120).  chainrule avoids that by choosing the
sub-configuration from CPUID (chainrule/runtime.h), so for a fair
comparison this script does the same before importing torch: unless
BLIS_ARCH_TYPE is already set, it sets it to skx (0) when the CPU has
AVX-512F/DQ/BW/VL, else zen3 (6) on AMD / haswell (3) with AVX2+FMA.  The
"runtime:" line names the BLAS library loaded and the setting used;
--blis-own-detection leaves BLIS's choice alone (to see the unfair number).

PyTorch's step time also varies from run to run (lstm small: 27 to 43 ms
on one machine) because glibc hands its large freed blocks back to the OS
and every step page-faults them in again (about 840 faults per step);
its best case, for a comparison that favours PyTorch, is

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tests/bench/bench_torch.py

Options: --quick (short timing, for smoke runs), --cells lstm,gru
(rnn_tanh, lstm, gru), --configs tiny,small (tiny, small, medium),
--threads 1,2, --steps N (a fixed number of timed steps), --variants
fused,loop, --blis-own-detection.
"""

import argparse
import math
import os
import resource
import statistics
import sys
import time


def cpu_flags():
    """(the CPU's feature flags, whether it is AMD) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return set(), False
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines()
                  if l.startswith("flags")), [])
    return set(flags), "AuthenticAMD" in text


def choose_blis_arch():
    """BLIS_ARCH_TYPE as chainrule's runtime picks it; returns a description."""
    if os.environ.get("BLIS_ARCH_TYPE"):
        return f"BLIS_ARCH_TYPE={os.environ['BLIS_ARCH_TYPE']} from the environment"
    if "--blis-own-detection" in sys.argv:
        return "BLIS_ARCH_TYPE unset (BLIS's own detection)"
    flags, amd = cpu_flags()
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl", "fma"} <= flags:
        arch, name = "0", "skx"
    elif {"avx2", "fma"} <= flags:
        arch, name = ("6", "zen3") if amd else ("3", "haswell")
    else:
        return "BLIS_ARCH_TYPE unset (no AVX2/AVX-512 found)"
    os.environ["BLIS_ARCH_TYPE"] = arch  # read by BLIS at its first call
    return f"BLIS_ARCH_TYPE={arch} ({name}) set by this script, as chainrule does"


BLIS_ARCH = choose_blis_arch()

import torch  # noqa: E402  (after BLIS_ARCH_TYPE is set)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VOCAB = 65
CONFIGS = {  # name: (hidden, batch, seq)
    "tiny": (32, 1, 32),
    "small": (128, 32, 64),
    "medium": (512, 32, 64),
}
CELLS = ("rnn_tanh", "lstm", "gru")
GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3}


class CharModel(nn.Module):
    """embedding -> one recurrent layer -> linear head; logits [T*B, V]."""

    def __init__(self, cell, hidden, variant):
        super().__init__()
        self.cell_name, self.variant = cell, variant
        self.embed = nn.Embedding(VOCAB, hidden)
        if variant == "fused":
            self.rnn = {"rnn_tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](hidden, hidden)
        else:
            self.rnn = {"rnn_tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell](
                hidden, hidden)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, ids):
        x = self.embed(ids)  # [T,B,E]
        if self.variant == "fused":
            h, _ = self.rnn(x)  # [T,B,H]
        else:
            # unbind, not x[t]: each x[t]'s backward (SelectBackward) would
            # zero-fill and add a whole [T,B,E] gradient, O(T^2) traffic
            state = None
            outs = []
            for x_t in x.unbind(0):
                state = self.rnn(x_t, state)
                outs.append(state[0] if self.cell_name == "lstm" else state)
            h = torch.stack(outs)  # [T,B,H]
        return self.head(h.reshape(-1, h.shape[-1]))  # [T*B,V]


def forward_flops(hidden, batch, seq, gates):
    tb, h, e = seq * batch, hidden, hidden
    return 2 * tb * e * gates * h + 2 * tb * h * gates * h + 2 * tb * h * VOCAB


def run_row(args, cell, cfg, threads, variant):
    hidden, batch, seq = CONFIGS[cfg]
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    model = CharModel(cell, hidden, variant)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1234)
    stream = torch.randint(0, VOCAB, (seq + 1, batch), generator=gen)
    ids, targets = stream[:-1].contiguous(), stream[1:].reshape(-1).contiguous()

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(ids), targets)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2 if args.quick else 3):
        step()
    budget = 0.25 if args.quick else 1.5
    steps, loss, durations = 0, float("nan"), []
    start = last = time.perf_counter()
    while True:
        loss = step()
        t = time.perf_counter()
        durations.append(t - last)
        last = t
        steps += 1
        elapsed = t - start
        if (steps >= args.steps) if args.steps else (steps >= 3 and elapsed >= budget):
            break
    if not math.isfinite(loss):
        raise RuntimeError(f"{cell} {cfg}: loss is not finite")
    return steps, 1e3 * statistics.median(durations), 1e3 * elapsed / steps, loss


def parse_list(value, allowed, what):
    items = [v for v in value.split(",") if v]
    for v in items:
        if allowed is not None and v not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} '{v}' ({', '.join(allowed)})")
    if not items:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return items


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short timing, for smoke runs")
    p.add_argument("--cells", type=lambda v: parse_list(v, CELLS, "cell"), default=list(CELLS))
    p.add_argument("--configs", type=lambda v: parse_list(v, tuple(CONFIGS), "config"),
                   default=list(CONFIGS))
    p.add_argument("--threads", type=lambda v: [int(x) for x in parse_list(v, None, "thread")],
                   default=[1, 2])
    p.add_argument("--steps", type=int, default=0, help="fixed number of timed steps")
    p.add_argument("--variants", type=lambda v: parse_list(v, ("fused", "loop"), "variant"),
                   default=["fused", "loop"])
    p.add_argument("--blis-own-detection", action="store_true",
                   help="do not set BLIS_ARCH_TYPE (see the docstring)")
    args = p.parse_args()

    print("pytorch training step: embedding -> 1-layer cell -> linear -> cross_entropy -> "
          f"backward -> SGD(lr 0.1); f32, vocab {VOCAB}, E = H")
    torch.ones(8, 8) @ torch.ones(8, 8)  # load the BLAS
    with open("/proc/self/maps") as f:
        libs = sorted({os.path.realpath(l.split()[-1]) for l in f
                       if any(k in l for k in ("blas", "blis", "mkl_rt", "mkl_core"))})
    cpu = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    cpu = cpu() if cpu else os.environ.get("ATEN_CPU_CAPABILITY", "default CPU capability")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"runtime: torch {torch.__version__}, {cpu}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, "
          f"OPENBLAS_* tuning {env if env else 'unset'}")
    print(f"BLAS: {', '.join(libs) if libs else 'none found in /proc/self/maps'}; {BLIS_ARCH}")
    print("ms/step is the median step (tokens/s and GFLOP/s use it), mean ms the mean; GFLOP/s "
          "counts 3x the forward matmul FLOPs" + (" (--quick: short timing)" if args.quick else ""))
    print(f"load average before the run: {os.getloadavg()[0]:.2f} "
          "(a busy machine slows every row)\n")
    print(f"{'cell':<9} {'variant':<7} {'config':<7} {'H':>3} {'batch':>5} {'seq':>4} "
          f"{'thr':>4} {'steps':>6} {'tokens/s':>11} {'ms/step':>9} {'mean ms':>9} {'GFLOP/s':>8} "
          f"{'loss':>7}")
    for cell in args.cells:
        for cfg in args.configs:
            for threads in args.threads:
                for variant in args.variants:
                    hidden, batch, seq = CONFIGS[cfg]
                    steps, ms, mean, loss = run_row(args, cell, cfg, threads, variant)
                    gflops = 3 * forward_flops(hidden, batch, seq, GATES[cell]) / (ms * 1e6)
                    print(f"{cell:<9} {variant:<7} {cfg:<7} {hidden:>3} {batch:>5} {seq:>4} "
                          f"{threads:>4} {steps:>6} {seq * batch / (ms * 1e-3):>11.0f} "
                          f"{ms:>9.3f} {mean:>9.3f} {gflops:>8.2f} {loss:>7.4f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"\npeak RSS: {peak:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
