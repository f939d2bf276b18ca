// CPU convolution benchmark at the DeeperLab feature-map shapes: conv 1x1, depthwise 7x7 and dense
// 3x3, forward and backward (grad-input + grad-weight), median of several runs, GFLOP/s and the peak
// resident memory of each case; then runs bench/torch_ops.py (PyTorch CPU, same cases, same thread
// count) in the same run and prints ours/torch per row. DEEPERLAB_TORCH_BENCH=0 skips PyTorch.
// Non-obvious decision: memory is the process's resident-set high-water mark (VmHWM, reset per case
// through /proc/self/clear_refs) minus the resident size before the case (after malloc_trim), so it counts
// the inputs, outputs and every workspace (the im2col column buffer is not a Tensor), the same way for both
// sides. The header names the float GEMM in use (our AVX-512 kernel, or OpenBLAS with the kernel set
// OPENBLAS_CORETYPE picks; the GEMM rows depend on it).
#include <cblas.h>
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/cpu/kernels.h"
#include "core/cpu/sgemm.h"
#include "core/ops.h"
#include "core/rng.h"

using namespace dl;
using namespace dl::bench;

namespace {

struct Case {
  std::string name;  // same key as in bench/torch_ops.py
  int64_t c_in, c_out, h, k, groups;
  bool backward;
};

// The cases; bench/torch_ops.py builds the same list.
std::vector<Case> make_cases() {
  std::vector<Case> cases;
  const int64_t sizes[][2] = {{768, 33}, {4096, 33}, {256, 129}, {32, 257}};
  for (bool bwd : {false, true}) {
    for (auto s : sizes) cases.push_back({"conv1x1", s[0], s[0], s[1], 1, 1, bwd});
    for (auto s : sizes) cases.push_back({"dw7x7", s[0], s[0], s[1], 7, s[0], bwd});
    // Dense 3x3 at 4096 channels is skipped: 604 MB of weights and 329 GFLOP per forward.
    for (auto s : sizes)
      if (s[0] != 4096) cases.push_back({"conv3x3", s[0], s[0], s[1], 3, 1, bwd});
  }
  for (auto& c : cases) {
    std::ostringstream os;
    os << c.name << " " << c.c_in << "->" << c.c_out << " " << c.h << "x" << c.h
       << (c.backward ? " bwd" : " fwd");
    c.name = os.str();
  }
  return cases;
}

struct Result {
  double ms = 0, gflops = 0, peak_mb = 0;
};

Result run_case(const Case& c, int min_reps, double budget_s, bool cpu_clock) {
  Rng rng(1);
  Conv2dOptions opt = Conv2dOptions::same(c.k, 1, 1, c.groups);
  Tensor x = Tensor::randn({1, c.c_in, c.h, c.h}, rng);
  Tensor w = Tensor::randn({c.c_out, c.c_in / c.groups, c.k, c.k}, rng, 0.05);
  const ConvGeom g = conv_geometry(x.shape(), w.shape(), opt);
  Tensor gy = c.backward ? Tensor::randn({g.n, g.c_out, g.h_out, g.w_out}, rng) : Tensor();
  malloc_trim(0);  // hand freed memory back so the baseline is this case's inputs alone
  const long rss0 = proc_kb("VmRSS:");
  reset_hwm();
  auto once = [&]() {
    if (!c.backward) {
      Tensor y = conv2d(x, w, Tensor(), opt);
    } else {
      // What the autograd node does: allocate and fill grad-input and grad-weight.
      Tensor gx = Tensor::empty(x.shape()), gw = Tensor::empty(w.shape());
      cpu::conv2d_bwd_input(gx.data<float>(), gy.data<float>(), w.data<float>(), g);
      cpu::conv2d_bwd_weight(gw.data<float>(), gy.data<float>(), x.data<float>(), g);
    }
  };
  once();  // warm-up (BLAS thread pool, page faults)
  std::vector<double> times;
  const double start = now_s();
  while (int(times.size()) < min_reps || (now_s() - start < budget_s && times.size() < 50)) {
    const double t0 = cpu_clock ? process_cpu_s() : now_s();
    once();
    times.push_back((cpu_clock ? process_cpu_s() : now_s()) - t0);
  }
  Result r;
  r.ms = 1e3 * median(times);
  r.gflops = 2.0 * g.macs() * (c.backward ? 2 : 1) / (r.ms * 1e-3) / 1e9;
  r.peak_mb = double(proc_kb("VmHWM:") - rss0) / 1024.0;
  return r;
}

// Runs bench/torch_ops.py and parses its "ROW<TAB>name<TAB>ms<TAB>gflops<TAB>peak_mb" lines.
std::map<std::string, Result> run_torch(int threads, int min_reps, double budget_s, const std::string& only,
                                        bool cpu_clock) {
  std::map<std::string, Result> out;
  // The script beside this source file, else the one under the working directory.
  std::string script = std::string(__FILE__);
  script = script.substr(0, script.find_last_of('/') + 1) + "torch_ops.py";
  if (!std::ifstream(script).good()) script = "bench/torch_ops.py";
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 " << script << " --threads " << threads << " --reps " << min_reps << " --budget "
      << budget_s << " --only '" << only << "' --machine" << (cpu_clock ? " --cpu-time" : "");
  FILE* p = popen(cmd.str().c_str(), "r");
  if (!p) {
    std::fprintf(stderr, "could not run: %s\n", cmd.str().c_str());
    return out;
  }
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) {
    std::string line(buf);
    if (line.rfind("ROW\t", 0) != 0) {
      std::fputs(buf, stderr);
      continue;
    }
    std::vector<std::string> f;
    std::stringstream ss(line.substr(4));
    std::string tok;
    while (std::getline(ss, tok, '\t')) f.push_back(tok);
    if (f.size() >= 4)
      out[f[0]] = {std::atof(f[1].c_str()), std::atof(f[2].c_str()), std::atof(f[3].c_str())};
  }
  const int rc = pclose(p);
  if (rc != 0) std::fprintf(stderr, "bench/torch_ops.py exited with status %d\n", rc);
  return out;
}

