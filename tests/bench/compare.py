"""compare.py -- chainrule against oneDNN and PyTorch, interleaved, in one table.

Started by run_all.sh (which installs the peers and builds the programs);
needs only the Python standard library itself.  The measuring is done by
the C/C++/Python programs next to it:
    fma-peak        one core's float32 FMA peak (the "% peak" reference)
    bench-layer     chainrule, layer forward+backward (1 and 2 threads, MGU)
    bench-dnnl      oneDNN 2.x fused RNN primitives, same case; --check-only
                    compares its outputs and gradients with chainrule's
    bench-rnn       chainrule, training step of the character model
    bench_torch.py  PyTorch at its best, both kinds (one warm --serve process)

Rows are interleaved: for every row, each peer's run follows the others' at
once (the order rotates from round to round), and the whole list is
repeated --rounds times; a row's figure is the median over the rounds of
each run's median repetition.  1-thread runs are pinned to --cpu with
taskset (PyTorch pins itself there), 2-thread runs to --cpus2.  The FMA peak
is measured at the start of every round; the largest measurement is "the
measured FMA peak".  Columns (README.md in this directory has the details):
    ms         median time of one repetition (layer: forward+backward;
               char: a whole training step), median over rounds
    GFLOP/s    3 x forward matrix-product FLOPs / ms (layer_common.h)
    % peak     GFLOP/s / (threads x measured FMA peak)
    vs oneDNN  oneDNN ms / chainrule ms (> 1: chainrule is faster), taken
               within each round, then the median over the rounds: the
               runs of a row follow each other within seconds, so a slow
               minute of a shared machine slows both sides of the ratio
               (the same for 2 threads vs 1 and MGU vs GRU, whose rows
               follow the 1-thread / GRU row of their size)
    vs PyTorch PyTorch ms / chainrule ms, the same way
    spread     (max - min) / median of chainrule's per-round medians: how
               noisy the machine was for that row

    /usr/bin/python3 tests/bench/compare.py --build-dir BUILD [--rounds 3] [--quick]
        [--cpu 0] [--cpus2 0,1] [--no-torch] [--no-dnnl] [--cells lstm,gru]
        [--json FILE]
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

LAYER_CELLS = ("lstm", "gru", "rnn_tanh")
LAYER_SIZES = ("32x32x1x32", "64x128x32x64", "64x512x32x64", "512x512x32x64", "128x128x64x64",
               "64x1024x32x64")
TINY = "32x32x1x32"
TWO_THREAD_SIZES = ("64x512x32x64", "64x1024x32x64")  # the H = 512 and H = 1024 rows
MGU_SIZES = ("64x128x32x64", "64x512x32x64")
CHAR_CONFIGS = ("tiny", "small", "medium")
CHAR_TARGET = {"tiny": 20.0, "small": 1.6, "medium": 1.35}  # x PyTorch-best
GATES = {"lstm": 4, "gru": 3, "mgu": 2, "rnn_tanh": 1}
CHAR_SIZES = {"tiny": (32, 1, 32), "small": (128, 32, 64), "medium": (512, 32, 64)}
VOCAB = 65


# ------------------------------------------------------------------ helpers

def cpu_info():
    """A one-line description of the CPU from /proc/cpuinfo, and its flags."""
    fields, flags = {}, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    continue
                k, v = (s.strip() for s in line.split(":", 1))
                if k == "flags" and not flags:
                    flags = set(v.split())
                fields.setdefault(k, v)
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)", flags
    fam, mod = int(fields.get("cpu family", "0")), int(fields.get("model", "0"))
    yn = lambda f: "yes" if f in flags else "no"  # noqa: E731
    desc = (f"{fields.get('model name', '?')} ({fields.get('vendor_id', '?')} family {fam} "
            f"(0x{fam:x}) model {mod} (0x{mod:x})), {os.cpu_count()} CPUs, "
            f"avx512f {yn('avx512f')}, avx2 {yn('avx2')}, fma {yn('fma')}"
            f"{', under a hypervisor' if 'hypervisor' in flags else ''}")
    return desc, flags


def parse_results(text):
    """The key=value fields of every "RESULT ..." line."""
    out = []
    for line in text.splitlines():
        if line.startswith("RESULT "):
            out.append(dict(tok.split("=", 1) for tok in line.split()[1:] if "=" in tok))
    return out


def run(cmd, env=None, timeout=3600):
    """Run a measuring program; (stdout, ok)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"  ! {' '.join(cmd)}: {e}", file=sys.stderr)
        return "", False
    if p.returncode != 0:
        print(f"  ! {' '.join(shlex.quote(c) for c in cmd)}: exit {p.returncode}\n"
              f"    {p.stderr.strip()[-500:]}", file=sys.stderr)
    return p.stdout, p.returncode == 0


