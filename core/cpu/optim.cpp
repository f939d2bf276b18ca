// CPU optimizer kernels: element-wise loops (OpenMP + simd), so results do not depend on the
// thread count; the gradient-norm reduction uses fixed blocks for the same reason.
#include "core/cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dl::cpu {

void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step) {
  const float one_minus_damp = 1.0f - dampening;
  const bool use_momentum = momentum != 0.0f;
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if (weight_decay != 0.0f) d = d + weight_decay * p[i];
    if (use_momentum) {
      float b = first_step ? d : buf[i] * momentum + one_minus_damp * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] + (-lr) * d;
  }
}

void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, float decay_scale, float beta1,
                float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                float bc2_sqrt, float eps) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float pi = p[i] * decay_scale;
    const float mi = m[i] * beta1 + one_minus_beta1 * gi;
    const float vi = v[i] * beta2 + one_minus_beta2 * gi * gi;  // addcmul order
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi + neg_step_size * (mi / denom);
  }
}

double sum_squares(const float* x, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(nb), 0.0);
#pragma omp parallel for if (nb > 1)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(x[i]) * x[i];
    part[static_cast<size_t>(b)] = s;
  }
  double total = 0;
  for (double s : part) total += s;
  return total;
}

void scale_inplace(float* x, float a, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

}  // namespace dl::cpu
