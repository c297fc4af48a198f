"""bench_torch.py -- the PyTorch twin of bench-rnn (tests/bench/bench_rnn.c).

The same training step of a character model, in float32:
    ids [T,B] (random, vocab V = 65, seeded) -> nn.Embedding(V, E), E = H
    -> one recurrent layer -> nn.Linear(H, V) -> F.cross_entropy
    -> backward -> SGD step (lr 0.1, no momentum)
in two variants:
    fused  nn.RNN(tanh) / nn.LSTM / nn.GRU over the whole sequence
    loop   nn.RNNCell / nn.LSTMCell / nn.GRUCell unrolled in Python
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

Run it with Debian's python3-torch, with the OpenBLAS tuning variables of
this machine's environment removed for this one command (they slow
PyTorch's OpenBLAS down here; leave them set elsewhere):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tests/bench/bench_torch.py

Options: --quick (short timing, for smoke runs), --cells lstm,gru
(rnn_tanh, lstm, gru), --configs tiny,small (tiny, small, medium),
--threads 1,2, --steps N (a fixed number of timed steps), --variants
fused,loop.
"""

import argparse
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

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
            T, B = ids.shape
            state = None
            outs = []
            for t in range(T):
                state = self.rnn(x[t], state)
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
    args = p.parse_args()

    print("pytorch training step: embedding -> 1-layer cell -> linear -> cross_entropy -> "
          f"backward -> SGD(lr 0.1); f32, vocab {VOCAB}, E = H")
    cpu = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    cpu = cpu() if cpu else os.environ.get("ATEN_CPU_CAPABILITY", "default CPU capability")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"runtime: torch {torch.__version__}, {cpu}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, "
          f"OPENBLAS_* tuning {env if env else 'unset'}")
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
