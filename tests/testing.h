// Shared test helpers: finite-difference gradient checks in float64, tensor comparison that
// reports the worst element and its index, and the GPU-skip guard.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"

namespace dl::testing {

struct Diff {
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1;
  double a = 0, b = 0;
  bool nan = false;
  std::string str() const {
    std::ostringstream os;
    os << "max_abs " << max_abs << " max_rel " << max_rel << " at index " << worst << " (" << a << " vs " << b << ")"
       << (nan ? " NaN!" : "");
    return os.str();
  }
};

// Compare element-wise; the relative error is |a - b| / max(|b|, floor).
inline Diff compare(const Tensor& got, const Tensor& want, double floor = 1e-3) {
  REQUIRE(got.shape() == want.shape());
  auto g = got.to(Device::CPU).to(DType::F64).to_vector<double>();
  auto w = want.to(Device::CPU).to(DType::F64).to_vector<double>();
  Diff d;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(w[i])) {
      d.nan = true;
      d.worst = int64_t(i);
      continue;
    }
    double ab = std::fabs(g[i] - w[i]);
    double rel = ab / std::max(std::fabs(w[i]), floor);
    if (rel > d.max_rel) {
      d.max_rel = rel;
      d.worst = int64_t(i);
      d.a = g[i];
      d.b = w[i];
    }
    d.max_abs = std::max(d.max_abs, ab);
  }
  return d;
}

#define DL_REQUIRE_CLOSE(got, want, tol)                       \
  do {                                                         \
    auto dl_d_ = ::dl::testing::compare((got), (want));        \
    INFO(dl_d_.str());                                         \
    REQUIRE(!dl_d_.nan);                                       \
    REQUIRE(dl_d_.max_rel <= (tol));                           \
  } while (0)

// Checks d/d(inputs) of sum(f(inputs) * R) (R random, fixed) against central differences in F64.
// Inputs must be F64 CPU tensors; those with requires_grad set are checked.
inline void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                      double eps = 1e-6, double tol = 1e-6, uint64_t seed = 7) {
  Tensor out = f(inputs);
  Rng rng(seed);
  Tensor r = Tensor::uniform(out.shape(), rng, -1.0, 1.0, DType::F64);
  auto objective = [&](const std::vector<Tensor>& in) {
    NoGradGuard ng;
    Tensor o = f(in);
    return sum(mul(o, r)).item();
  };
  for (auto& t : inputs)
    if (t.requires_grad()) t.zero_grad();
  Tensor loss = sum(mul(out, r));
  loss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& t = inputs[k];
    if (!t.requires_grad()) continue;
    REQUIRE(t.grad().defined());
    auto analytic = t.grad().to_vector<double>();
    double* p = t.data<double>();
    double worst = 0;
    int64_t worst_i = -1;
    double wa = 0, wn = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + eps;
      const double fp = objective(inputs);
      p[i] = orig - eps;
      const double fm = objective(inputs);
      p[i] = orig;
      const double num = (fp - fm) / (2 * eps);
      const double err = std::fabs(num - analytic[i]) / std::max(1.0, std::fabs(num));
      if (err > worst) {
        worst = err;
        worst_i = i;
        wa = analytic[i];
        wn = num;
      }
    }
    INFO("input " << k << " " << t.shape_str() << ": worst error " << worst << " at " << worst_i << " (analytic "
                  << wa << ", numeric " << wn << ")");
    REQUIRE(worst <= tol);
  }
}

inline Tensor param(const Shape& s, Rng& rng, double std = 1.0) {
  Tensor t = Tensor::randn(s, rng, std, DType::F64);
  t.set_requires_grad(true);
  return t;
}

// Skips the current test case when no GPU is usable (prints why, once per case).
#define DL_REQUIRE_GPU_OR_SKIP()                                            \
  do {                                                                      \
    if (!::dl::cuda_available()) {                                          \
      WARN("skipped: no usable CUDA device (or a build without CUDA)");     \
      return;                                                               \
    }                                                                       \
  } while (0)

}  // namespace dl::testing
