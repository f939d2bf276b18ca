// CPU optimizer kernels (float): one fused pass per parameter tensor. Scalars are prepared by
// core/optim.cpp exactly as PyTorch prepares them (double math, then cast to float), so that the
// per-element float arithmetic follows torch.optim's order of operations.
#pragma once
#include <cstdint>

namespace dl::cpu {

// SGD, torch.optim.SGD semantics: d = g + wd * p; buf = first ? d : momentum * buf + (1 - dampening) * d;
// d = nesterov ? d + momentum * buf : buf; p -= lr * d. `buf` is unused (may be null) when momentum == 0.
void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step);

// AdamW, torch.optim.AdamW semantics: p *= decay_scale (= 1 - lr * wd); m = beta1 * m + (1 - beta1) g;
// v = beta2 * v + (1 - beta2) g g; p += -step_size * m / (sqrt(v) / bc2_sqrt + eps),
// with step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t).
void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, float decay_scale, float beta1,
                float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                float bc2_sqrt, float eps);

// Sum of squares in double, in fixed-size blocks summed in a fixed order: the same result for
// every thread count.
double sum_squares(const float* x, int64_t n);
void scale_inplace(float* x, float a, int64_t n);

}  // namespace dl::cpu
