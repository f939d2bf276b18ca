// Whole-network CPU benchmark: DeeperLab forward (no grad) and forward+backward (loss = sum of every
// head output; eval-mode BatchNorm, since batch 1 cannot train the image-pooling BN) at 513x513,
// batch 1, for the shipped configs; then the same work in PyTorch (bench/torch_network.py running
// tools/torch_deeperlab.py) in the same run with the same thread count, and ours/torch per row.
// Memory: the process's resident high-water mark (VmHWM, reset per case through
// /proc/self/clear_refs) minus the resident size before the case, measured the same way on both
// sides; our tensor allocator's own peak is printed too. DEEPERLAB_TORCH_BENCH=0 skips PyTorch.
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/ops.h"
#include "core/rng.h"
#include "parser/model.h"

using namespace dl;
using namespace dl::bench;

namespace {

struct Result {
  double ms = 0, peak_mb = 0, tensor_peak_mb = 0;
};

Result run_case(DeeperLab& model, const Tensor& x, bool backward, int reps) {
  malloc_trim(0);
  const long rss0 = proc_kb("VmRSS:");
  reset_hwm();
  memory_reset_peak(Device::CPU);
  const size_t base = memory_current(Device::CPU);
  std::vector<double> times;
  for (int r = 0; r <= reps; ++r) {  // the first run warms up
    const double t0 = now_s();
    if (backward) {
      model.zero_grad();
      HeadOutputs h = model.forward(x);
      Tensor loss =
          add(add(add(add(sum(h.semantic), sum(h.heatmap)), sum(h.long_offsets)), sum(h.short_offsets)),
              sum(h.mid_offsets));
      loss.backward();
    } else {
      NoGradGuard ng;
      model.forward(x);
    }
    times.push_back(now_s() - t0);
  }
  Result res;
  std::sort(times.begin() + 1, times.end());
  res.ms = times[1 + (times.size() - 1) / 2] * 1000.0;
  if (reps % 2 == 0) res.ms = 0.5 * (times[reps / 2] + times[reps / 2 + 1]) * 1000.0;
  res.peak_mb = double(proc_kb("VmHWM:") - rss0) / 1024.0;
  res.tensor_peak_mb = double(memory_peak(Device::CPU) - base) / (1024.0 * 1024.0);
  return res;
}

std::map<std::string, Result> run_torch(const std::vector<std::string>& configs, const std::string& size,
                                        int threads, int reps) {
  std::map<std::string, Result> out;
  std::string script = __FILE__;
  script = script.substr(0, script.find_last_of('/') + 1) + "torch_network.py";
  if (!std::ifstream(script).good()) script = "bench/torch_network.py";
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 " << script << " --machine --size " << size << " --threads " << threads
      << " --reps " << reps;
  for (const auto& c : configs) cmd << " --config " << c;
  FILE* p = popen(cmd.str().c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) {
    std::istringstream is(buf);
    std::string tag, name, ms, mb;
    if (!std::getline(is, tag, '\t') || tag != "ROW") continue;
    std::getline(is, name, '\t');
    std::getline(is, ms, '\t');
    std::getline(is, mb, '\t');
    out[name] = {std::atof(ms.c_str()), std::atof(mb.c_str()), 0};
  }
  const int rc = pclose(p);
  if (rc != 0) std::fprintf(stderr, "%s exited with status %d\n", script.c_str(), rc);
  return out;
}

std::string basename(const std::string& p) {
  return p.substr(p.find_last_of('/') + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> configs;
  std::string size = "513x513";
  int threads = 2, reps = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return next_arg(i, argc, argv); };
    if (a == "--config") {
      configs.push_back(next());
    } else if (a == "--size") {
      size = next();
    } else if (a == "--threads") {
      threads = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--reps") {
      reps = std::max(1, std::atoi(next().c_str()));
    } else {
      std::printf(
          "usage: bench_network [--config FILE]... [--size HxW] [--threads N] [--reps R]\n"
          "  defaults: examples/configs/wider_mnv2.json and examples/configs/xception71.json, 513x513,\n"
          "  2 threads, median of 2 runs after one warm-up. Runs /usr/bin/python3 bench/torch_network.py "
          "for\n"
          "  the PyTorch column (DEEPERLAB_TORCH_BENCH=0 skips it). Run from the repository root.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (configs.empty()) configs = {"examples/configs/wider_mnv2.json", "examples/configs/xception71.json"};
  const auto x_pos = size.find('x');
  const int64_t h = std::atoll(size.substr(0, x_pos).c_str()), w = std::atoll(size.substr(x_pos + 1).c_str());
  omp_set_num_threads(threads);
  std::printf("DeeperLab CPU, batch 1, %lldx%lld, float32, %d threads, eval-mode BN, median of %d runs\n",
              (long long)h, (long long)w, threads, reps);
  std::vector<std::pair<std::string, Result>> ours;
  for (const auto& cfg_path : configs) {
    const Config cfg = load_config(cfg_path);
    DeeperLab model(cfg.model);
    model.eval();
    Rng rng(1);
    Tensor x = Tensor::uniform({1, 3, h, w}, rng, -1, 1);
    const double macs = count_macs(model, h, w);
    for (bool bwd : {false, true}) {
      const std::string name = basename(cfg_path) + (bwd ? " fwd+bwd" : " fwd");
      Result r = run_case(model, x, bwd, reps);
      std::printf("  ours  %-28s %10.1f ms  %7.1f GMAC/s  peak %8.1f MB (tensors %8.1f MB)\n", name.c_str(),
                  r.ms, macs * (bwd ? 3 : 1) / (r.ms * 1e6), r.peak_mb, r.tensor_peak_mb);
      std::fflush(stdout);
      ours.emplace_back(name, r);
    }
  }
  const char* env = std::getenv("DEEPERLAB_TORCH_BENCH");
  if (env && std::string(env) == "0") return 0;
  auto torch = run_torch(configs, size, threads, reps);
  std::printf(
      "\n| case | ours ms | torch ms | ours/torch | ours peak MB | torch peak MB "
      "|\n|---|---|---|---|---|---|\n");
  for (const auto& [name, r] : ours) {
    auto it = torch.find(name);
    if (it == torch.end()) {
      std::printf("| %s | %.1f | - | - | %.1f | - |\n", name.c_str(), r.ms, r.peak_mb);
      continue;
    }
    std::printf("| %s | %.1f | %.1f | %.2f | %.1f | %.1f |\n", name.c_str(), r.ms, it->second.ms,
                r.ms / it->second.ms, r.peak_mb, it->second.peak_mb);
  }
  return 0;
}
