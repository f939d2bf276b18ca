#!/usr/bin/python3
"""PyTorch CPU reference timings for bench/bench_cpu_ops.cpp: the same convolution cases (conv 1x1,
depthwise 7x7, dense 3x3 at the DeeperLab shapes, forward and backward = grad-input + grad-weight),
median of several runs, GFLOP/s and the peak resident memory per case on top of its inputs (VmHWM
reset through /proc/self/clear_refs once the inputs exist, minus the resident size then, as the C++
side measures it).

Run with /usr/bin/python3 (Debian's torch). Standalone it prints a table; with --machine it prints
tab-separated ROW lines for the C++ benchmark to parse.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import proc_mem  # noqa: E402  (bench/, the script's own folder)


def make_cases():
    """Same list, same order and same names as make_cases() in bench_cpu_ops.cpp."""
    sizes = [(768, 33), (4096, 33), (256, 129), (32, 257)]
    cases = []
    for bwd in (False, True):
        for c, h in sizes:
            cases.append(("conv1x1", c, c, h, 1, 1, bwd))
        for c, h in sizes:
            cases.append(("dw7x7", c, c, h, 7, c, bwd))
        for c, h in sizes:
            if c != 4096:  # skipped: 604 MB of weights, 329 GFLOP per forward
                cases.append(("conv3x3", c, c, h, 3, 1, bwd))
    out = []
    for name, cin, cout, h, k, groups, bwd in cases:
        label = f"{name} {cin}->{cout} {h}x{h} {'bwd' if bwd else 'fwd'}"
        out.append((label, cin, cout, h, k, groups, bwd))
    return out


def run_case(case, min_reps, budget, cpu_clock=False):
    _, cin, cout, h, k, groups, bwd = case
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, cin, h, h, generator=g)
    w = torch.randn(cout, cin // groups, k, k, generator=g) * 0.05
    pad = k // 2
    gy = torch.randn(1, cout, h, h, generator=g) if bwd else None
    rss0 = proc_mem.start()

    def once():
        with torch.no_grad():
            if not bwd:
                F.conv2d(x, w, None, 1, pad, 1, groups)
            else:
                # Exactly the work our backward does: grad-input and grad-weight, no grad-bias.
                torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                                                    groups, [True, True, False])

    once()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 50):
        clock = time.process_time if cpu_clock else time.perf_counter
        t0 = clock()
        once()
        times.append(clock() - t0)
    ms = 1e3 * statistics.median(times)
    macs = cout * h * h * (cin // groups) * k * k
    gflops = 2.0 * macs * (2 if bwd else 1) / (ms * 1e-3) / 1e9
    peak_mb = proc_mem.peak_mb(rss0)
    return ms, gflops, peak_mb


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--machine", action="store_true", help="print ROW lines for bench_cpu_ops")
    ap.add_argument("--cpu-time", action="store_true", help="time with the process CPU clock (see bench_cpu_ops)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not a.machine:
        print(f"torch {torch.__version__}, threads {a.threads}, mkldnn {torch.backends.mkldnn.is_available()}")
        print("| case | torch ms | torch GFLOP/s | torch peak MB |")
        print("|---|---:|---:|---:|")
    for case in make_cases():
        if a.only and a.only not in case[0]:
            continue
        ms, gf, mb = run_case(case, a.reps, a.budget, a.cpu_time)
        if a.machine:
            print(f"ROW\t{case[0]}\t{ms:.4f}\t{gf:.3f}\t{mb:.1f}", flush=True)
        else:
            print(f"| {case[0]} | {ms:.2f} | {gf:.1f} | {mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
