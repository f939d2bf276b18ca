// Batch normalisation over (N, H, W) per channel. One block per channel reduces in double with a
// fixed thread-to-element assignment and a fixed reduction tree, so statistics and parameter
// gradients are deterministic; the statistics are two-pass (mean, then sum of squared deviations)
// like the CPU reference, which avoids the cancellation of E[x^2] - E[x]^2.
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace dl::cuda {
namespace {

constexpr int kReduceThreads = 512;
constexpr int kThreads = 256;

// Sum over channel ch of f(value index) for the (n, c, hw) layout; every thread of the block calls it.
template <class F>
__device__ double channel_sum(int64_t n, int64_t c, int64_t hw, int64_t ch, double* smem, F f) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = (i * c + ch) * hw;
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) s += f(base + j);
  }
  return block_reduce_sum(s, smem);
}

__global__ void batch_norm_stats_kernel(float* mean, float* var, const float* x, int64_t n, int64_t c,
                                        int64_t hw) {
  __shared__ double smem[32];
  const double count = double(n * hw);
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const double m = channel_sum(n, c, hw, ch, smem, [&](int64_t k) { return double(x[k]); }) / count;
    const double v = channel_sum(n, c, hw, ch, smem,
                                 [&](int64_t k) {
                                   const double d = double(x[k]) - m;
                                   return d * d;
                                 }) /
                     count;
    if (threadIdx.x == 0) {
      mean[ch] = float(m);
      var[ch] = float(v);
    }
  }
}

__global__ void batch_norm_invstd_kernel(float* invstd, const float* var, int64_t c, float eps) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < c) invstd[i] = float(1.0 / sqrt(double(var[i]) + double(eps)));
}

__global__ void batch_norm_update_running_kernel(float* rm, float* rv, const float* mean, const float* var,
                                                 int64_t c, float momentum, float unbias) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= c) return;
  const double m = momentum;
  rm[i] = float((1.0 - m) * double(rm[i]) + m * double(mean[i]));
  rv[i] = float((1.0 - m) * double(rv[i]) + m * double(var[i]) * double(unbias));
}

// y = x * a + sh per channel; grid.y walks planes (n * c) in chunks, grid.x covers the plane.
__global__ void batch_norm_fwd_kernel(float* y, const float* x, const float* mean, const float* invstd,
                                      const float* w, const float* b, int64_t nc, int64_t c, int64_t hw) {
  for (int64_t plane = blockIdx.y; plane < nc; plane += gridDim.y) {
    const int64_t ch = plane % c;
    const float a = invstd[ch] * (w ? w[ch] : 1.f);
    const float sh = (b ? b[ch] : 0.f) - mean[ch] * a;
    const float* p = x + plane * hw;
    float* q = y + plane * hw;
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < hw;
         j += int64_t(blockDim.x) * gridDim.x)
      q[j] = p[j] * a + sh;
  }
}

__global__ void batch_norm_bwd_train_kernel(float* gx, float* gw, float* gb, const float* gy, const float* x,
                                            const float* mean, const float* invstd, const float* w, int64_t n,
                                            int64_t c, int64_t hw) {
  __shared__ double smem[32];
  const double count = double(n * hw);
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const double mu = mean[ch], is = invstd[ch];
    const double sg = channel_sum(n, c, hw, ch, smem, [&](int64_t k) { return double(gy[k]); });
    const double sgx =
        channel_sum(n, c, hw, ch, smem, [&](int64_t k) { return double(gy[k]) * (double(x[k]) - mu) * is; });
    if (threadIdx.x == 0) {
      if (gw) gw[ch] = float(sgx);
      if (gb) gb[ch] = float(sg);
    }
    if (!gx) continue;
    const double wk = w ? double(w[ch]) : 1.0;
    const double mg = sg / count, mgx = sgx / count;
    // Float math in the elementwise pass (the reduction above is the precision-critical part).
    const float k1 = float(wk * is), fmg = float(mg), fmgx = float(mgx), fmu = float(mu), fis = float(is);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t base = (i * c + ch) * hw;
      for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
        const float xh = (x[base + j] - fmu) * fis;
        gx[base + j] = k1 * (gy[base + j] - fmg - xh * fmgx);
      }
    }
  }
}

__global__ void batch_norm_bwd_eval_reduce_kernel(float* gw, float* gb, const float* gy, const float* x,
                                                  const float* mean, const float* invstd, int64_t n,
                                                  int64_t c, int64_t hw) {
  __shared__ double smem[32];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const double mu = mean[ch], is = invstd[ch];
    double sg = 0, sgx = 0;
    if (gb) sg = channel_sum(n, c, hw, ch, smem, [&](int64_t k) { return double(gy[k]); });
    if (gw)
      sgx = channel_sum(n, c, hw, ch, smem,
                        [&](int64_t k) { return double(gy[k]) * (double(x[k]) - mu) * is; });
    if (threadIdx.x == 0) {
      if (gw) gw[ch] = float(sgx);
      if (gb) gb[ch] = float(sg);
    }
  }
}

