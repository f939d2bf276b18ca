// Lazily created library handles on the one stream. The TF32 switch is re-applied on every
// handle request, so flipping it between ops takes effect at the next GEMM.
#include <atomic>
#include <mutex>

#include "cuda/handles.h"
#include "cuda/runtime.h"

namespace dl::cuda {
namespace {
std::atomic<int> g_tf32{-1};  // -1: read DEEPERLAB_TF32 on first use
}  // namespace

bool tf32_enabled() {
  int v = g_tf32.load();
  if (v < 0) {
    v = env_flag("DEEPERLAB_TF32") ? 1 : 0;
    g_tf32.store(v);
  }
  return v == 1;
}

void set_tf32(bool on) {
  g_tf32.store(on ? 1 : 0);
}

cublasHandle_t cublas_handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t hh = nullptr;
    CUBLAS_CHECK(cublasCreate(&hh));
    CUBLAS_CHECK(cublasSetStream(hh, stream()));
    return hh;  // never destroyed (static destruction order vs the CUDA context)
  }();
  static std::mutex mu;
  static int mode = -1;
  const int want = tf32_enabled() ? 1 : 0;
  std::lock_guard<std::mutex> lock(mu);
  if (mode != want) {
    // Default math never uses TF32 for FP32 GEMMs (cuBLAS 11+), so results follow FP32 arithmetic.
    CUBLAS_CHECK(cublasSetMathMode(h, want ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    mode = want;
  }
  return h;
}

#ifdef DEEPERLAB_WITH_CUDNN
cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t hh = nullptr;
    CUDNN_CHECK(cudnnCreate(&hh));
    CUDNN_CHECK(cudnnSetStream(hh, stream()));
    return hh;
  }();
  return h;
}
#endif

}  // namespace dl::cuda
