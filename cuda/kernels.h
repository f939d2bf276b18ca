// CUDA kernel launchers: the float mirror of core/cpu/kernels.h, one family per .cu file, each
// launcher enqueued on `s` and checked after launch. Plain C++ header (no CUDA types needed).
#pragma once
#include <cstdint>

#include "core/geometry.h"
#include "cuda/runtime.h"

namespace dl::cuda {

// conv.cu / depthwise.cu / pointwise.cu (dispatch inside conv2d_*)
void conv2d_fwd(float* y, const float* x, const float* w, const float* bias, const ConvGeom& g, cudaStream_t s);
void conv2d_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s);
void conv2d_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s);
void conv2d_bwd_bias(float* gb, const float* gy, const ConvGeom& g, cudaStream_t s);

// batchnorm.cu
void batch_norm_stats(float* mean, float* var, const float* x, int64_t n, int64_t c, int64_t hw, cudaStream_t s);
// invstd = 1 / sqrt(var + eps)
void batch_norm_invstd(float* invstd, const float* var, int64_t c, float eps, cudaStream_t s);
// running = (1 - m) * running + m * batch, with var unbiased by `unbias` = N / (N - 1).
void batch_norm_update_running(float* running_mean, float* running_var, const float* mean, const float* var,
                               int64_t c, float momentum, float unbias, cudaStream_t s);
void batch_norm_fwd(float* y, const float* x, const float* mean, const float* invstd, const float* w,
                    const float* b, int64_t n, int64_t c, int64_t hw, cudaStream_t s);
void batch_norm_bwd_train(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean,
                          const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw, cudaStream_t s);
void batch_norm_bwd_eval(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean,
                         const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw, cudaStream_t s);

// elementwise.cu
void relu_fwd(float* y, const float* x, int64_t n, cudaStream_t s);
void relu_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s);
void relu6_fwd(float* y, const float* x, int64_t n, cudaStream_t s);
void relu6_bwd(float* gx, const float* gy, const float* x, int64_t n, cudaStream_t s);
void sigmoid_fwd(float* y, const float* x, int64_t n, cudaStream_t s);
void sigmoid_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s);
void add_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s);
void sub_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s);
void mul_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s);
void scale_fwd(float* y, const float* x, float a, int64_t n, cudaStream_t s);
void axpy(float* y, float a, const float* x, int64_t n, cudaStream_t s);
void fill(float* y, float v, int64_t n, cudaStream_t s);
// out[0] = sum(x) (a device scalar), deterministic tree reduction.
void sum_all(float* out, const float* x, int64_t n, cudaStream_t s);

// pool.cu
void global_avg_pool_fwd(float* y, const float* x, int64_t nc, int64_t hw, cudaStream_t s);
void global_avg_pool_bwd(float* gx, const float* gy, int64_t nc, int64_t hw, cudaStream_t s);

// shuffle.cu (element size in bytes: 4 for F32 and I32, 1 for U8)
void copy_columns(void* dst, const void* src, int64_t outer, int64_t inner_dst, int64_t inner_src, int64_t offset,
                  bool into_dst, int64_t elem_bytes, cudaStream_t s);
void crop2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
                int64_t ow, cudaStream_t s);
void pad2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
               int64_t ow, cudaStream_t s);
void space_to_depth_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b,
                        cudaStream_t s);
void depth_to_space_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b,
                        cudaStream_t s);

// resize.cu
void resize_bilinear_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners, cudaStream_t s);
void resize_bilinear_bwd(float* gx, const float* gy, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners, cudaStream_t s);

}  // namespace dl::cuda
