// CUDA fill of the dense instance targets (see cuda/targets.h). One thread per pixel; each thread
// scans every instance's keypoints (J x 5 distance tests, J ~ 50: a few ms at 1441x1441) and
// writes all 50 output channels of its pixel, so no atomics and no ordering issues. Distances in
// double, as on the CPU, so the nearest-instance choice is identical.
#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/targets.h"

namespace dl::cuda {
namespace {

constexpr int kP = 5, kE = 8;
__constant__ int c_edge_from[kE] = {0, 0, 0, 0, 1, 2, 3, 4};
__constant__ int c_edge_to[kE] = {1, 2, 3, 4, 0, 0, 0, 0};

__global__ void instance_targets_fwd_kernel(float* __restrict__ heat, float* __restrict__ short_off,
                                            float* __restrict__ mid_off, float* __restrict__ mid_mask,
                                            float* __restrict__ long_off, float* __restrict__ long_w,
                                            const int32_t* __restrict__ inst, const float* __restrict__ kps,
                                            const float* __restrict__ inv_sqrt, int num_inst, int h, int w,
                                            double r2) {
  const int64_t hw = int64_t(h) * w;
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= hw) return;
  const int y = int(p / w), x = int(p % w);
  const float fy = float(y), fx = float(x);
  const int32_t j_here = inst[p];

  // Long-range offsets and weight.
  if (j_here >= 0) {
    long_w[p] = inv_sqrt[j_here];
    for (int k = 0; k < kP; ++k) {
      long_off[(2 * k) * hw + p] = kps[(j_here * kP + k) * 2] - fy;
      long_off[(2 * k + 1) * hw + p] = kps[(j_here * kP + k) * 2 + 1] - fx;
    }
  } else {
    long_w[p] = 0.0f;
    for (int c = 0; c < 2 * kP; ++c) long_off[c * hw + p] = 0.0f;
  }

  int owner[kP];
  for (int k = 0; k < kP; ++k) owner[k] = -1;
  if (j_here != -2) {  // crowd pixels are excluded from every instance target
    double best[kP];
    for (int j = 0; j < num_inst; ++j) {
      for (int k = 0; k < kP; ++k) {
        const double dy = double(kps[(j * kP + k) * 2]) - double(y);
        const double dx = double(kps[(j * kP + k) * 2 + 1]) - double(x);
        const double d2 = dy * dy + dx * dx;
        if (d2 <= r2 && (owner[k] < 0 || d2 < best[k])) {
          owner[k] = j;
          best[k] = d2;
        }
      }
    }
  }
  for (int k = 0; k < kP; ++k) {
    const int j = owner[k];
    heat[k * hw + p] = j >= 0 ? 1.0f : 0.0f;
    short_off[(2 * k) * hw + p] = j >= 0 ? kps[(j * kP + k) * 2] - fy : 0.0f;
    short_off[(2 * k + 1) * hw + p] = j >= 0 ? kps[(j * kP + k) * 2 + 1] - fx : 0.0f;
  }
  for (int e = 0; e < kE; ++e) {
    const int j = owner[c_edge_from[e]];
    const int l = c_edge_to[e];
    mid_mask[e * hw + p] = j >= 0 ? 1.0f : 0.0f;
    mid_off[(2 * e) * hw + p] = j >= 0 ? kps[(j * kP + l) * 2] - fy : 0.0f;
    mid_off[(2 * e + 1) * hw + p] = j >= 0 ? kps[(j * kP + l) * 2 + 1] - fx : 0.0f;
  }
}

}  // namespace

void instance_targets_fwd(float* heatmap, float* short_off, float* mid_off, float* mid_mask, float* long_off,
                          float* long_weight, const int32_t* inst, const float* keypoints,
                          const float* inv_sqrt_area, int64_t num_inst, int64_t h, int64_t w, double radius,
                          cudaStream_t s) {
  const int64_t hw = h * w;
  if (hw == 0) return;
  DL_CHECK(h < (int64_t(1) << 31) && w < (int64_t(1) << 31) && num_inst < (int64_t(1) << 30),
           "instance_targets_fwd: sizes " << h << "x" << w << " with " << num_inst << " instances too large");
  const int threads = 256;
  const int64_t blocks = (hw + threads - 1) / threads;
  const double r = radius;
  instance_targets_fwd_kernel<<<unsigned(blocks), threads, 0, s>>>(
      heatmap, short_off, mid_off, mid_mask, long_off, long_weight, inst, keypoints, inv_sqrt_area,
      int(num_inst), int(h), int(w), r * r);
  cudaError_t err = cudaGetLastError();
  DL_CHECK(err == cudaSuccess, "instance_targets_fwd: launch failed: " << cudaGetErrorString(err));
}

}  // namespace dl::cuda
