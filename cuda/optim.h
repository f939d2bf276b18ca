// CUDA optimizer kernels (float): the mirror of core/cpu/optim.h, one fused kernel per parameter
// tensor, enqueued on `s`. Plain C++ header.
#pragma once
#include <cstdint>

#include "cuda/runtime.h"

namespace dl::cuda {

void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step, cudaStream_t s);
void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, float decay_scale, float beta1,
                float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                float bc2_sqrt, float eps, cudaStream_t s);

// Deterministic sum of squares: sum_squares_partial writes exactly kSumSquaresBlocks partial sums
// (double) for x; sum_f64 then adds n doubles into out[0] in a fixed order (one block).
constexpr int kSumSquaresBlocks = 256;
void sum_squares_partial(double* partials, const float* x, int64_t n, cudaStream_t s);
void sum_f64(double* out, const double* x, int64_t n, cudaStream_t s);
void scale_inplace(float* x, float a, int64_t n, cudaStream_t s);

}  // namespace dl::cuda
