#!/usr/bin/env python3
"""Training throughput of the same DeeperLab network in PyTorch (CPU or CUDA), for docs/PERF.md.

Builds the network of a deeperlab config with tools/torch_deeperlab.py and times full training
steps (forward in train mode, a loss over all five heads, backward, SGD step) on random inputs.
The loss is a simplified stand-in (cross-entropy + sigmoid CE + L1 on the offsets; no hard-pixel
mining, no target building): it costs a small fraction of a step at these sizes.

  /usr/bin/python3 bench/torch_train.py --config examples/configs/wider_mnv2.json --size 513 --batch 2 \
      --steps 3 --threads 2 [--device cuda]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch_deeperlab as tdl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--size", type=int, default=513)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--classes", type=int, default=0, help="override model.num_classes")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_train.py: --device cuda but torch sees no CUDA device")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    m = tdl.load_model_config(a.config)
    if a.classes:
        m["num_classes"] = a.classes
    torch.manual_seed(0)
    net = tdl.DeeperLab(m).train().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    n, s, k = a.batch, a.size, m["num_classes"]
    x = (torch.rand(n, 3, s, s) * 2 - 1).to(dev)
    sem = torch.randint(0, k, (n, s, s)).to(dev)
    hm = (torch.rand(n, 5, s, s) > 0.9).float().to(dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        out = net(x)
        loss = F.cross_entropy(out["semantic"], sem) + F.binary_cross_entropy_with_logits(out["heatmap"], hm)
        for name in ("long_offsets", "short_offsets", "mid_offsets"):
            loss = loss + out[name].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    t = sum(times) / len(times)
    if a.device == "cuda":
        peak, what = torch.cuda.max_memory_allocated() / 2**20, f"peak device {torch.cuda.get_device_name()}"
    else:
        import resource
        peak, what = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "peak RSS"
    print(f"pytorch {torch.__version__} threads {torch.get_num_threads()}: {n}x{s}x{s} "
          f"{t:.3f} s/step {n / t:.3f} images/s {what} {peak:.0f} MiB")


if __name__ == "__main__":
    main()