void usage() {
  std::puts(
      "bench_cpu_ops: CPU convolution at the DeeperLab shapes, ours vs PyTorch CPU\n"
      "  --threads N   OpenMP threads for our kernels and GEMM panels, torch.set_num_threads (default 2)\n"
      "  --reps N      minimum timed runs per case (default 3; median reported)\n"
      "  --budget S    keep repeating a case for up to S seconds (default 1.0)\n"
      "  --only STR    run only the cases whose name contains STR\n"
      "  --cpu-time    time with the process CPU clock instead of the wall clock (use with --threads 1\n"
      "                on a loaded machine: waiting for a core is not counted)\n"
      "It runs /usr/bin/python3 bench/torch_ops.py (found beside this source file or under the working\n"
      "directory);"
      " env DEEPERLAB_TORCH_BENCH=0 skips PyTorch.");
}

}  // namespace

extern "C" char* openblas_get_corename(void);

int main(int argc, char** argv) {
  int threads = 2, reps = 3;
  double budget = 1.0;
  std::string only;
  bool cpu_clock = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return next_arg(i, argc, argv); };
    if (a == "--threads") {
      threads = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--reps") {
      reps = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--budget") {
      budget = std::atof(next().c_str());
    } else if (a == "--only") {
      only = next();
    } else if (a == "--cpu-time") {
      cpu_clock = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  omp_set_num_threads(threads);
  const char* env = std::getenv("DEEPERLAB_TORCH_BENCH");
  const bool with_torch = !(env && std::string(env) == "0");

  std::vector<Case> cases;
  for (auto& c : make_cases())
    if (only.empty() || c.name.find(only) != std::string::npos) cases.push_back(c);
  std::map<std::string, Result> ours;
  for (auto& c : cases) {
    ours[c.name] = run_case(c, reps, budget, cpu_clock);
    std::fprintf(stderr, "  %-28s %9.2f ms\n", c.name.c_str(), ours[c.name].ms);
  }
  std::map<std::string, Result> torch;
  if (with_torch) torch = run_torch(threads, reps, budget, only, cpu_clock);

  std::printf(
      "threads %d, float32, batch 1, 'same' padding, stride 1; median of >= %d runs (%s); float GEMM %s "
      "(OpenBLAS core %s)\n",
      threads, reps, cpu_clock ? "process CPU time" : "wall clock", cpu::sgemm_backend(), openblas_get_corename());
  std::printf(
      "| case | ours ms | ours GFLOP/s | ours peak MB | torch ms | torch GFLOP/s | torch peak MB | "
      "ours/torch |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (auto& c : cases) {
    const Result& o = ours[c.name];
    auto it = torch.find(c.name);
    if (it == torch.end()) {
      std::printf("| %s | %.2f | %.1f | %.0f | - | - | - | - |\n", c.name.c_str(), o.ms, o.gflops, o.peak_mb);
    } else {
      const Result& t = it->second;
      std::printf("| %s | %.2f | %.1f | %.0f | %.2f | %.1f | %.0f | %.2f |\n", c.name.c_str(), o.ms, o.gflops,
                  o.peak_mb, t.ms, t.gflops, t.peak_mb, o.ms / t.ms);
    }
  }
  return 0;
}
