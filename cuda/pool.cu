// Global average pooling: one block per (n, c) plane reduces in double (like the CPU reference);
// the backward spreads gy / hw over the plane.
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void global_avg_pool_fwd_kernel(float* y, const float* x, int64_t nc, int64_t hw) {
  __shared__ double smem[32];
  for (int64_t row = blockIdx.x; row < nc; row += gridDim.x) {
    const float* p = x + row * hw;
    double s = 0;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) s += double(p[j]);
    s = block_reduce_sum(s, smem);
    if (threadIdx.x == 0) y[row] = float(s / double(hw));
  }
}

__global__ void global_avg_pool_bwd_kernel(float* gx, const float* gy, int64_t nc, int64_t hw) {
  const int64_t n = nc * hw;
  const float fhw = float(hw);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(blockDim.x) * gridDim.x)
    gx[i] = gy[i / hw] / fhw;
}

}  // namespace

void global_avg_pool_fwd(float* y, const float* x, int64_t nc, int64_t hw, cudaStream_t s) {
  if (nc <= 0) return;
  if (hw <= 0) {
    DL_FAIL("global_avg_pool: empty spatial plane");
  }
  const unsigned blocks = unsigned(nc < (1 << 20) ? nc : (1 << 20));
  global_avg_pool_fwd_kernel<<<blocks, kThreads, 0, s>>>(y, x, nc, hw);
  DL_LAUNCH_CHECK("global_avg_pool_fwd_kernel");
}

void global_avg_pool_bwd(float* gx, const float* gy, int64_t nc, int64_t hw, cudaStream_t s) {
  if (nc <= 0 || hw <= 0) return;
  global_avg_pool_bwd_kernel<<<grid_for(nc * hw, kThreads), kThreads, 0, s>>>(gx, gy, nc, hw);
  DL_LAUNCH_CHECK("global_avg_pool_bwd_kernel");
}

}  // namespace dl::cuda
