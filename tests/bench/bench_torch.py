"""bench_torch.py -- the PyTorch twins of bench-rnn and bench-layer, run at PyTorch's best.

Two kinds of rows, in float32 (the same cases, sizes and FLOP convention as
the C benchmarks, so the tables compare directly):

--mode char   the training step of bench-rnn (tests/bench/bench_rnn.c):
    ids [T,B] (random, vocab V = 65, seeded) -> nn.Embedding(V, E)
    -> one recurrent layer -> nn.Linear(H, V) -> F.cross_entropy
    -> backward -> SGD step (lr 0.1, no momentum)
  E = 64 by default (--embed N), or E = H with --embed-equals-hidden; configs
  tiny (H 32, batch 1, seq 32), small (128, 32, 64), medium (512, 32, 64);
  variants "fused" (nn.RNN(tanh) / nn.LSTM / nn.GRU over the sequence, the
  default and PyTorch's fastest) and "loop" (nn.*Cell unrolled in Python over
  x.unbind(0)).  GFLOP/s = 3 * (2*T*B*E*G*H + 2*T*B*H*G*H + 2*T*B*H*V).

--mode layer  the layer-level forward+backward of bench-layer
  (tests/bench/layer_common.h): nn.LSTM / nn.GRU / nn.RNN(tanh), 1 layer,
  x [T,B,I] requiring grad, zero initial state, y.backward(gy) from a fixed
  seed gy, grads set to None before each repetition (PyTorch's cheapest
  zeroing).  Sizes "tiny" or IxHxBxT (default: the rows of bench-layer).
  GFLOP/s = 3 * 2*T*B*G*H*(I+H).

Every row is warmed up, then timed over at least --min-steps repetitions
(default 10) and at least --min-time seconds (time.perf_counter around each
repetition); ms is the median repetition, mean and min are printed too.

PyTorch at its best (measured on this project's machines, see
/work/shared/PEERS.md and tests/bench/README.md).  Unless --as-is is given,
the script re-executes itself once with:
  * OpenBLAS as the BLAS: Debian's torch calls the generic libblas.so.3;
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 makes
    it OpenBLAS 0.3.21 (1.2-1.5x faster for PyTorch than BLIS here) whatever
    the alternatives link says.  --blas blis preloads BLIS instead (and sets
    BLIS_ARCH_TYPE from CPUID, as chainrule does); --blas system preloads
    nothing.
  * one thread really: OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = the largest
    --threads value, the process pinned to that many CPUs (sched_setaffinity,
    as taskset), and torch.set_num_threads per row -- torch.set_num_threads
    alone does not stop OpenBLAS's own pool from using the other core.
  * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (set in this environment,
    they slow OpenBLAS down), for this process only.
  * MALLOC_MMAP_THRESHOLD_=MALLOC_TRIM_THRESHOLD_=4294967296: glibc then
    keeps PyTorch's large freed blocks instead of returning them to the OS
    and page-faulting them in again every step (lstm small: 186 -> 25 faults
    per step); PyTorch's fastest setting on most rows.
The "runtime:" and "BLAS:" lines show what was really loaded
(/proc/self/maps, openblas_get_config) and the CPUs the process may use.

Run with Debian's python3-torch (the python3 on PATH cannot import torch):
    /usr/bin/python3 tests/bench/bench_torch.py [--mode char|layer] [--cells lstm,gru]
        [--configs tiny,small,medium] [--sizes tiny,64x512x32x64] [--threads 1]
        [--embed N | --embed-equals-hidden] [--variants fused,loop]
        [--min-steps N] [--min-time S] [--steps N] [--quick] [--machine]
        [--blas openblas|blis|system] [--cpus 0] [--as-is]
--serve reads one row per stdin line (the same options, e.g. "--mode layer
--cells lstm --sizes tiny") and answers with its RESULT lines and "DONE":
the comparison driver (compare.py) keeps one warm PyTorch process that way
instead of paying its start-up for every interleaved row.
"""

import argparse
import ctypes
import gc
import math
import os
import resource
import shlex
import statistics
import sys
import time

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
BLIS_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3",
                   "/usr/lib/x86_64-linux-gnu/blis-openmp/libblas.so.3",
                   "/usr/lib/x86_64-linux-gnu/blis-serial/libblas.so.3")
BIG = "4294967296"
REEXEC_MARK = "CR_BENCH_TORCH_BEST"

VOCAB = 65
CONFIGS = {  # name: (hidden, batch, seq)
    "tiny": (32, 1, 32),
    "small": (128, 32, 64),
    "medium": (512, 32, 64),
}
LAYER_SIZES = ("tiny", "64x128x32x64", "64x512x32x64", "512x512x32x64", "128x128x64x64",
               "64x1024x32x64")
