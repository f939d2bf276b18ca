// CUDA optimizer kernels: SGD and AdamW as one fused grid-stride kernel per parameter tensor
// (read p, g and the state once, write p and the state once), and a deterministic two-pass
// sum of squares (fixed grid, fixed-order tree reductions) for gradient-norm clipping.
#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/optim.h"

namespace dl::cuda {

namespace {
constexpr int kThreads = 256;

void check_launch(const char* op) {
  const cudaError_t e = cudaGetLastError();
  DL_CHECK(e == cudaSuccess, op << ": kernel launch failed: " << cudaGetErrorString(e));
}

int grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535 * 8) b = 65535 * 8;  // grid-stride loops cover the rest
  return static_cast<int>(b < 1 ? 1 : b);
}

__global__ void sgd_step_kernel(float* __restrict__ p, float* __restrict__ buf, const float* __restrict__ g,
                                int64_t n, float lr, float momentum, float one_minus_damp, float wd,
                                bool nesterov, bool first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float d = g[i];
    const float pi = p[i];
    if (wd != 0.0f) d = d + wd * pi;
    if (momentum != 0.0f) {
      const float b = first ? d : buf[i] * momentum + one_minus_damp * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = pi + (-lr) * d;
  }
}

__global__ void adamw_step_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                                  const float* __restrict__ g, int64_t n, float decay_scale, float beta1,
                                  float omb1, float beta2, float omb2, float neg_step_size, float bc2_sqrt,
                                  float eps) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float pi = p[i] * decay_scale;
    const float mi = m[i] * beta1 + omb1 * gi;
    const float vi = v[i] * beta2 + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] = pi + neg_step_size * (mi / denom);
  }
}

// Block-wide sum of one double per thread (blockDim.x == kThreads), result in thread 0.
__device__ double block_sum(double x) {
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = x;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

__global__ void sum_squares_partial_kernel(double* partials, const float* __restrict__ x, int64_t n) {
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = x[i];
    s += v * v;
  }
  const double total = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void sum_f64_kernel(double* out, const double* __restrict__ x, int64_t n) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  const double total = block_sum(s);
  if (threadIdx.x == 0) out[0] = total;
}

__global__ void scale_inplace_kernel(float* x, float a, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= a;
}
}  // namespace

void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float momentum, float dampening,
              float weight_decay, bool nesterov, bool first_step, cudaStream_t s) {
  if (n == 0) return;
  sgd_step_kernel<<<grid_for(n), kThreads, 0, s>>>(p, buf, g, n, lr, momentum, 1.0f - dampening, weight_decay,
                                                   nesterov, first_step);
  check_launch("sgd_step");
}

void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, float decay_scale, float beta1,
                float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                float bc2_sqrt, float eps, cudaStream_t s) {
  if (n == 0) return;
  adamw_step_kernel<<<grid_for(n), kThreads, 0, s>>>(p, m, v, g, n, decay_scale, beta1, one_minus_beta1,
                                                     beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps);
  check_launch("adamw_step");
}

void sum_squares_partial(double* partials, const float* x, int64_t n, cudaStream_t s) {
  sum_squares_partial_kernel<<<kSumSquaresBlocks, kThreads, 0, s>>>(partials, x, n);
  check_launch("sum_squares_partial");
}

void sum_f64(double* out, const double* x, int64_t n, cudaStream_t s) {
  sum_f64_kernel<<<1, kThreads, 0, s>>>(out, x, n);
  check_launch("sum_f64");
}

void scale_inplace(float* x, float a, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  scale_inplace_kernel<<<grid_for(n), kThreads, 0, s>>>(x, a, n);
  check_launch("scale_inplace");
}

}  // namespace dl::cuda
