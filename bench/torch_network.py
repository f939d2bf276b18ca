#!/usr/bin/python3
"""PyTorch CPU reference timings for bench/bench_network.cpp: the whole DeeperLab network
(tools/torch_deeperlab.py) built from the same config, batch 1, eval-mode BatchNorm, forward
(under no_grad) and forward+backward (loss = sum of every head output), median of several runs,
and the peak resident memory of each case (VmHWM reset through /proc/self/clear_refs, minus the
resident size before the case: the C++ side measures the same way).

Standalone it prints a table; with --machine it prints tab-separated ROW lines for the C++ side.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch_deeperlab as T  # noqa: E402

import proc_mem  # noqa: E402  (bench/, the script's own folder)

def run(model, x, backward, reps):
    times = []
    rss0 = proc_mem.start()
    for _ in range(reps + 1):  # the first run warms up
        t0 = time.perf_counter()
        if backward:
            model.zero_grad(set_to_none=True)
            h = model(x)
            sum(v.sum() for v in h.values()).backward()
        else:
            with torch.no_grad():
                model(x)
        times.append(time.perf_counter() - t0)
    peak = proc_mem.peak_mb(rss0)
    return statistics.median(times[1:]) * 1000.0, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", required=True)
    ap.add_argument("--size", default="513x513")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--machine", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.size.split("x"))
    for cfg in a.config:
        torch.manual_seed(0)
        model = T.DeeperLab(T.load_model_config(cfg)).eval()
        x = torch.rand(1, 3, h, w) * 2 - 1
        for backward in (False, True):
            ms, peak = run(model, x, backward, a.reps)
            name = f"{os.path.basename(cfg)} {'fwd+bwd' if backward else 'fwd'}"
            if a.machine:
                print(f"ROW\t{name}\t{ms:.3f}\t{peak:.1f}", flush=True)
            else:
                print(f"{name:32s} {ms:10.1f} ms  peak {peak:8.1f} MB", flush=True)
        del model


if __name__ == "__main__":
    main()
