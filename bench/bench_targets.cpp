// Target building at training resolution: a generated 1441x1441 panoptic map with 50 thing
// instances (ellipses, some overlapping, 5 of them crowd) on two stuff regions, one thread,
// median of several runs; plus peak host memory, and the same work done by a vectorised NumPy
// implementation (bench/targets_ref.py) in the same run when /usr/bin/python3 has NumPy.
// Also times deeperlab_loss forward + backward on the targets (19 classes, random head outputs),
// on the CPU and, with --cuda, on the GPU.
// Usage: bench_targets [size=1441] [instances=50] [runs=9] [--cuda]
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "bench/bench_util.h"
#include "core/rng.h"
#include "core/storage.h"
#include "parser/losses.h"
#include "parser/targets.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

using namespace dl;
using namespace dl::bench;

namespace {

PanopticMap make_scene(int64_t size, int n, uint64_t seed) {
  Rng rng(seed);
  PanopticMap m;
  m.height = m.width = size;
  m.ids.assign(size * size, 0);
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) m.ids[y * size + x] = y < size / 3 ? 1 : 2;
  m.segments.push_back({1, 1, false, 0, {}});
  m.segments.push_back({2, 2, false, 0, {}});
  for (int i = 0; i < n; ++i) {
    const int32_t id = 100 + i;
    const double cy = rng.uniform(0, double(size)), cx = rng.uniform(0, double(size));
    const double ry = rng.uniform(8, double(size) / 8), rx = rng.uniform(8, double(size) / 8);
    const int64_t y0 = std::max<int64_t>(0, int64_t(cy - ry)),
                  y1 = std::min<int64_t>(size - 1, int64_t(cy + ry));
    const int64_t x0 = std::max<int64_t>(0, int64_t(cx - rx)),
                  x1 = std::min<int64_t>(size - 1, int64_t(cx + rx));
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) {
        const double u = (y - cy) / ry, v = (x - cx) / rx;
        if (u * u + v * v <= 1) m.ids[y * size + x] = id;
      }
    m.segments.push_back({id, 3, i % 10 == 9, 0, {}});
  }
  return m;
}

// CPU time of this thread (user + system, page faults included): robust on a loaded machine.
double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

