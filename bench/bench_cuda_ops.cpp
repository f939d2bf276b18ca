// CUDA op benchmark at DeeperLab's 1441x1441 shapes: depthwise 7x7 (fwd, grad-input, grad-weight),
// 1x1 and dense 3x3 convolution (fwd, grad-input, grad-weight), space_to_depth / depth_to_space, batch norm
// (train fwd incl. statistics, train bwd). Times are CUDA-event medians of the launchers alone;
// GB/s counts the minimal traffic (every input read once, every output written once) and is compared
// with a device-to-device copy measured in the same run; FLOP/s is compared with an assumed FP32 peak.
// bench/torch_cuda_ops.py does the same work in PyTorch (cuDNN) in the same run, for the ratio.
//
//   bench_cuda_ops [--runs N] [--no-torch] [--torch-script PATH] [--only SUBSTRING]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"
#ifdef DEEPERLAB_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/conv.h"
#include "cuda/handles.h"
#include "cuda/kernels.h"
#endif

#ifndef DEEPERLAB_WITH_CUDA
int main() {
  std::printf("bench_cuda_ops: built without the CUDA backend; nothing to measure\n");
  return 0;
}
#else

using namespace dl;

namespace {

constexpr double kPeakFp32Tflops = 67.0;  // H100 SXM FP32 (non-tensor) peak: an assumption, not measured

struct Args {
  int runs = 20;
  bool torch = true;
  std::string torch_script;
  std::string only;
};

// Median time in ms of `runs` executions of f (after warm-up), each bracketed by CUDA events.
double time_ms(const std::function<void()>& f, int runs) {
  cudaStream_t s = cuda::stream();
  for (int i = 0; i < 3; ++i) f();
  CUDA_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(a, s));
    f();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string name, shape;
  double ms, bytes, flops;
  size_t peak_mem;
};

std::string fmt_shape(const Shape& s) {
  return shape_str(s);
}

Tensor rnd(const Shape& s, Rng& rng) {
  return Tensor::randn(s, rng).to(Device::CUDA);
}