__global__ void batch_norm_bwd_eval_gx_kernel(float* gx, const float* gy, const float* invstd, const float* w,
                                              int64_t nc, int64_t c, int64_t hw) {
  for (int64_t plane = blockIdx.y; plane < nc; plane += gridDim.y) {
    const int64_t ch = plane % c;
    const float a = float(double(invstd[ch]) * (w ? double(w[ch]) : 1.0));
    const float* g = gy + plane * hw;
    float* o = gx + plane * hw;
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < hw;
         j += int64_t(blockDim.x) * gridDim.x)
      o[j] = g[j] * a;
  }
}

unsigned channel_blocks(int64_t c) {
  return unsigned(c < (1 << 20) ? c : (1 << 20));
}

// Plane-wise grid: x covers one plane, y walks the planes (gridDim.y is limited to 65535).
dim3 plane_grid(int64_t nc, int64_t hw) {
  long long bx = (hw + kThreads * 4 - 1) / (kThreads * 4);
  if (bx < 1) bx = 1;
  if (bx > 4096) bx = 4096;
  const long long by = nc < 65535 ? nc : 65535;
  return dim3(unsigned(bx), unsigned(by), 1);
}

}  // namespace

void batch_norm_stats(float* mean, float* var, const float* x, int64_t n, int64_t c, int64_t hw,
                      cudaStream_t s) {
  if (c <= 0) return;
  DL_CHECK(n * hw > 0, "batch_norm_stats: no values per channel (n " << n << ", hw " << hw << ")");
  batch_norm_stats_kernel<<<channel_blocks(c), kReduceThreads, 0, s>>>(mean, var, x, n, c, hw);
  DL_LAUNCH_CHECK("batch_norm_stats_kernel");
}

void batch_norm_invstd(float* invstd, const float* var, int64_t c, float eps, cudaStream_t s) {
  if (c <= 0) return;
  batch_norm_invstd_kernel<<<grid_for(c, kThreads, 1ll << 30), kThreads, 0, s>>>(invstd, var, c, eps);
  DL_LAUNCH_CHECK("batch_norm_invstd_kernel");
}

void batch_norm_update_running(float* running_mean, float* running_var, const float* mean, const float* var,
                               int64_t c, float momentum, float unbias, cudaStream_t s) {
  if (c <= 0) return;
  batch_norm_update_running_kernel<<<grid_for(c, kThreads, 1ll << 30), kThreads, 0, s>>>(
      running_mean, running_var, mean, var, c, momentum, unbias);
  DL_LAUNCH_CHECK("batch_norm_update_running_kernel");
}

void batch_norm_fwd(float* y, const float* x, const float* mean, const float* invstd, const float* w,
                    const float* b, int64_t n, int64_t c, int64_t hw, cudaStream_t s) {
  if (n * c * hw <= 0) return;
  batch_norm_fwd_kernel<<<plane_grid(n * c, hw), kThreads, 0, s>>>(y, x, mean, invstd, w, b, n * c, c, hw);
  DL_LAUNCH_CHECK("batch_norm_fwd_kernel");
}

void batch_norm_bwd_train(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean,
                          const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw,
                          cudaStream_t s) {
  if (c <= 0 || (!gx && !gw && !gb)) return;
  DL_CHECK(n * hw > 0, "batch_norm_bwd_train: no values per channel");
  batch_norm_bwd_train_kernel<<<channel_blocks(c), kReduceThreads, 0, s>>>(gx, gw, gb, gy, x, mean, invstd, w,
                                                                           n, c, hw);
  DL_LAUNCH_CHECK("batch_norm_bwd_train_kernel");
}

void batch_norm_bwd_eval(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean,
                         const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw,
                         cudaStream_t s) {
  if (c <= 0) return;
  if (gw || gb) {
    batch_norm_bwd_eval_reduce_kernel<<<channel_blocks(c), kReduceThreads, 0, s>>>(gw, gb, gy, x, mean,
                                                                                   invstd, n, c, hw);
    DL_LAUNCH_CHECK("batch_norm_bwd_eval_reduce_kernel");
  }
  if (gx && n * c * hw > 0) {
    batch_norm_bwd_eval_gx_kernel<<<plane_grid(n * c, hw), kThreads, 0, s>>>(gx, gy, invstd, w, n * c, c, hw);
    DL_LAUNCH_CHECK("batch_norm_bwd_eval_gx_kernel");
  }
}

}  // namespace dl::cuda
