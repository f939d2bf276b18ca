// Bilinear resize with the CPU reference's coordinate rules (core/cpu/resize.cpp: PyTorch's
// align_corners semantics, source index clamped at 0, taps computed in double). The backward is a
// gather, not a scatter with atomics: each input pixel sums the output gradients whose taps touch it,
// so it is deterministic. The outputs touching input row iy are exactly those with i0 in {iy-1, iy}
// (i1 = min(i0 + 1, in - 1)), a contiguous range because i0 never decreases; a small kernel finds
// each range by binary search.
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/kernels.h"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

struct Tap {
  int i0, i1;
  float l1;  // weight of i1; i0 gets 1 - l1 (rounded to float like the CPU reference)
};

__device__ __forceinline__ double tap_scale(int in, int out, bool align_corners) {
  return align_corners ? (out > 1 ? double(in - 1) / double(out - 1) : 0.0) : double(in) / double(out);
}

__device__ __forceinline__ Tap tap_at(int o, int in, double scale, bool align_corners) {
  double src = align_corners ? o * scale : (o + 0.5) * scale - 0.5;
  if (src < 0) src = 0;
  int i0 = int(floor(src));
  if (i0 > in - 1) i0 = in - 1;
  const int i1 = i0 + 1 < in - 1 ? i0 + 1 : in - 1;
  return {i0, i1, float(src - double(i0))};
}

__global__ void resize_bilinear_fwd_kernel(float* y, const float* x, int nc, int h, int w, int oh, int ow,
                                           bool align_corners) {
  const double sy = tap_scale(h, oh, align_corners), sx = tap_scale(w, ow, align_corners);
  const long long total = (long long)nc * oh * ow;
  for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int q = int(idx % ow);
    const long long t = idx / ow;
    const int r = int(t % oh);
    const long long i = t / oh;
    const Tap ty = tap_at(r, h, sy, align_corners), tx = tap_at(q, w, sx, align_corners);
    const float* xp = x + i * h * w;
    const float* row0 = xp + (long long)ty.i0 * w;
    const float* row1 = xp + (long long)ty.i1 * w;
    const float lx = tx.l1, ly = ty.l1;
    const float top = row0[tx.i0] * (1.f - lx) + row0[tx.i1] * lx;
    const float bot = row1[tx.i0] * (1.f - lx) + row1[tx.i1] * lx;
    y[idx] = top * (1.f - ly) + bot * ly;
  }
}

// For each input index k along one axis: the range [lo, hi) of outputs with i0 in {k - 1, k}.
__global__ void resize_ranges_kernel(int2* ranges, int in, int out, bool align_corners) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= in) return;
  const double scale = tap_scale(in, out, align_corners);
  // lo: first o with i0(o) >= k - 1; hi: first o with i0(o) > k.
  int lo = 0, hi = out;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (tap_at(mid, in, scale, align_corners).i0 >= k - 1)
      hi = mid;
    else
      lo = mid + 1;
  }
  const int first = lo;
  lo = first;
  hi = out;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (tap_at(mid, in, scale, align_corners).i0 > k)
      hi = mid;
    else
      lo = mid + 1;
  }
  ranges[k] = make_int2(first, lo);
}

// Weight of input index k in output o's taps (both taps add when they coincide at the border).
__device__ __forceinline__ float tap_weight(const Tap& t, int k) {
  float wgt = 0.f;
  if (t.i0 == k) wgt += 1.f - t.l1;
  if (t.i1 == k) wgt += t.l1;
  return wgt;
}

__global__ void resize_bilinear_bwd_kernel(float* gx, const float* gy, const int2* ry, const int2* rx, int nc,
                                           int h, int w, int oh, int ow, bool align_corners) {
  const double sy = tap_scale(h, oh, align_corners), sx = tap_scale(w, ow, align_corners);
  const long long total = (long long)nc * h * w;
  for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    const int ix = int(idx % w);
    const long long t = idx / w;
    const int iy = int(t % h);
    const long long i = t / h;
    const int2 ya = ry[iy], xa = rx[ix];
    const float* g = gy + i * oh * ow;
    float acc = 0.f;
    for (int r = ya.x; r < ya.y; ++r) {
      const float wy = tap_weight(tap_at(r, h, sy, align_corners), iy);
      if (wy == 0.f) continue;
      const float* grow = g + (long long)r * ow;
      float row_acc = 0.f;
      for (int q = xa.x; q < xa.y; ++q) {
        const float wx = tap_weight(tap_at(q, w, sx, align_corners), ix);
        row_acc += grow[q] * wx;
      }
      acc += row_acc * wy;
    }
    gx[idx] = acc;
  }
}

void check_sizes(const char* op, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  DL_CHECK(h >= 1 && w >= 1 && oh >= 1 && ow >= 1,
           op << ": sizes " << h << "x" << w << " -> " << oh << "x" << ow << " must be positive");
  check_int32(op, nc, "planes");
  check_int32(op, h * w, "input plane");
  check_int32(op, oh * ow, "output plane");
}

}  // namespace

void resize_bilinear_fwd(float* y, const float* x, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners, cudaStream_t s) {
  if (nc <= 0) return;
  check_sizes("resize_bilinear", nc, h, w, oh, ow);
  resize_bilinear_fwd_kernel<<<grid_for(nc * oh * ow, kThreads), kThreads, 0, s>>>(
      y, x, int(nc), int(h), int(w), int(oh), int(ow), align_corners);
  DL_LAUNCH_CHECK("resize_bilinear_fwd_kernel");
}

void resize_bilinear_bwd(float* gx, const float* gy, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners, cudaStream_t s) {
  if (nc <= 0) return;
  check_sizes("resize_bilinear_bwd", nc, h, w, oh, ow);
  DeviceBuffer ranges(sizeof(int2) * size_t(h + w), s);
  int2* ry = ranges.as<int2>();
  int2* rx = ry + h;
  resize_ranges_kernel<<<unsigned((h + kThreads - 1) / kThreads), kThreads, 0, s>>>(ry, int(h), int(oh),
                                                                                    align_corners);
  DL_LAUNCH_CHECK("resize_ranges_kernel");
  resize_ranges_kernel<<<unsigned((w + kThreads - 1) / kThreads), kThreads, 0, s>>>(rx, int(w), int(ow),
                                                                                    align_corners);
  DL_LAUNCH_CHECK("resize_ranges_kernel");
  resize_bilinear_bwd_kernel<<<grid_for(nc * h * w, kThreads), kThreads, 0, s>>>(
      gx, gy, ry, rx, int(nc), int(h), int(w), int(oh), int(ow), align_corners);
  DL_LAUNCH_CHECK("resize_bilinear_bwd_kernel");
}

}  // namespace dl::cuda
