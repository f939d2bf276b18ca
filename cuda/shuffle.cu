// Kernels that only move elements. Concat/slice columns are strided 2-D copies (cudaMemcpy2DAsync
// handles any element size); crop/pad, space_to_depth and depth_to_space are output-indexed gathers,
// so every output element is written exactly once (pad writes its zeros in the same pass).
// Channel order is TensorFlow's: out_c = (dy * b + dx) * C + c, as in core/cpu/shuffle.cpp.
#include "cuda/check.h"
#include "cuda/kernels.h"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

#define DL_GRID_STRIDE(i, n)                                                \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

__global__ void crop2d_fwd_kernel(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top,
                                  int64_t left, int64_t oh, int64_t ow) {
  const int64_t n = nc * oh * ow;
  DL_GRID_STRIDE(idx, n) {
    const int64_t q = idx % ow, t = idx / ow, r = t % oh, i = t / oh;
    y[idx] = x[(i * h + r + top) * w + left + q];
  }
}

__global__ void pad2d_fwd_kernel(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top,
                                 int64_t left, int64_t oh, int64_t ow) {
  const int64_t n = nc * oh * ow;
  DL_GRID_STRIDE(idx, n) {
    const int64_t q = idx % ow, t = idx / ow, r = t % oh, i = t / oh;
    const int64_t sr = r - top, sq = q - left;
    y[idx] = (sr >= 0 && sr < h && sq >= 0 && sq < w) ? x[(i * h + sr) * w + sq] : 0.f;
  }
}

// y (n, c*b*b, h/b, w/b) from x (n, c, h, w).
__global__ void space_to_depth_fwd_kernel(float* y, const float* x, int64_t n, int64_t c, int64_t h,
                                          int64_t w, int64_t b) {
  const int64_t oh = h / b, ow = w / b, oc = c * b * b, total = n * oc * oh * ow;
  DL_GRID_STRIDE(idx, total) {
    const int64_t q = idx % ow;
    int64_t t = idx / ow;
    const int64_t r = t % oh;
    t /= oh;
    const int64_t co = t % oc, in = t / oc;
    const int64_t blk = co / c, ci = co % c, dy = blk / b, dx = blk % b;
    y[idx] = x[((in * c + ci) * h + r * b + dy) * w + q * b + dx];
  }
}

// y (n, c/(b*b), h*b, w*b) from x (n, c, h, w); c is the input channel count.
__global__ void depth_to_space_fwd_kernel(float* y, const float* x, int64_t n, int64_t c, int64_t h,
                                          int64_t w, int64_t b) {
  const int64_t oc = c / (b * b), oh = h * b, ow = w * b, total = n * oc * oh * ow;
  DL_GRID_STRIDE(idx, total) {
    const int64_t X = idx % ow;
    int64_t t = idx / ow;
    const int64_t Y = t % oh;
    t /= oh;
    const int64_t co = t % oc, in = t / oc;
    const int64_t dy = Y % b, r = Y / b, dx = X % b, q = X / b;
    const int64_t ci = (dy * b + dx) * oc + co;
    y[idx] = x[((in * c + ci) * h + r) * w + q];
  }
}

#undef DL_GRID_STRIDE

}  // namespace

void copy_columns(void* dst, const void* src, int64_t outer, int64_t inner_dst, int64_t inner_src,
                  int64_t offset, bool into_dst, int64_t elem_bytes, cudaStream_t s) {
  if (outer <= 0 || inner_src <= 0) return;
  DL_CHECK(elem_bytes > 0 && offset >= 0 && offset + inner_src <= inner_dst,
           "copy_columns: columns [" << offset << ", " << offset + inner_src << ") of " << inner_dst
                                     << ", element size " << elem_bytes);
  const size_t eb = size_t(elem_bytes);
  const size_t width = size_t(inner_src) * eb, big_pitch = size_t(inner_dst) * eb;
  char* d = static_cast<char*>(dst);
  const char* sp = static_cast<const char*>(src);
  const size_t d_off = into_dst ? size_t(offset) * eb : 0, s_off = into_dst ? 0 : size_t(offset) * eb;
  const size_t d_pitch = into_dst ? big_pitch : width, s_pitch = into_dst ? width : big_pitch;
  if (outer == 1 || big_pitch > size_t(INT_MAX)) {
    // One row (or pitches beyond what cudaMemcpy2D accepts): plain copies, row by row.
    for (int64_t o = 0; o < outer; ++o)
      CUDA_CHECK(cudaMemcpyAsync(d + d_off + size_t(o) * d_pitch, sp + s_off + size_t(o) * s_pitch, width,
                                 cudaMemcpyDeviceToDevice, s));
    return;
  }
  CUDA_CHECK(cudaMemcpy2DAsync(d + d_off, d_pitch, sp + s_off, s_pitch, width, size_t(outer),
                               cudaMemcpyDeviceToDevice, s));
}

void crop2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left,
                int64_t oh, int64_t ow, cudaStream_t s) {
  const int64_t n = nc * oh * ow;
  if (n <= 0) return;
  DL_CHECK(top >= 0 && left >= 0 && top + oh <= h && left + ow <= w,
           "crop2d: window " << oh << "x" << ow << " at (" << top << ", " << left << ") outside " << h << "x"
                             << w);
  crop2d_fwd_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(y, x, nc, h, w, top, left, oh, ow);
  DL_LAUNCH_CHECK("crop2d_fwd_kernel");
}

void pad2d_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left,
               int64_t oh, int64_t ow, cudaStream_t s) {
  const int64_t n = nc * oh * ow;
  if (n <= 0) return;
  DL_CHECK(
      top >= 0 && left >= 0 && top + h <= oh && left + w <= ow,
      "pad2d: " << h << "x" << w << " at (" << top << ", " << left << ") does not fit " << oh << "x" << ow);
  pad2d_fwd_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(y, x, nc, h, w, top, left, oh, ow);
  DL_LAUNCH_CHECK("pad2d_fwd_kernel");
}

void space_to_depth_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b,
                        cudaStream_t s) {
  DL_CHECK(b >= 1 && h % b == 0 && w % b == 0, "space_to_depth: " << h << "x" << w << " with block " << b);
  const int64_t total = n * c * h * w;
  if (total <= 0) return;
  space_to_depth_fwd_kernel<<<grid_for(total, kThreads), kThreads, 0, s>>>(y, x, n, c, h, w, b);
  DL_LAUNCH_CHECK("space_to_depth_fwd_kernel");
}

void depth_to_space_fwd(float* y, const float* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b,
                        cudaStream_t s) {
  DL_CHECK(b >= 1 && c % (b * b) == 0, "depth_to_space: " << c << " channels with block " << b);
  const int64_t total = n * c * h * w;
  if (total <= 0) return;
  depth_to_space_fwd_kernel<<<grid_for(total, kThreads), kThreads, 0, s>>>(y, x, n, c, h, w, b);
  DL_LAUNCH_CHECK("depth_to_space_fwd_kernel");
}

}  // namespace dl::cuda