// deeperlab_loss forward + backward on the targets `t` (already on the device), median ms.
double time_loss(const Targets& t, int64_t k, int runs, Device d) {
  const int64_t h = t.semantic.size(1), w = t.semantic.size(2);
  Rng rng(5);
  auto leaf = [&](int64_t c, double sd) {
    Tensor x = Tensor::randn({1, c, h, w}, rng, sd).to(d);
    x.set_requires_grad(true);
    return x;
  };
  HeadOutputs out{leaf(k, 1.0), leaf(5, 1.0), leaf(10, 20.0), leaf(10, 5.0), leaf(16, 20.0)};
  // The scene's labels use train ids 0..2 of the 19 logits: the softmax still runs over all 19.
  LossConfig cfg;
  std::vector<double> ts;
  for (int r = 0; r < runs; ++r) {
#ifdef DEEPERLAB_WITH_CUDA
    if (d == Device::CUDA) cuda::synchronize();
#endif
    const double t0 = 1e3 * now_s();
    LossTerms l = deeperlab_loss(out, t, cfg, 0);
    l.total.backward();
#ifdef DEEPERLAB_WITH_CUDA
    if (d == Device::CUDA) cuda::synchronize();
#endif
    ts.push_back(1e3 * now_s() - t0);
  }
  return median(ts);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 1441;
  int n = 50, runs = 9;
  bool use_cuda = false;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cuda") == 0)
      use_cuda = true;
    else
      pos.push_back(argv[i]);
  }
  if (pos.size() > 0) size = std::atoll(pos[0].c_str());
  if (pos.size() > 1) n = std::atoi(pos[1].c_str());
  if (pos.size() > 2) runs = std::max(1, std::atoi(pos[2].c_str()));

  try {
    PanopticMap m = make_scene(size, n, 2026);
    ClassMap cm({{1, "sky", false, {}}, {2, "road", false, {}}, {3, "car", true, {}}});
    TargetConfig cfg;  // R = 25
    std::vector<double> t_cpu, t_thread;
    memory_reset_peak(Device::CPU);
    const size_t base = memory_current(Device::CPU);
    size_t insts = 0;
    for (int r = 0; r < runs; ++r) {
      const double t0 = 1e3 * now_s(), c0 = thread_cpu_ms();
      Targets t = build_targets(m, cm, cfg, "bench");
      t_thread.push_back(thread_cpu_ms() - c0);
      t_cpu.push_back(1e3 * now_s() - t0);
      insts = t.instances[0].size();
    }
    const double peak_mb = double(memory_peak(Device::CPU) - base) / (1 << 20);
    const double ours = median(t_cpu);
    // Bytes written: 50 float channels (the short mask shares the heatmap) + semantic (I32) + 2 weights.
    const double gbs = 53.0 * 4.0 * double(size * size) / (ours * 1e6);
    std::printf(
        "targets %lldx%lld, %zu instances (+%d crowd), R=%.0f, 1 thread: median %.1f ms wall, %.1f ms thread "
        "CPU time over %d runs (%.1f GB/s written), peak host memory %.0f MiB\n",
        (long long)size, (long long)size, insts, n / 10, cfg.radius, ours, median(t_thread), runs, gbs,
        peak_mb);

    {
      Targets t = build_targets(m, cm, cfg, "bench");
      std::printf(
          "deeperlab_loss forward + backward, %lldx%lld, 19 classes, CPU (%d OpenMP threads allowed): "
          "median %.1f ms over %d runs\n",
          (long long)size, (long long)size, omp_get_max_threads(),
          time_loss(t, 19, std::max(1, runs / 3), Device::CPU), std::max(1, runs / 3));
    }
#ifdef DEEPERLAB_WITH_CUDA
    if (use_cuda && cuda::available()) {
      std::vector<double> t_gpu;
      for (int r = 0; r < runs; ++r) {
        cuda::synchronize();
        const double t0 = 1e3 * now_s();
        Targets t = build_targets_on(m, cm, cfg, Device::CUDA, "bench");
        cuda::synchronize();
        t_gpu.push_back(1e3 * now_s() - t0);
      }
      std::printf("targets on %s (CPU pixel pass + GPU fill): median %.1f ms\n", cuda::device_name(),
                  median(t_gpu));
      Targets tg = build_targets_on(m, cm, cfg, Device::CUDA, "bench");
      std::printf(
          "deeperlab_loss forward + backward on %s, %lldx%lld, 19 classes: median %.2f ms over %d runs\n",
          cuda::device_name(), (long long)size, (long long)size, time_loss(tg, 19, runs, Device::CUDA), runs);
    }
#else
    if (use_cuda) std::printf("--cuda: this build has no CUDA backend\n");
#endif

    // The same work in NumPy (one process, same scene written as raw int32 ids).
    const std::string ids_path = "/tmp/deeperlab_bench_targets_ids.bin";
    {
      std::ofstream f(ids_path, std::ios::binary);
      f.write(reinterpret_cast<const char*>(m.ids.data()), std::streamsize(m.ids.size() * sizeof(int32_t)));
    }
    const std::string cmd = "/usr/bin/python3 bench/targets_ref.py " + ids_path + " " + std::to_string(size) +
                            " " + std::to_string(n) + " " + std::to_string(runs) + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    double ref = -1;
    if (p) {
      if (std::fscanf(p, "%lf", &ref) != 1) ref = -1;
      pclose(p);
    }
    std::remove(ids_path.c_str());
    if (ref > 0)
      std::printf("numpy reference (bench/targets_ref.py): median %.1f ms -> ours is %.1fx faster\n", ref,
                  ref / ours);
    else
      std::printf(
          "numpy reference: not available (run from the repository root with /usr/bin/python3 + numpy)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_targets: %s\n", e.what());
    return 1;
  }
  return 0;
}
