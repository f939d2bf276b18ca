// Single-thread SGEMM: our kernel (core/cpu/sgemm.cpp) against OpenBLAS at the GEMM shapes of the
// conv 1x1 benchmark cases (forward, grad-input, grad-weight), median of several runs, GFLOP/s.
// Usage: bench_gemm [reps=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/bench_util.h"
#include "core/cpu/sgemm.h"
#include "core/rng.h"

namespace {
struct Shape {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

template <class F>
double median_ms(int reps, F&& f) {
  using dl::bench::now_s;
  std::vector<double> t;
  f();  // warm-up: page faults, packing buffers
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    f();
    t.push_back(1e3 * (now_s() - t0));
  }
  return dl::bench::median(t);
}
}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  // conv 1x1 with C channels on an S x S map: fwd Y = W X, grad-input W^T gY, grad-weight gY X^T.
  std::vector<Shape> shapes;
  const int64_t sizes[][2] = {{768, 33}, {4096, 33}, {256, 129}, {32, 257}};
  for (auto s : sizes) {
    const int64_t c = s[0], hw = s[1] * s[1];
    shapes.push_back({"fwd   ", false, false, c, hw, c});
    shapes.push_back({"gradin", true, false, c, hw, c});
    shapes.push_back({"gradw ", false, true, c, c, hw});
  }
  std::printf("single thread, backend %s; median of %d runs\n", dl::cpu::sgemm_backend(), reps);
  std::printf("| gemm | M | N | K | ours ms | ours GFLOP/s | openblas ms | openblas GFLOP/s | ours/openblas |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  dl::Rng rng(1);
  for (const auto& s : shapes) {
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.k * s.n)), c(size_t(s.m * s.n));
    for (auto& v : a) v = float(rng.uniform(-1, 1));
    for (auto& v : b) v = float(rng.uniform(-1, 1));
    const double ours = median_ms(reps, [&] {
      dl::cpu::sgemm(s.ta, s.tb, s.m, s.n, s.k, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n);
    });
    const double blas = median_ms(reps, [&] {
      dl::cpu::sgemm_openblas(s.ta, s.tb, s.m, s.n, s.k, a.data(), lda, b.data(), ldb, 0.f, c.data(), s.n);
    });
    const double gf = 2e-6 * double(s.m) * double(s.n) * double(s.k);
    std::printf("| %s %c%c | %lld | %lld | %lld | %.2f | %.1f | %.2f | %.1f | %.2f |\n", s.name, s.ta ? 'T' : 'N',
                s.tb ? 'T' : 'N', (long long)s.m, (long long)s.n, (long long)s.k, ours, gf / ours, blas,
                gf / blas, ours / blas);
  }
}
