// `deeperlab bench`: times the network of a config on random input: inference (eval mode, no
// autograd) and a training step (train mode, forward + backward of a sum over every head).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "examples/cli.h"
#include "parser/config.h"
#include "parser/trainer.h"

namespace dl::cli {

int cmd_bench(int argc, char** argv) {
  ArgParser ap(
      "bench",
      "Time the network of a config on random input: inference (eval mode, no autograd) and a training\n"
      "step (train mode, forward + backward of the mean of every head output; no optimizer). Prints ms per\n"
      "iteration, images/s and the peak resident memory. Per-op benchmarks: build/bench_*.");
  ap.option("config", "config JSON", "", true)
      .option("size", "input HxW", "513x513")
      .option("batch", "images per iteration (>= 2 for --mode train)", "2")
      .option("iters", "timed iterations (after one warm-up)", "3")
      .option("mode", "infer | train | both", "both")
      .option("device", "cpu | cuda", "cpu")
      .option("threads", "CPU threads (0 = all cores)", "0");
  if (!ap.parse(argc, argv)) return 0;
  set_threads(ap.get_int("threads"));
  const Config cfg = load_config(ap.get("config"));
  long long h = 0, w = 0;
  DL_CHECK(std::sscanf(ap.get("size").c_str(), "%lldx%lld", &h, &w) == 2 && h > 0 && w > 0,
           "bench: --size expects HxW, got '" << ap.get("size") << "'");
  const int64_t n = ap.get_int("batch"), iters = ap.get_int("iters");
  DL_CHECK(n > 0 && iters > 0, "bench: --batch and --iters must be positive");
  const std::string mode = ap.get("mode");
  DL_CHECK(mode == "infer" || mode == "train" || mode == "both",
           "bench: --mode must be infer, train or both");
  const Device dev = parse_device(ap.get("device"));
  DeeperLab net(cfg.model);
  net.to(dev);
  Rng rng(1);
  Tensor x = Tensor::uniform({n, 3, h, w}, rng, -1.0, 1.0).to(dev);
  auto time_it = [&](const char* what, auto&& fn) {
    fn();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    std::printf("%-6s %lldx%lldx%lld  %9.1f ms/iter  %8.3f images/s\n", what, (long long)n, h, w, s * 1e3,
                n / s);
  };
  if (mode != "train") {
    net.eval();
    time_it("infer", [&] {
      NoGradGuard ng;
      HeadOutputs o = net.forward(x);
      (void)sum(o.semantic).item();  // waits for the device
    });
  }
  if (mode != "infer") {
    DL_CHECK(n >= 2, "bench: --mode train needs --batch >= 2 (BatchNorm in training mode)");
    net.train();
    const HostCacheScope host_cache;  // as the trainer does: steps reuse the big host buffers
    time_it("train", [&] {
      HeadOutputs o = net.forward(x);
      Tensor l =
          add(add(add(mean(o.semantic), mean(o.heatmap)), add(mean(o.long_offsets), mean(o.short_offsets))),
              mean(o.mid_offsets));
      net.zero_grad();
      l.backward();
      (void)l.item();
    });
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("peak RSS %.0f MiB\n", ru.ru_maxrss / 1024.0);
  return 0;
}

}  // namespace dl::cli