CELLS = ("rnn_tanh", "lstm", "gru")
GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3}


def parse_list(value, allowed, what):
    items = [v for v in value.split(",") if v]
    for v in items:
        if allowed is not None and v not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} '{v}' ({', '.join(allowed)})")
    if not items:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return items


def parse_size(s):
    """'tiny' or 'IxHxBxT' -> (I, H, B, T)."""
    if s == "tiny":
        return (32, 32, 1, 32)
    parts = s.split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"bad size '{s}' (tiny or IxHxBxT)")
    return tuple(int(p) for p in parts)


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("char", "layer"), default="char")
    p.add_argument("--cells", type=lambda v: parse_list(v, CELLS, "cell"), default=None)
    p.add_argument("--configs", type=lambda v: parse_list(v, tuple(CONFIGS), "config"),
                   default=list(CONFIGS), help="char mode: tiny,small,medium")
    p.add_argument("--sizes", type=lambda v: parse_list(v, None, "size"),
                   default=list(LAYER_SIZES), help="layer mode: tiny or IxHxBxT, comma list")
    p.add_argument("--threads", type=lambda v: [int(x) for x in parse_list(v, None, "thread")],
                   default=[1])
    p.add_argument("--embed", type=int, default=64, help="char mode: embedding width E")
    p.add_argument("--embed-equals-hidden", action="store_true", help="char mode: E = H")
    p.add_argument("--variants", type=lambda v: parse_list(v, ("fused", "loop"), "variant"),
                   default=["fused"])
    p.add_argument("--min-steps", type=int, default=10, help="timed repetitions at least")
    p.add_argument("--min-time", type=float, default=None,
                   help="timed seconds at least (default 1.5 char, 0.5 layer)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up repetitions (3 char, 2 layer)")
    p.add_argument("--steps", type=int, default=0, help="exactly N timed repetitions")
    p.add_argument("--quick", action="store_true", help="short timing, for smoke runs")
    p.add_argument("--machine", action="store_true", help="RESULT lines for compare.py")
    p.add_argument("--serve", action="store_true", help="rows from stdin, one per line")
    p.add_argument("--blas", choices=("openblas", "blis", "system"), default="openblas")
    p.add_argument("--cpus", default=None,
                   help="CPUs to pin to, e.g. 0 or 0,1 (default: the first --threads of those "
                        "allowed)")
    p.add_argument("--as-is", action="store_true",
                   help="no re-exec: keep this environment, BLAS and affinity as they are")
    return p


# ---------------------------------------------------------------- environment

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


def blis_arch_type():
    """BLIS_ARCH_TYPE as chainrule's runtime picks it (skx 0, zen3 6, haswell 3)."""
    flags, amd = cpu_flags()
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl", "fma"} <= flags:
        return "0"
    if {"avx2", "fma"} <= flags:
        return "6" if amd else "3"
    return None


def reexec_at_best(args):
    """Re-execute this script once with PyTorch's best environment (docstring)."""
    if args.as_is or os.environ.get(REEXEC_MARK):
        return
    env = dict(os.environ)
    env[REEXEC_MARK] = "1"
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    nthreads = max(args.threads)
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(nthreads)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", BIG)
    env.setdefault("MALLOC_TRIM_THRESHOLD_", BIG)
    if args.blas == "openblas":
        if not os.path.exists(OPENBLAS):
            sys.exit(f"bench_torch: {OPENBLAS} not found: install libopenblas0-pthread "
                     "(or use --blas blis / --blas system)")
        env["LD_PRELOAD"] = OPENBLAS
    elif args.blas == "blis":
        lib = next((c for c in BLIS_CANDIDATES if os.path.exists(c)), None)
        if not lib:
            sys.exit("bench_torch: no BLIS libblas.so.3 found (libblis4-pthread)")
        env["LD_PRELOAD"] = lib
        arch = blis_arch_type()
        if arch is not None:
            env.setdefault("BLIS_ARCH_TYPE", arch)
    allowed = sorted(os.sched_getaffinity(0))
    cpus = ([int(c) for c in args.cpus.split(",")] if args.cpus else allowed[:nthreads])
    os.sched_setaffinity(0, cpus)  # inherited by the exec'd process, as taskset
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# ------------------------------------------------------------------- the rows

ARGS = make_parser().parse_args()
reexec_at_best(ARGS)

import torch  # noqa: E402  (after the environment is final)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def openblas_lib():
    """ctypes handle of the loaded OpenBLAS, or None."""
    for path in loaded_blas():
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