// Runs the PyTorch side; returns name -> median ms (empty when torch with CUDA is unavailable).
std::map<std::string, double> run_torch(const Args& args, std::string& which) {
  std::map<std::string, double> out;
  std::string script = args.torch_script;
  if (script.empty()) {
    for (const char* c :
         {"bench/torch_cuda_ops.py", "../bench/torch_cuda_ops.py", "../../bench/torch_cuda_ops.py"}) {
      if (FILE* f = std::fopen(c, "r")) {
        std::fclose(f);
        script = c;
        break;
      }
    }
  }
  if (script.empty()) {
    which = "torch script bench/torch_cuda_ops.py not found (run from the repo root or pass --torch-script)";
    return out;
  }
  // Debian's torch lives under /usr/bin/python3; on GPU machines the CUDA torch may be the python3 on PATH.
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(py) + " " + script + " --runs " + std::to_string(args.runs) +
                            (args.only.empty() ? "" : " --only " + args.only) + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) continue;
    char line[1024];
    std::string version, log;
    std::map<std::string, double> got;
    while (std::fgets(line, sizeof(line), p)) {
      char name[256];
      double ms = 0;
      char ver[256];
      if (std::sscanf(line, "TORCH_OK %255s", ver) == 1)
        version = ver;
      else if (std::sscanf(line, "TORCH %255s %lf", name, &ms) == 2)
        got[name] = ms;
      else
        log += line;
    }
    const int rc = pclose(p);
    if (!version.empty() && !got.empty()) {
      which = std::string(py) + " (torch " + version + ")";
      return got;
    }
    std::fprintf(stderr, "torch via %s unusable (exit %d): %s\n", py, rc, log.substr(0, 600).c_str());
  }
  which = "no python3 with CUDA-enabled torch found (tried /usr/bin/python3, python3)";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc)
      args.runs = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--no-torch"))
      args.torch = false;
    else if (!std::strcmp(argv[i], "--torch-script") && i + 1 < argc)
      args.torch_script = argv[++i];
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc)
      args.only = argv[++i];
    else {
      std::printf("usage: bench_cuda_ops [--runs N] [--no-torch] [--torch-script PATH] [--only SUBSTRING]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  try {
    if (!cuda::available()) {
      std::printf("bench_cuda_ops: no usable CUDA device (%s); nothing to measure\n",
                  cuda::unavailable_reason());
      return 0;
    }
    cuda::set_tf32(false);
    cudaStream_t s = cuda::stream();
    std::printf("device: %s\n", cuda::device_name());
    std::printf("dense convolution path: %s (DEEPERLAB_CONV_ALGO)\n",
                cuda::conv_algo() == cuda::ConvAlgo::Cudnn ? "cudnn" : "im2col");

    // Peak bandwidth: device-to-device copy of 1 GiB (read + write counted).
    double peak_gbs = 0;
    {
      const size_t bytes = size_t(1) << 30;
      void* a = cuda::device_alloc(bytes);
      void* b = cuda::device_alloc(bytes);
      const double ms =
          time_ms([&] { CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s)); }, 10);
      peak_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
      cuda::device_free(a, bytes);
      cuda::device_free(b, bytes);
      cuda::empty_cache();
    }
    std::printf("measured copy bandwidth: %.0f GB/s (device-to-device, read + write)\n", peak_gbs);
    std::printf("assumed FP32 peak: %.0f TFLOP/s (H100 SXM, non-tensor-core; not measured)\n",
                kPeakFp32Tflops);
    std::printf("TF32: off; runs per op: %d (median)\n\n", args.runs);

    std::vector<Row> rows;
    Rng rng(1);
    auto want = [&](const std::string& name) {
      return args.only.empty() || name.find(args.only) != std::string::npos;
    };
    auto bench = [&](const std::string& name, const Shape& shape, double bytes, double flops,
                     const std::function<void()>& f) {
      if (!want(name)) return;
      cuda::synchronize();
      cuda::reset_peak_bytes();
      const double ms = time_ms(f, args.runs);
      rows.push_back({name, fmt_shape(shape), ms, bytes, flops, cuda::peak_bytes()});
      std::printf("  %-28s %-20s %9.3f ms\n", name.c_str(), fmt_shape(shape).c_str(), ms);
      std::fflush(stdout);
    };

    // ---- depthwise 7x7 ----
    const Shape dw_shapes[] = {{1, 768, 91, 91}, {1, 4096, 91, 91}, {1, 256, 361, 361}};
    for (const auto& xs : dw_shapes) {
      const std::string tag = "c" + std::to_string(xs[1]) + "_" + std::to_string(xs[2]);
      if (!want("dw7_fwd_" + tag) && !want("dw7_bwd_input_" + tag) && !want("dw7_bwd_weight_" + tag))
        continue;
      Tensor x = rnd(xs, rng), w = rnd({xs[1], 1, 7, 7}, rng);
      const ConvGeom g = conv_geometry(xs, w.shape(), Conv2dOptions::same(7, 1, 1, xs[1]));
      Tensor y = Tensor::empty({g.n, g.c_out, g.h_out, g.w_out}, DType::F32, Device::CUDA);
      Tensor gx = Tensor::empty(xs, DType::F32, Device::CUDA),
             gw = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
      const double act = double(x.nbytes()), wb = double(w.nbytes()), fl = 2.0 * g.macs();
      bench("dw7_fwd_" + tag, xs, 2 * act + wb, fl,
            [&] { cuda::conv2d_fwd(y.data<float>(), x.data<float>(), w.data<float>(), nullptr, g, s); });
      bench("dw7_bwd_input_" + tag, xs, 2 * act + wb, fl,
            [&] { cuda::conv2d_bwd_input(gx.data<float>(), y.data<float>(), w.data<float>(), g, s); });
      bench("dw7_bwd_weight_" + tag, xs, 2 * act + wb, fl,
            [&] { cuda::conv2d_bwd_weight(gw.data<float>(), y.data<float>(), x.data<float>(), g, s); });
    }

    // ---- 1x1 convolution ----
    struct Pw {
      int64_t cin, cout, hw;
    };
    const Pw pws[] = {{768, 256, 91}, {4096, 4096, 91}};
    for (const auto& p : pws) {
      const std::string tag = std::to_string(p.cin) + "_" + std::to_string(p.cout);
      if (!want("pw_fwd_" + tag) && !want("pw_bwd_input_" + tag) && !want("pw_bwd_weight_" + tag)) continue;
      const Shape xs{1, p.cin, p.hw, p.hw};
      Tensor x = rnd(xs, rng), w = rnd({p.cout, p.cin, 1, 1}, rng);
      const ConvGeom g = conv_geometry(xs, w.shape(), Conv2dOptions());
      Tensor y = Tensor::empty({1, p.cout, p.hw, p.hw}, DType::F32, Device::CUDA);
      Tensor gx = Tensor::empty(xs, DType::F32, Device::CUDA),
             gw = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
      const double bytes = double(x.nbytes() + y.nbytes() + w.nbytes()), fl = 2.0 * g.macs();
      bench("pw_fwd_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_fwd(y.data<float>(), x.data<float>(), w.data<float>(), nullptr, g, s); });
      bench("pw_bwd_input_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_bwd_input(gx.data<float>(), y.data<float>(), w.data<float>(), g, s); });
      bench("pw_bwd_weight_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_bwd_weight(gw.data<float>(), y.data<float>(), x.data<float>(), g, s); });
    }

    // ---- dense 3x3 convolution (the path DEEPERLAB_CONV_ALGO selects): a 256-channel block at 91x91 and
    // the stride-2 stem on the 1441x1441 image ----
    struct Dense {
      int64_t cin, cout, hw, stride;
    };
    const Dense dens[] = {{256, 256, 91, 1}, {3, 32, 1441, 2}};
    for (const auto& d : dens) {
      const std::string tag =
          std::to_string(d.cin) + "_" + std::to_string(d.cout) + "_s" + std::to_string(d.stride);
      if (!want("conv3_fwd_" + tag) && !want("conv3_bwd_input_" + tag) && !want("conv3_bwd_weight_" + tag))
        continue;
      const Shape xs{1, d.cin, d.hw, d.hw};
      Tensor x = rnd(xs, rng), w = rnd({d.cout, d.cin, 3, 3}, rng);
      const ConvGeom g = conv_geometry(xs, w.shape(), Conv2dOptions::same(3, d.stride, 1, 1));
      Tensor y = Tensor::empty({g.n, g.c_out, g.h_out, g.w_out}, DType::F32, Device::CUDA);
      Tensor gx = Tensor::empty(xs, DType::F32, Device::CUDA),
             gw = Tensor::empty(w.shape(), DType::F32, Device::CUDA);
      const double bytes = double(x.nbytes() + y.nbytes() + w.nbytes()), fl = 2.0 * g.macs();
      bench("conv3_fwd_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_fwd(y.data<float>(), x.data<float>(), w.data<float>(), nullptr, g, s); });
      bench("conv3_bwd_input_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_bwd_input(gx.data<float>(), y.data<float>(), w.data<float>(), g, s); });
      bench("conv3_bwd_weight_" + tag, xs, bytes, fl,
            [&] { cuda::conv2d_bwd_weight(gw.data<float>(), y.data<float>(), x.data<float>(), g, s); });
    }

    // ---- space_to_depth / depth_to_space (360 = the multiple of 4 next to 361) ----
    if (want("s2d") || want("d2s")) {
      const Shape xs{1, 32, 360, 360};
      Tensor x = rnd(xs, rng);
      Tensor y = Tensor::empty({1, 32 * 16, 90, 90}, DType::F32, Device::CUDA);
      Tensor z = Tensor::empty(xs, DType::F32, Device::CUDA);
      const double bytes = 2.0 * double(x.nbytes());
      bench("s2d_b4", xs, bytes, 0,
            [&] { cuda::space_to_depth_fwd(y.data<float>(), x.data<float>(), 1, 32, 360, 360, 4, s); });
      bench("d2s_b4", {1, 512, 90, 90}, bytes, 0,
            [&] { cuda::depth_to_space_fwd(z.data<float>(), y.data<float>(), 1, 512, 90, 90, 4, s); });
    }

    // ---- batch norm (training) ----
    if (want("bn")) {
      const int64_t n = 1, c = 4096, hw = 91 * 91;
      const Shape xs{n, c, 91, 91};
      Tensor x = rnd(xs, rng), gy = rnd(xs, rng), w = rnd({c}, rng), b = rnd({c}, rng);
      Tensor y = Tensor::empty(xs, DType::F32, Device::CUDA),
             gx = Tensor::empty(xs, DType::F32, Device::CUDA);
      Tensor mean = Tensor::empty({c}, DType::F32, Device::CUDA),
             var = Tensor::empty({c}, DType::F32, Device::CUDA);
      Tensor invstd = Tensor::empty({c}, DType::F32, Device::CUDA),
             rm = Tensor::zeros({c}, DType::F32, Device::CUDA);
      Tensor rv = Tensor::ones({c}, DType::F32, Device::CUDA);
      Tensor gw = Tensor::empty({c}, DType::F32, Device::CUDA),
             gb = Tensor::empty({c}, DType::F32, Device::CUDA);
      const double act = double(x.nbytes());
      bench("bn_train_fwd", xs, 2 * act, 0, [&] {
        cuda::batch_norm_stats(mean.data<float>(), var.data<float>(), x.data<float>(), n, c, hw, s);
        cuda::batch_norm_update_running(rm.data<float>(), rv.data<float>(), mean.data<float>(),
                                        var.data<float>(), c, 0.1f, float(hw) / float(hw - 1), s);
        cuda::batch_norm_invstd(invstd.data<float>(), var.data<float>(), c, 1e-5f, s);
        cuda::batch_norm_fwd(y.data<float>(), x.data<float>(), mean.data<float>(), invstd.data<float>(),
                             w.data<float>(), b.data<float>(), n, c, hw, s);
      });
      bench("bn_train_bwd", xs, 3 * act, 0, [&] {
        cuda::batch_norm_bwd_train(gx.data<float>(), gw.data<float>(), gb.data<float>(), gy.data<float>(),
                                   x.data<float>(), mean.data<float>(), invstd.data<float>(), w.data<float>(),
                                   n, c, hw, s);
      });
    }
    cuda::synchronize();

    std::map<std::string, double> torch;
    std::string which = "skipped (--no-torch)";
    if (args.torch) {
      std::printf("\nrunning the PyTorch side...\n");
      std::fflush(stdout);
      torch = run_torch(args, which);
    }
    std::printf("\nPyTorch: %s\n\n", which.c_str());
    std::printf(
        "| op | input | ms | GB/s | %% copy BW | GFLOP/s | %% FP32 peak | peak MiB | torch ms | ours/torch "
        "|\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
      const double gbs = r.bytes / (r.ms * 1e-3) / 1e9;
      const double gfs = r.flops / (r.ms * 1e-3) / 1e9;
      char tcol[64] = "-", ratio[64] = "-", fcol[64] = "-", fpk[64] = "-";
      auto it = torch.find(r.name);
      if (it != torch.end() && it->second > 0) {
        std::snprintf(tcol, sizeof(tcol), "%.3f", it->second);
        std::snprintf(ratio, sizeof(ratio), "%.2f", r.ms / it->second);
      }
      if (r.flops > 0) {
        std::snprintf(fcol, sizeof(fcol), "%.0f", gfs);
        std::snprintf(fpk, sizeof(fpk), "%.1f", 100.0 * gfs / (kPeakFp32Tflops * 1e3));
      }
      std::printf("| %s | %s | %.3f | %.0f | %.1f | %s | %s | %.0f | %s | %s |\n", r.name.c_str(),
                  r.shape.c_str(), r.ms, gbs, 100.0 * gbs / peak_gbs, fcol, fpk,
                  double(r.peak_mem) / (1024.0 * 1024.0), tcol, ratio);
    }
    std::printf(
        "\nGB/s: minimal traffic (inputs read once, outputs written once). peak MiB: allocator peak while "
        "the "
        "op ran, its preallocated inputs and outputs included. ours/torch < 1: ours is faster.\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_ops: %s\n", e.what());
    return 1;
  }
}

#endif  // DEEPERLAB_WITH_CUDA
