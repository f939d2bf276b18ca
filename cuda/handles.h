// Library handles bound to the one stream (cuBLAS always, cuDNN when the build found it), created
// lazily on first use, and the TF32 switch that both honour.
#pragma once
#include "cuda/check.h"

namespace dl::cuda {

// TF32 tensor-core math for FP32 GEMM/convolution: off by default so results match the CPU
// reference; DEEPERLAB_TF32=1 or set_tf32(true) turns it on.
bool tf32_enabled();
void set_tf32(bool on);

// The cuBLAS handle, on stream(), with the math mode that matches tf32_enabled().
cublasHandle_t cublas_handle();

#ifdef DEEPERLAB_WITH_CUDNN
cudnnHandle_t cudnn_handle();
#endif

// Reads an environment flag: "1", "true", "on", "yes" (any case) are true.
bool env_flag(const char* name);

}  // namespace dl::cuda
