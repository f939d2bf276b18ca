// Bilinear resize with PyTorch's coordinate rules (align_corners true / false, no antialiasing).
// Backward scatters each output gradient to its four source pixels, one plane per thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu/kernels.h"

namespace dl::cpu {
namespace {
struct Tap {
  int64_t i0, i1;
  double l1;  // weight of i1; i0 gets 1 - l1
};

std::vector<Tap> taps(int64_t in, int64_t out, bool align_corners) {
  std::vector<Tap> t(out);
  const double scale = align_corners ? (out > 1 ? double(in - 1) / double(out - 1) : 0.0) : double(in) / double(out);
  for (int64_t o = 0; o < out; ++o) {
    double src = align_corners ? o * scale : (o + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);
    int64_t i1 = std::min<int64_t>(i0 + 1, in - 1);
    t[o] = {i0, i1, src - double(i0)};
  }
  return t;
}
}  // namespace

template <class T>
void resize_bilinear_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners) {
  const auto ty = taps(h, oh, align_corners), tx = taps(w, ow, align_corners);
#pragma omp parallel for collapse(2) if (nc * oh * ow > 32768)
  for (int64_t i = 0; i < nc; ++i)
    for (int64_t r = 0; r < oh; ++r) {
      const T* xp = x + i * h * w;
      T* yp = y + (i * oh + r) * ow;
      const T ly = static_cast<T>(ty[r].l1);
      const T* row0 = xp + ty[r].i0 * w;
      const T* row1 = xp + ty[r].i1 * w;
      for (int64_t q = 0; q < ow; ++q) {
        const T lx = static_cast<T>(tx[q].l1);
        const int64_t c0 = tx[q].i0, c1 = tx[q].i1;
        const T top = row0[c0] * (T(1) - lx) + row0[c1] * lx;
        const T bot = row1[c0] * (T(1) - lx) + row1[c1] * lx;
        yp[q] = top * (T(1) - ly) + bot * ly;
      }
    }
}

template <class T>
void resize_bilinear_bwd(T* gx, const T* gy, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners) {
  const auto ty = taps(h, oh, align_corners), tx = taps(w, ow, align_corners);
#pragma omp parallel for if (nc * oh * ow > 32768)
  for (int64_t i = 0; i < nc; ++i) {
    T* gp = gx + i * h * w;
    std::memset(gp, 0, h * w * sizeof(T));
    for (int64_t r = 0; r < oh; ++r) {
      const T* g = gy + (i * oh + r) * ow;
      const T ly = static_cast<T>(ty[r].l1);
      T* row0 = gp + ty[r].i0 * w;
      T* row1 = gp + ty[r].i1 * w;
      for (int64_t q = 0; q < ow; ++q) {
        const T lx = static_cast<T>(tx[q].l1);
        const T v = g[q];
        row0[tx[q].i0] += v * (T(1) - ly) * (T(1) - lx);
        row0[tx[q].i1] += v * (T(1) - ly) * lx;
        row1[tx[q].i0] += v * ly * (T(1) - lx);
        row1[tx[q].i1] += v * ly * lx;
      }
    }
  }
}

#define DL_INST(T)                                                                                     \
  template void resize_bilinear_fwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool); \
  template void resize_bilinear_bwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