def layer_flops(cell, size):
    i, h, b, t = (int(v) for v in size.split("x"))
    return 3 * 2 * t * b * GATES[cell] * h * (i + h)


def char_flops(cell, config, embed):
    h, b, t = CHAR_SIZES[config]
    e = h if embed == 0 else embed
    g = GATES[cell]
    return 3 * (2 * t * b * e * g * h + 2 * t * b * h * g * h + 2 * t * b * h * VOCAB)


class TorchServer:
    """One warm bench_torch.py --serve process (pinned at its best by itself)."""

    def __init__(self, python, cpu):
        self.proc, self.header = None, []
        cmd = [python, os.path.join(HERE, "bench_torch.py"), "--serve", "--cpus", str(cpu)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as e:
            print(f"  ! PyTorch: {e}", file=sys.stderr)
            return
        # the describe lines come first, then the server waits for rows
        while len(self.header) < 3:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read().strip()[-800:]
                print(f"  ! PyTorch could not start: {err}", file=sys.stderr)
                self.proc = None
                return
            self.header.append(line.rstrip("\n").lstrip("# "))

    def ok(self):
        return self.proc is not None

    def row(self, args):
        if not self.proc:
            return []
        self.proc.stdin.write(" ".join(args) + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                print("  ! PyTorch server exited", file=sys.stderr)
                self.proc = None
                break
            if line.startswith("DONE"):
                break
            if line.startswith("ERROR"):
                print(f"  ! PyTorch {' '.join(args)}: {line.strip()}", file=sys.stderr)
            lines.append(line)
        return parse_results("".join(lines))

    def close(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# -------------------------------------------------------------- the driver

class Driver:
    def __init__(self, args):
        self.a = args
        b = os.path.join(args.build_dir, "tests", "bench")
        self.exe = {k: os.path.join(b, k) for k in ("fma-peak", "bench-layer", "bench-rnn",
                                                    "bench-dnnl")}
        for k in ("fma-peak", "bench-layer", "bench-rnn"):
            if not os.access(self.exe[k], os.X_OK):
                sys.exit(f"compare: {self.exe[k]} not found: build first (run_all.sh does)")
        self.have_dnnl = not args.no_dnnl and os.access(self.exe["bench-dnnl"], os.X_OK)
        self.samples = {}  # (peer, kind, cell, what, threads) -> [ms per round]
        self.by_round = {}  # the same key -> {round: ms}, for the paired ratios
        self.round = 0
        self.allocs = {}
        self.peaks = []  # (GFLOP/s, kernel) of every probe run
        self.kernel_peaks = {}  # kernel -> GFLOP/s of every probe run ([]: unsupported)
        self.dnnl_impl = None
        self.torch, self.torch_header = None, []
        self.load_start = os.getloadavg()[0]
        self.pin1 = ["taskset", "-c", str(args.cpu)]
        self.pin2 = ["taskset", "-c", args.cpus2]
        self.env_dnnl = dict(os.environ, OMP_NUM_THREADS="1")
        reps = ["--reps", "3", "--min-time", "0.05", "--warmup", "1"] if args.quick else \
            ["--reps", str(args.reps), "--min-time", str(args.min_time)]
        self.reps = reps

    def add(self, peer, kind, cell, what, threads, res):
        for r in res:
            key = (peer, kind, cell, what, threads)
            self.samples.setdefault(key, []).append(float(r["ms"]))
            self.by_round.setdefault(key, {})[self.round] = float(r["ms"])
            if "allocs" in r:
                self.allocs[key] = max(self.allocs.get(key, 0), int(r["allocs"]))
            if "impl" in r:
                self.dnnl_impl = r["impl"]

    def fma_peak(self):
        out, _ = run(self.pin1 + [self.exe["fma-peak"], "--machine"] +
                     (["--repeats", "3", "--seconds", "0.1"] if self.a.quick else []))
        for r in parse_results(out):
            if r.get("kernel") == "max":
                self.peaks.append((float(r["gflops"]), r["from"]))
            elif r.get("supported") == "1":
                self.kernel_peaks.setdefault(r["kernel"], []).append(float(r["gflops"]))
            elif r.get("supported") == "0":
                self.kernel_peaks.setdefault(r["kernel"], [])

    def check_dnnl(self):
        """oneDNN vs chainrule: outputs and gradients (max relative error per tensor)."""
        if not self.have_dnnl:
            return None
        out, ok = run(self.pin1 + [self.exe["bench-dnnl"], "--check-only", "--machine",
                                   "--cells", ",".join(self.layer_cells())], env=self.env_dnnl)
        rows = [r for r in parse_results(out) if r.get("kind") == "check"]
        header = [l[2:] for l in out.splitlines() if l.startswith("# oneDNN")]
        return {"ok": ok, "rows": rows, "header": header[0] if header else ""}

    def layer_cells(self):
        return [c for c in self.a.cells if c in LAYER_CELLS]

    def jobs(self):
        """The interleaved rows: a list of lists of (peer, callable)."""
        a, rows = self.a, []
        for cell in self.layer_cells():
            for size in LAYER_SIZES:
                row = [("chainrule", lambda c=cell, s=size: self.cr_layer(c, s, 1))]
                if self.have_dnnl:
                    row.append(("onednn", lambda c=cell, s=size: self.dnnl_layer(c, s)))
                if self.torch:
                    row.append(("torch", lambda c=cell, s=size: self.torch_row(
                        ["--mode", "layer", "--cells", c, "--sizes", s], "layer", c, s)))
                rows.append(row)
                if size in TWO_THREAD_SIZES and not a.no_threads:
                    rows.append([("chainrule-2t", lambda c=cell, s=size: self.cr_layer(c, s, 2))])
                if cell == "gru" and size in MGU_SIZES and "mgu" in a.cells:
                    rows.append([("chainrule", lambda s=size: self.cr_layer("mgu", s, 1))])
        if "mgu" in a.cells and "gru" not in self.layer_cells():  # nothing to pair with
            for size in MGU_SIZES:
                rows.append([("chainrule", lambda s=size: self.cr_layer("mgu", s, 1))])
        for cell in self.layer_cells():
            for cfg in CHAR_CONFIGS:
                row = [("chainrule", lambda c=cell, f=cfg: self.cr_char(c, f))]
                if self.torch:
                    row.append(("torch", lambda c=cell, f=cfg: self.torch_row(
                        ["--mode", "char", "--cells", c, "--configs", f] + self.embed_args() +
                        (["--quick"] if self.a.quick else []), "char", c, f)))
                rows.append(row)
        return rows

    def embed_args(self):
        return ["--embed-equals-hidden"] if self.a.embed == 0 else ["--embed", str(self.a.embed)]

    def cr_layer(self, cell, size, threads):
        pin = self.pin1 if threads == 1 else self.pin2
        out, _ = run(pin + [self.exe["bench-layer"], "--machine", "--cells", cell, "--sizes", size,
                            "--threads", str(threads)] + self.reps)
        self.add("chainrule", "layer", cell, size, threads, parse_results(out))

    def dnnl_layer(self, cell, size):
        out, _ = run(self.pin1 + [self.exe["bench-dnnl"], "--machine", "--no-check", "--cells",
                                  cell, "--sizes", size] + self.reps, env=self.env_dnnl)
        self.add("onednn", "layer", cell, size, 1, parse_results(out))

    def cr_char(self, cell, cfg):
        out, _ = run(self.pin1 + [self.exe["bench-rnn"], "--machine", "--cells", cell, "--configs",
                                  cfg, "--threads", "1"] + self.embed_args() +
                     (["--quick"] if self.a.quick else []))
        self.add("chainrule", "char", cell, cfg, 1, parse_results(out))

    def torch_row(self, args, kind, cell, what):
        extra = []
        if kind == "layer":
            extra = (["--min-steps", "3", "--min-time", "0.05", "--warmup", "1"] if self.a.quick
                     else ["--min-steps", str(self.a.reps), "--min-time", str(self.a.min_time)])
        res = self.torch.row(args + extra + ["--threads", "1"])
        self.add("torch", kind, cell, what, 1, res)

    def measure(self):
        if not self.a.no_torch:
            t = TorchServer(self.a.python, self.a.cpu)
            self.torch = t if t.ok() else None
            self.torch_header = t.header
        rows = self.jobs()
        self.load_start = os.getloadavg()[0]
        t0 = time.time()
        for rnd in range(self.a.rounds):
            self.round = rnd
            self.fma_peak()
            print(f"round {rnd + 1}/{self.a.rounds}: {len(rows)} rows "
                  f"(FMA peak now {self.peaks[-1][0]:.1f} GFLOP/s; "
                  f"load {os.getloadavg()[0]:.2f}; {time.time() - t0:.0f} s so far)",
                  file=sys.stderr, flush=True)
            for row in rows:
                k = rnd % len(row)  # rotate which peer goes first
                for _, job in row[k:] + row[:k]:
                    job()
        self.fma_peak()
        if self.torch:
            self.torch.close()

    # -------------------------------------------------------------- report
    def med(self, peer, kind, cell, what, threads=1):
        v = self.samples.get((peer, kind, cell, what, threads))
        return statistics.median(v) if v else None

    def paired(self, num, den, scale=1.0):
        """The median over the rounds of num's ms / den's ms (keys of
        samples) within the round, times scale: the runs of one row, and of
        the rows of one size, follow each other within seconds, so a slow
        minute of a shared machine slows both sides of each ratio."""
        a, b = self.by_round.get(num, {}), self.by_round.get(den, {})
        v = [scale * a[r] / b[r] for r in a if r in b and b[r] > 0]
        return statistics.median(v) if v else None

    def spread(self, peer, kind, cell, what, threads=1):
        v = self.samples.get((peer, kind, cell, what, threads))
        if not v or len(v) < 2:
            return None
        return (max(v) - min(v)) / statistics.median(v)

    def mgu_vs_gru(self, size):
        """MGU GFLOP/s / GRU GFLOP/s at size, paired by round"""
        return self.paired(("chainrule", "layer", "gru", size, 1),
                           ("chainrule", "layer", "mgu", size, 1),
                           layer_flops("mgu", size) / layer_flops("gru", size))

    def report(self, check, cpu_desc):
        peak, peak_from = max(self.peaks) if self.peaks else (float("nan"), "none")
        f = lambda x, fmt: "n/a" if x is None else format(x, fmt)  # noqa: E731
        targets = []  # (what, row, value text, target text, met)

        print(f"\nCPU: {cpu_desc}")
        print(f"kernel: {platform.system()} {platform.release()}; 1-minute load average "
              f"{self.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
              f"(2 CPUs: above ~1 another process shares the cores); {self.a.rounds} "
              "interleaved rounds, medians")
        kp = "; ".join(f"{k}: " + (", ".join(f"{g:.1f}" for g in v) if v else "not supported")
                       for k, v in self.kernel_peaks.items())
        print(f"measured FMA peak (one core, float32): {peak:.1f} GFLOP/s, the best probe run "
              f"({peak_from}); every run: {kp}")
        if check and check.get("header"):
            print(f"oneDNN: {check['header']}; implementation fwd/bwd {self.dnnl_impl}")
        elif not self.have_dnnl:
            print("oneDNN: not built (install libdnnl-dev and reconfigure; run_all.sh does)")
        if self.torch_header:
            for line in self.torch_header:
                print(f"PyTorch {line}")
        else:
            print("PyTorch: not run")

        # oneDNN correctness
        if check is not None:
            print("\noneDNN vs chainrule, same weights and inputs: max|dnnl - cr| / max|cr| "
                  "per tensor")
            names = ("y", "h_T", "c_T", "gx", "gW_ih", "gW_hh", "gb_ih", "gb_hh")
            print("| cell | IxHxBxT | " + " | ".join(names) + " | max |")
            print("|---|---|" + "---|" * (len(names) + 1))
            worst = 0.0
            for r in check["rows"]:
                worst = max(worst, float(r["max"]))
                print(f"| {r['cell']} | {r['size']} | " +
                      " | ".join(f"{float(r[n]):.1e}" if n in r else "-" for n in names) +
                      f" | {float(r['max']):.1e} |")
            met = check["ok"] and bool(check["rows"]) and worst <= 2e-5
            targets.append(("oneDNN agrees with chainrule", "all checked sizes",
                            f"{worst:.1e}", "<= 2e-5", met))

        # the main table
        print("\nlayer = one layer forward+backward; char = one training step of the character "
              f"model (E = {self.a.embed or 'H'}); ms = median; vs X = X ms / chainrule ms in the "
              "same round, median over the rounds")
        print("| kind | cell | IxHxBxT / config | thr | chainrule ms | GFLOP/s | % peak | "
              "spread | oneDNN ms | oneDNN % peak | PyTorch ms | vs oneDNN | vs PyTorch | "
              "target | met |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        keys = []
        for (peer, kind, cell, what, thr) in self.samples:
            if peer == "chainrule" and (kind, cell, what, thr) not in keys:
                keys.append((kind, cell, what, thr))
        for kind, cell, what, thr in keys:
            ms = self.med("chainrule", kind, cell, what, thr)
            flops = layer_flops(cell, what) if kind == "layer" else \
                char_flops(cell, what, self.a.embed)
            gf = flops / (ms * 1e6)
            pct = 100 * gf / (peak * thr)
            dn = self.med("onednn", kind, cell, what) if thr == 1 else None
            tq = self.med("torch", kind, cell, what) if thr == 1 else None
            dn_pct = 100 * flops / (dn * 1e6) / peak if dn else None
            me = ("chainrule", kind, cell, what, thr)
            r_dn = self.paired(("onednn", kind, cell, what, 1), me) if dn else None
            r_tq = self.paired(("torch", kind, cell, what, 1), me) if tq else None
            target, met = "", ""
            yn = lambda v, need: "n/a" if v is None else ("yes" if v >= need else "no")  # noqa
            if kind == "layer" and thr == 1 and cell in LAYER_CELLS:
                need = 1.5 if what == TINY else 1.0
                target = f"vs oneDNN >= {need:.2f}x"
                met = yn(r_dn, need)
                targets.append((f"vs oneDNN {cell}", what, f(r_dn, ".2f") + "x", f">= {need:.2f}x",
                                None if r_dn is None else r_dn >= need))
            elif kind == "layer" and thr == 2:
                r2 = self.paired(("chainrule", kind, cell, what, 1), me)
                target = "1t ms / 2t ms >= 1.8x" + ("" if r2 is None else f": {r2:.2f}x")
                met = yn(r2, 1.8)
            elif kind == "layer" and cell == "mgu":
                rg = self.mgu_vs_gru(what)
                target = "GFLOP/s vs gru >= 0.90" + ("" if rg is None else f": {rg:.2f}")
                met = yn(rg, 0.9)
            elif kind == "char":
                need = CHAR_TARGET[what]
                target = f"vs PyTorch >= {need:.2f}x"
                met = yn(r_tq, need)
                targets.append((f"char step vs PyTorch-best {cell}", what, f(r_tq, ".2f") + "x",
                                f">= {need:.2f}x", None if r_tq is None else r_tq >= need))
            sp = self.spread("chainrule", kind, cell, what, thr)
            print(f"| {kind} | {cell} | {what} | {thr} | {ms:.3f} | {gf:.1f} | {pct:.0f}% | "
                  f"{f(None if sp is None else 100 * sp, '.0f')}{'%' if sp is not None else ''} | "
                  f"{f(dn, '.3f')} | {f(dn_pct, '.0f')}{'%' if dn_pct else ''} | "
                  f"{f(tq, '.3f')} | {f(r_dn, '.2f')}{'x' if r_dn else ''} | "
                  f"{f(r_tq, '.2f')}{'x' if r_tq else ''} | {target} | {met} |")

        # derived targets
        def gflops(cell, size, thr=1):
            ms = self.med("chainrule", "layer", cell, size, thr)
            return layer_flops(cell, size) / (ms * 1e6) if ms else None

        for cell in self.layer_cells():
            for size in ("64x512x32x64", "512x512x32x64"):
                g = gflops(cell, size)
                if g:
                    p = 100 * g / peak
                    targets.append((f"% of FMA peak {cell}", size, f"{p:.0f}%", ">= 80%", p >= 80))
            g512, g1024 = gflops(cell, "64x512x32x64"), gflops(cell, "64x1024x32x64")
            if g512 and g1024:
                r = g1024 / g512
                targets.append((f"H=1024 vs H=512 GFLOP/s {cell}", "64x1024 / 64x512",
                                f"{r:.2f}", ">= 0.90", r >= 0.9))
            for size in TWO_THREAD_SIZES:
                r2 = self.paired(("chainrule", "layer", cell, size, 1),
                                 ("chainrule", "layer", cell, size, 2))
                if r2:
                    targets.append((f"2 threads vs 1 {cell}", size, f"{r2:.2f}x", ">= 1.8x",
                                    r2 >= 1.8))
        for size in MGU_SIZES:
            rg = self.mgu_vs_gru(size)
            if rg:
                targets.append(("user cell MGU vs built-in GRU, GFLOP/s", size, f"{rg:.2f}",
                                ">= 0.90", rg >= 0.9))
        allocs = sum(self.allocs.values())
        targets.append(("allocations during timed steps (chainrule)", "every row", str(allocs),
                        "0", allocs == 0))

        print("\ntargets (issue #10; 1 thread unless stated)")
        print("| target | row | measured | needs | met |")
        print("|---|---|---|---|---|")
        for what, row, val, need, met in targets:
            print(f"| {what} | {row} | {val} | {need} | "
                  f"{'n/a' if met is None else ('yes' if met else 'no')} |")
        n_met = sum(1 for t in targets if t[4])
        n_known = sum(1 for t in targets if t[4] is not None)
        print(f"\n{n_met} of {n_known} measured targets met"
              f"{' (--quick: short timing, not a measurement)' if self.a.quick else ''}")
        if self.a.json:
            with open(self.a.json, "w") as fh:
                json.dump({"cpu": cpu_desc, "peaks": self.peaks, "check": check,
                           "samples": [list(k) + [v] for k, v in self.samples.items()],
                           "targets": targets}, fh, indent=1)
            print(f"raw results: {self.a.json}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per run, at least")
    p.add_argument("--min-time", type=float, default=0.5, help="timed seconds per run, at least")
    p.add_argument("--quick", action="store_true", help="short timing, 1 round: a smoke run")
    p.add_argument("--cpu", type=int, default=0, help="the core of the 1-thread runs")
    p.add_argument("--cpus2", default="0,1", help="the cores of the 2-thread runs")
    p.add_argument("--cells", default="lstm,gru,rnn_tanh,mgu")
    p.add_argument("--embed", type=int, default=64, help="char step embedding (0: E = H)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-dnnl", action="store_true")
    p.add_argument("--no-threads", action="store_true", help="skip the 2-thread rows")
    p.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                   else sys.executable, help="the Python that can import torch")
    p.add_argument("--json", default=None, help="also write the raw results here")
    args = p.parse_args()
    args.cells = [c for c in args.cells.split(",") if c]
    for c in args.cells:
        if c not in GATES:
            sys.exit(f"compare: unknown cell {c}")
    if args.quick:
        args.rounds = 1
    cpu_desc, _ = cpu_info()
    print(f"compare: {cpu_desc}", file=sys.stderr)
    d = Driver(args)
    check = d.check_dnnl()
    d.measure()
    d.report(check, cpu_desc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