def loaded_blas():
    with open("/proc/self/maps") as f:
        return sorted({os.path.realpath(l.split()[-1]) for l in f
                       if any(k in l for k in ("blas", "blis", "mkl_rt", "mkl_core"))})


class CharModel(nn.Module):
    """embedding -> one recurrent layer -> linear head; logits [T*B, V]."""

    def __init__(self, cell, embed, hidden, variant):
        super().__init__()
        self.cell_name, self.variant = cell, variant
        self.embed = nn.Embedding(VOCAB, embed)
        if variant == "fused":
            self.rnn = {"rnn_tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](embed, hidden)
        else:
            self.rnn = {"rnn_tanh": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell](
                embed, hidden)
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


def char_flops(embed, hidden, batch, seq, gates):
    tb, h, e = seq * batch, hidden, embed
    return 3 * (2 * tb * e * gates * h + 2 * tb * h * gates * h + 2 * tb * h * VOCAB)


def layer_flops(size, gates):
    i, h, b, t = size
    return 3 * 2 * t * b * gates * h * (i + h)


def time_reps(args, step, warmup, min_time):
    """Warm up, then time repetitions; (reps, median ms, mean ms, min ms, last value)."""
    for _ in range(warmup):
        step()
    durations, value = [], None
    start = last = time.perf_counter()
    while True:
        value = step()
        t = time.perf_counter()
        durations.append(t - last)
        last = t
        n = len(durations)
        if (n >= args.steps) if args.steps else (n >= args.min_steps and t - start >= min_time):
            break
    n = len(durations)
    return (n, 1e3 * statistics.median(durations), 1e3 * (last - start) / n,
            1e3 * min(durations), value)


def timing(args, kind):
    warmup = args.warmup if args.warmup is not None else (3 if kind == "char" else 2)
    min_time = args.min_time if args.min_time is not None else (1.5 if kind == "char" else 0.5)
    if args.quick:
        warmup, min_time = min(warmup, 1), min(min_time, 0.05)
    return warmup, min_time


def set_threads(n, blas):
    torch.set_num_threads(n)
    if blas is not None and hasattr(blas, "openblas_set_num_threads"):
        blas.openblas_set_num_threads(n)


def run_char_row(args, cell, cfg, threads, variant):
    hidden, batch, seq = CONFIGS[cfg]
    embed = hidden if args.embed_equals_hidden else args.embed
    torch.manual_seed(1234)
    model = CharModel(cell, embed, hidden, variant)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1234)
    stream = torch.randint(0, VOCAB, (seq + 1, batch), generator=gen)
    ids, targets = stream[:-1].contiguous(), stream[1:].reshape(-1).contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids), targets)
        loss.backward()
        opt.step()
        return loss.item()

    warmup, min_time = timing(args, "char")
    reps, ms, mean, ms_min, loss = time_reps(args, step, warmup, min_time)
    if not math.isfinite(loss):
        raise RuntimeError(f"{cell} {cfg}: loss is not finite")
    gflops = char_flops(embed, hidden, batch, seq, GATES[cell]) / (ms * 1e6)
    if args.machine:
        print(f"RESULT peer=torch kind=char cell={cell} config={cfg} embed={embed} "
              f"hidden={hidden} threads={threads} variant={variant} ms={ms:.6f} "
              f"ms_mean={mean:.6f} ms_min={ms_min:.6f} reps={reps} gflops={gflops:.3f} "
              f"loss={loss:.5f}", flush=True)
    else:
        print(f"{cell:<9} {variant:<7} {cfg:<7} {embed:>4} {hidden:>4} {batch:>5} {seq:>4} "
              f"{threads:>4} {reps:>6} {seq * batch / (ms * 1e-3):>11.0f} {ms:>9.3f} "
              f"{mean:>9.3f} {gflops:>8.2f} {loss:>7.4f}", flush=True)


def run_layer_row(args, cell, size_name, threads):
    size = parse_size(size_name)
    i, h, b, t = size
    torch.manual_seed(1234)
    rnn = {"rnn_tanh": lambda: nn.RNN(i, h, nonlinearity="tanh"),
           "lstm": lambda: nn.LSTM(i, h), "gru": lambda: nn.GRU(i, h)}[cell]()
    gen = torch.Generator().manual_seed(99)
    x = (torch.rand(t, b, i, generator=gen) * 2 - 1).requires_grad_(True)
    gy = torch.rand(t, b, h, generator=gen) * 2 - 1
    params = list(rnn.parameters())

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        y, _ = rnn(x)
        y.backward(gy)
        return None

    warmup, min_time = timing(args, "layer")
    reps, ms, mean, ms_min, _ = time_reps(args, step, warmup, min_time)
    gflops = layer_flops(size, GATES[cell]) / (ms * 1e6)
    name = "x".join(str(v) for v in size)
    if args.machine:
        print(f"RESULT peer=torch kind=layer cell={cell} size={name} threads={threads} "
              f"ms={ms:.6f} ms_mean={mean:.6f} ms_min={ms_min:.6f} reps={reps} "
              f"gflops={gflops:.3f}", flush=True)
    else:
        print(f"{cell:<9} {name:<15} {threads:>3} {reps:>5} {ms:>9.3f} {mean:>9.3f} "
              f"{ms_min:>9.3f} {gflops:>8.2f}", flush=True)


