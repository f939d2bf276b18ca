// Elementwise kernels (grid-stride loops with 64-bit indices: memory-bound, so the index width is
// free) and the deterministic full sum: a fixed number of blocks writes partial sums in double,
// then one block adds them in order, so the result does not depend on scheduling.
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

#define DL_GRID_STRIDE(i, n)                                                \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

__global__ void relu_fwd_kernel(float* y, const float* x, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = x[i] > 0.f ? x[i] : 0.f;
  }
}
__global__ void relu_bwd_kernel(float* gx, const float* gy, const float* y, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    gx[i] = y[i] > 0.f ? gy[i] : 0.f;
  }
}
__global__ void relu6_fwd_kernel(float* y, const float* x, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = fminf(fmaxf(x[i], 0.f), 6.f);
  }
}
__global__ void relu6_bwd_kernel(float* gx, const float* gy, const float* x, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    gx[i] = (x[i] > 0.f && x[i] < 6.f) ? gy[i] : 0.f;
  }
}
__global__ void sigmoid_fwd_kernel(float* y, const float* x, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    const float v = x[i];
    if (v >= 0.f) {
      y[i] = 1.f / (1.f + expf(-v));
    } else {
      const float e = expf(v);
      y[i] = e / (1.f + e);
    }
  }
}
__global__ void sigmoid_bwd_kernel(float* gx, const float* gy, const float* y, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    gx[i] = gy[i] * y[i] * (1.f - y[i]);
  }
}
__global__ void add_fwd_kernel(float* y, const float* a, const float* b, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = a[i] + b[i];
  }
}
__global__ void sub_fwd_kernel(float* y, const float* a, const float* b, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = a[i] - b[i];
  }
}
__global__ void mul_fwd_kernel(float* y, const float* a, const float* b, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = a[i] * b[i];
  }
}
__global__ void scale_fwd_kernel(float* y, const float* x, float s, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = x[i] * s;
  }
}
__global__ void axpy_kernel(float* y, float a, const float* x, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] += a * x[i];
  }
}
__global__ void fill_kernel(float* y, float v, int64_t n) {
  DL_GRID_STRIDE(i, n) {
    y[i] = v;
  }
}

// Partial sums: block b covers a fixed, strided set of elements.
__global__ void sum_partial_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double smem[32];
  double s = 0;
  DL_GRID_STRIDE(i, n) {
    s += double(x[i]);
  }
  s = block_reduce_sum(s, smem);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void sum_final_kernel(float* out, const double* partial, int nparts) {
  __shared__ double smem[32];
  double s = 0;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += partial[i];
  s = block_reduce_sum(s, smem);
  if (threadIdx.x == 0) out[0] = float(s);
}

#undef DL_GRID_STRIDE

}  // namespace

#define DL_LAUNCH_1D(kernel, n, ...)                                  \
  do {                                                                \
    if ((n) <= 0) return;                                             \
    kernel<<<grid_for((n), kThreads), kThreads, 0, s>>>(__VA_ARGS__); \
    DL_LAUNCH_CHECK(#kernel);                                         \
  } while (0)

void relu_fwd(float* y, const float* x, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(relu_fwd_kernel, n, y, x, n);
}
void relu_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(relu_bwd_kernel, n, gx, gy, y, n);
}
void relu6_fwd(float* y, const float* x, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(relu6_fwd_kernel, n, y, x, n);
}
void relu6_bwd(float* gx, const float* gy, const float* x, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(relu6_bwd_kernel, n, gx, gy, x, n);
}
void sigmoid_fwd(float* y, const float* x, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(sigmoid_fwd_kernel, n, y, x, n);
}
void sigmoid_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(sigmoid_bwd_kernel, n, gx, gy, y, n);
}
void add_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(add_fwd_kernel, n, y, a, b, n);
}
void sub_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(sub_fwd_kernel, n, y, a, b, n);
}
void mul_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(mul_fwd_kernel, n, y, a, b, n);
}
void scale_fwd(float* y, const float* x, float a, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(scale_fwd_kernel, n, y, x, a, n);
}
void axpy(float* y, float a, const float* x, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(axpy_kernel, n, y, a, x, n);
}
void fill(float* y, float v, int64_t n, cudaStream_t s) {
  DL_LAUNCH_1D(fill_kernel, n, y, v, n);
}

void sum_all(float* out, const float* x, int64_t n, cudaStream_t s) {
  // A fixed block count (not derived from the device) keeps the summation order reproducible.
  constexpr int kMaxParts = 1024;
  const int parts = int(grid_for(n, kThreads * 8, kMaxParts));
  DeviceBuffer buf(sizeof(double) * kMaxParts, s);
  double* partial = buf.as<double>();
  if (n > 0) {
    sum_partial_kernel<<<parts, kThreads, 0, s>>>(partial, x, n);
    DL_LAUNCH_CHECK("sum_partial_kernel");
    sum_final_kernel<<<1, kThreads, 0, s>>>(out, partial, parts);
    DL_LAUNCH_CHECK("sum_final_kernel");
  } else {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), s));
  }
}

#undef DL_LAUNCH_1D

}  // namespace dl::cuda
