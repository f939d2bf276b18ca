#include <cuda_runtime.h>
#include <cstdio>
#include "core/error.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
namespace dl::cuda {
void conv2d_fwd(float* y, const float* x, const float* w, const float* bias, const ConvGeom& g, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void conv2d_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void conv2d_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void conv2d_bwd_bias(float* gb, const float* gy, const ConvGeom& g, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_stats(float* mean, float* var, const float* x, int64_t n, int64_t c, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_invstd(float* invstd, const float* var, int64_t c, float eps, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_update_running(float* running_mean, float* running_var, const float* mean, const float* var, int64_t c, float momentum, float unbias, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_fwd(float* y, const float* x, const float* mean, const float* invstd, const float* w, const float* b, int64_t n, int64_t c, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_bwd_train(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean, const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void batch_norm_bwd_eval(float* gx, float* gw, float* gb, const float* gy, const float* x, const float* mean, const float* invstd, const float* w, int64_t n, int64_t c, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void relu_fwd(float* y, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void relu_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void relu6_fwd(float* y, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void relu6_bwd(float* gx, const float* gy, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void sigmoid_fwd(float* y, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void sigmoid_bwd(float* gx, const float* gy, const float* y, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void add_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void sub_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void mul_fwd(float* y, const float* a, const float* b, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void scale_fwd(float* y, const float* x, float a, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void axpy(float* y, float a, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void fill(float* y, float v, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void sum_all(float* out, const float* x, int64_t n, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void global_avg_pool_fwd(float* y, const float* x, int64_t nc, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void global_avg_pool_bwd(float* gx, const float* gy, int64_t nc, int64_t hw, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void copy_columns(void* dst, const void* src, int64_t outer, int64_t inner_dst, int64_t inner_src, int64_t offset, bool into_dst, int64_t elem_bytes, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void crop2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh, int64_t ow, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void pad2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh, int64_t ow, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void space_to_depth_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void depth_to_space_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void resize_bilinear_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow, bool align_corners, cudaStream_t s) { DL_FAIL("stub: not in this build"); }
void resize_bilinear_bwd(float* gx, const float* gy, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow, bool align_corners, cudaStream_t s) { DL_FAIL("stub: not in this build"); }

#define CK(x) do { cudaError_t e_ = (x); DL_CHECK(e_ == cudaSuccess, #x << ": " << cudaGetErrorString(e_)); } while (0)
static size_t g_cur = 0, g_peak = 0;
bool available() { int n = 0; return cudaGetDeviceCount(&n) == cudaSuccess && n > 0; }
const char* device_name() { static cudaDeviceProp p; static bool got = false; if (!got) { cudaGetDeviceProperties(&p, 0); got = true; } return p.name; }
cudaStream_t stream() { static cudaStream_t s = [] { cudaStream_t st; CK(cudaStreamCreate(&st)); return st; }(); return s; }
void synchronize() { CK(cudaStreamSynchronize(stream())); }
bool sync_after_ops() { return false; }
void check_after_op(const char* op) { (void)op; }
void* device_alloc(size_t bytes) { void* p = nullptr; CK(cudaMallocAsync(&p, bytes, stream())); g_cur += bytes; if (g_cur > g_peak) g_peak = g_cur; return p; }
void device_free(void* p, size_t bytes) { cudaFreeAsync(p, stream()); g_cur -= bytes; }
size_t current_bytes() { return g_cur; }
size_t peak_bytes() { return g_peak; }
void reset_peak_bytes() { g_peak = g_cur; }
void empty_cache() {}
void memcpy_h2d(void* d, const void* s, size_t b) { if (b) { CK(cudaMemcpyAsync(d, s, b, cudaMemcpyHostToDevice, stream())); CK(cudaStreamSynchronize(stream())); } }
void memcpy_d2h(void* d, const void* s, size_t b) { if (b) { CK(cudaMemcpyAsync(d, s, b, cudaMemcpyDeviceToHost, stream())); CK(cudaStreamSynchronize(stream())); } }
void memcpy_d2d(void* d, const void* s, size_t b) { if (b) CK(cudaMemcpyAsync(d, s, b, cudaMemcpyDeviceToDevice, stream())); }
void memset_zero(void* d, size_t b) { if (b) CK(cudaMemsetAsync(d, 0, b, stream())); }
}  // namespace dl::cuda