def run(args, blas, header):
    cells = args.cells or (["lstm", "gru", "rnn_tanh"] if args.mode == "layer" else list(CELLS))
    if args.mode == "layer":
        for s in args.sizes:
            parse_size(s)  # validate before running anything
    if header and not args.machine:
        if args.mode == "char":
            print(f"{'cell':<9} {'variant':<7} {'config':<7} {'E':>4} {'H':>4} {'batch':>5} "
                  f"{'seq':>4} {'thr':>4} {'steps':>6} {'tokens/s':>11} {'ms/step':>9} "
                  f"{'mean ms':>9} {'GFLOP/s':>8} {'loss':>7}")
        else:
            print(f"{'cell':<9} {'IxHxBxT':<15} {'thr':>3} {'reps':>5} {'ms':>9} {'mean ms':>9} "
                  f"{'min ms':>9} {'GFLOP/s':>8}")
    for cell in cells:
        for threads in args.threads:
            set_threads(threads, blas)
            if args.mode == "char":
                for cfg in args.configs:
                    for variant in args.variants:
                        run_char_row(args, cell, cfg, threads, variant)
            else:
                for size in args.sizes:
                    run_layer_row(args, cell, size, threads)
            gc.collect()


def describe(args, blas):
    pre = "# " if args.machine else ""
    cpu = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if cpu:
        cpu = "CPU capability " + cpu()
    else:  # torch 1.13: only the build summary says which kernels it dispatches to
        cpu = next((l.strip(" -").replace("usage: ", "") for l in torch.__config__.show().splitlines()
                    if "CPU capability" in l), "CPU capability unknown")
    env = {k: os.environ.get(k, "unset") for k in
           ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", "BLIS_ARCH_TYPE")}
    print(f"{pre}runtime: torch {torch.__version__}, {cpu}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, affinity CPUs "
          f"{sorted(os.sched_getaffinity(0))}, "
          f"{'re-executed at its best' if os.environ.get(REEXEC_MARK) else 'as-is'}")
    print(f"{pre}environment: " + " ".join(f"{k}={v}" for k, v in env.items()))
    libs = loaded_blas()
    extra = ""
    if blas is not None:
        extra = f"; {blas.openblas_get_config().decode()}"
        if hasattr(blas, "openblas_get_corename"):
            blas.openblas_get_corename.restype = ctypes.c_char_p
            extra += f", core {blas.openblas_get_corename().decode()}"
    print(f"{pre}BLAS: {', '.join(libs) if libs else 'none found in /proc/self/maps'}{extra}")
    if args.blas == "openblas" and not args.as_is and blas is None:
        print(f"{pre}WARNING: OpenBLAS was asked for but is not the loaded BLAS", flush=True)


def main():
    args = ARGS
    torch.ones(8, 8) @ torch.ones(8, 8)  # load the BLAS
    blas = openblas_lib()
    describe(args, blas)
    if args.serve:
        parser = make_parser()
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                row = parser.parse_args(shlex.split(line))
                row.machine = True
                run(row, blas, header=False)
            except (SystemExit, Exception) as e:  # report, keep serving
                print(f"ERROR {type(e).__name__}: {e}", flush=True)
            print("DONE", flush=True)
        return 0
    if not args.machine:
        kind = ("training step: embedding -> 1-layer cell -> linear -> cross_entropy -> "
                "backward -> SGD(lr 0.1); vocab 65, "
                + ("E = H" if args.embed_equals_hidden else f"E = {args.embed}")
                if args.mode == "char" else
                "layer forward+backward: 1 layer, [T,B,I], zero state, y.backward(gy)")
        print(f"pytorch {kind}; f32")
        print("ms: median repetition (mean and min too); GFLOP/s counts 3x the forward "
              "matmul FLOPs" + (" (--quick: short timing)" if args.quick else ""))
        print(f"load average before the run: {os.getloadavg()[0]:.2f} "
              "(a busy machine slows every row)\n")
    run(args, blas, header=True)
    if not args.machine:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"\npeak RSS: {peak:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
