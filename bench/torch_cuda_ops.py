#!/usr/bin/env python3
"""The work of bench_cuda_ops.cpp in PyTorch on CUDA (cuDNN, TF32 off, cudnn.benchmark on), timed
the same way (CUDA events, median after warm-up). Prints "TORCH_OK <version>" and then one line
"TORCH <name> <median ms>" per op; bench_cuda_ops runs it and prints the ratios."""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", default="")
    ap.add_argument("--device", default="cuda", help="cpu: a slow dry run of the script itself (wall-clock timing)")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"torch import failed: {e}")
        return 1
    cpu = args.device == "cpu"
    if not cpu and not torch.cuda.is_available():
        print(f"torch {torch.__version__} has no usable CUDA device")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    print(f"TORCH_OK {torch.__version__}+cudnn{torch.backends.cudnn.version()}", flush=True)
    dev = torch.device(args.device)

    def timed(name, fn):
        if args.only and args.only not in name:
            return
        for _ in range(1 if cpu else 3):
            fn()
        times = []
        if cpu:
            import time
            for _ in range(args.runs):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            print(f"TORCH {name} {sorted(times)[len(times) // 2]:.6f}", flush=True)
            return
        torch.cuda.synchronize()
        for _ in range(args.runs):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        print(f"TORCH {name} {times[len(times) // 2]:.6f}", flush=True)

    conv_bwd = torch.ops.aten.convolution_backward
    with torch.no_grad():
        for shape in [(1, 768, 91, 91), (1, 4096, 91, 91), (1, 256, 361, 361)]:
            n, c, h, w = shape
            tag = f"c{c}_{h}"
            x = torch.randn(shape, device=dev)
            wt = torch.randn(c, 1, 7, 7, device=dev)
            gy = torch.randn(shape, device=dev)
            timed(f"dw7_fwd_{tag}", lambda: F.conv2d(x, wt, padding=3, groups=c))
            timed(f"dw7_bwd_input_{tag}",
                  lambda: conv_bwd(gy, x, wt, None, [1, 1], [3, 3], [1, 1], False, [0, 0], c, [True, False, False]))
            timed(f"dw7_bwd_weight_{tag}",
                  lambda: conv_bwd(gy, x, wt, None, [1, 1], [3, 3], [1, 1], False, [0, 0], c, [False, True, False]))
            del x, wt, gy
        for cin, cout, hw in [(768, 256, 91), (4096, 4096, 91)]:
            tag = f"{cin}_{cout}"
            x = torch.randn(1, cin, hw, hw, device=dev)
            wt = torch.randn(cout, cin, 1, 1, device=dev)
            gy = torch.randn(1, cout, hw, hw, device=dev)
            timed(f"pw_fwd_{tag}", lambda: F.conv2d(x, wt))
            timed(f"pw_bwd_input_{tag}",
                  lambda: conv_bwd(gy, x, wt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, False, False]))
            timed(f"pw_bwd_weight_{tag}",
                  lambda: conv_bwd(gy, x, wt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False]))
            del x, wt, gy
        for cin, cout, hw, stride in [(256, 256, 91, 1), (3, 32, 1441, 2)]:
            tag = f"{cin}_{cout}_s{stride}"
            x = torch.randn(1, cin, hw, hw, device=dev)
            wt = torch.randn(cout, cin, 3, 3, device=dev)
            y = F.conv2d(x, wt, stride=stride, padding=1)
            gy = torch.randn_like(y)
            timed(f"conv3_fwd_{tag}", lambda: F.conv2d(x, wt, stride=stride, padding=1))
            timed(f"conv3_bwd_input_{tag}", lambda: conv_bwd(gy, x, wt, None, [stride, stride], [1, 1], [1, 1], False,
                                                             [0, 0], 1, [True, False, False]))
            timed(f"conv3_bwd_weight_{tag}", lambda: conv_bwd(gy, x, wt, None, [stride, stride], [1, 1], [1, 1], False,
                                                              [0, 0], 1, [False, True, False]))
            del x, wt, y, gy
        # TensorFlow channel order: out_c = (dy * b + dx) * C + c.
        b = 4
        x = torch.randn(1, 32, 360, 360, device=dev)
        y = torch.empty(1, 512, 90, 90, device=dev)

        def s2d():
            return x.view(1, 32, 90, b, 90, b).permute(0, 3, 5, 1, 2, 4).reshape(1, 512, 90, 90)

        def d2s():
            return y.view(1, b, b, 32, 90, 90).permute(0, 3, 4, 1, 5, 2).reshape(1, 32, 360, 360)

        timed("s2d_b4", s2d)
        timed("d2s_b4", d2s)
        del x, y
        c = 4096
        x = torch.randn(1, c, 91, 91, device=dev)
        gy = torch.randn_like(x)
        wt = torch.randn(c, device=dev)
        bs = torch.randn(c, device=dev)
        rm = torch.zeros(c, device=dev)
        rv = torch.ones(c, device=dev)
        timed("bn_train_fwd", lambda: torch.ops.aten.native_batch_norm(x, wt, bs, rm, rv, True, 0.1, 1e-5))
        _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(x, wt, bs, rm, rv, True, 0.1, 1e-5)
        timed("bn_train_bwd",
              lambda: torch.ops.aten.native_batch_norm_backward(gy, x, wt, rm, rv, save_mean, save_invstd, True, 1e-5,
                                                                [True, True, True]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
