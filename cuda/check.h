// Error checks for the CUDA side: CUDA_CHECK / CUBLAS_CHECK / CUDNN_CHECK throw dl::Error carrying
// file:line, the failed expression and the library's own error string; DL_LAUNCH_CHECK goes after
// every kernel launch (launch-configuration errors surface there, execution errors at the next sync).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <string>

#include "core/error.h"
#ifdef DEEPERLAB_WITH_CUDNN
#include <cudnn.h>
#endif

#define CUDA_CHECK(expr)                                                                     \
  do {                                                                                       \
    const cudaError_t dl_cuda_err_ = (expr);                                                 \
    if (dl_cuda_err_ != cudaSuccess)                                                         \
      ::dl::throw_error(__FILE__, __LINE__, #expr,                                           \
                        std::string("CUDA error ") + cudaGetErrorName(dl_cuda_err_) + ": " + \
                            cudaGetErrorString(dl_cuda_err_));                               \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                         \
  do {                                                                                             \
    const cublasStatus_t dl_cublas_st_ = (expr);                                                   \
    if (dl_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::dl::throw_error(__FILE__, __LINE__, #expr,                                                 \
                        std::string("cuBLAS error ") + std::to_string(int(dl_cublas_st_)) + ": " + \
                            cublasGetStatusString(dl_cublas_st_));                                 \
  } while (0)

#ifdef DEEPERLAB_WITH_CUDNN
#define CUDNN_CHECK(expr)                                                                        \
  do {                                                                                           \
    const cudnnStatus_t dl_cudnn_st_ = (expr);                                                   \
    if (dl_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                                    \
      ::dl::throw_error(__FILE__, __LINE__, #expr,                                               \
                        std::string("cuDNN error ") + std::to_string(int(dl_cudnn_st_)) + ": " + \
                            cudnnGetErrorString(dl_cudnn_st_));                                  \
  } while (0)
#endif

// After every <<<...>>>: reports bad launch configurations (grid too large, too much shared memory).
#define DL_LAUNCH_CHECK(kernel_name)                                                                    \
  do {                                                                                                  \
    const cudaError_t dl_launch_err_ = cudaGetLastError();                                              \
    if (dl_launch_err_ != cudaSuccess)                                                                  \
      ::dl::throw_error(__FILE__, __LINE__, kernel_name,                                                \
                        std::string("CUDA kernel launch failed: ") + cudaGetErrorName(dl_launch_err_) + \
                            ": " + cudaGetErrorString(dl_launch_err_));                                 \
  } while (0)

namespace dl::cuda {

// Kernels index with 32-bit ints for speed; the launcher checks the sizes fit first.
inline void check_int32(const char* op, long long count, const char* what) {
  DL_CHECK(count >= 0 && count <= (long long)INT_MAX,
           op << ": " << what << " = " << count << " exceeds the 32-bit index limit of this kernel");
}

// Blocks for a grid-stride loop over n items with `threads` per block (at least 1, capped so the
// grid stays well inside the 2^31 - 1 limit of gridDim.x; the loop covers the rest).
inline unsigned grid_for(long long n, int threads, long long cap = 1 << 20) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

}  // namespace dl::cuda
