// Kernels that only move elements: concat/slice columns, pad/crop windows, space-to-depth and
// depth-to-space in TensorFlow's channel order out_c = (dy * b + dx) * C + c.
#include <cstring>

#include "core/cpu/kernels.h"

namespace dl::cpu {

template <class T>
void copy_columns(T* dst, const T* src, int64_t outer, int64_t inner_dst, int64_t inner_src, int64_t offset,
                  bool into_dst) {
#pragma omp parallel for if (outer * inner_src > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    if (into_dst)
      std::memcpy(dst + o * inner_dst + offset, src + o * inner_src, inner_src * sizeof(T));
    else  // slice: dst is (outer, inner_src), src is (outer, inner_dst)
      std::memcpy(dst + o * inner_src, src + o * inner_dst + offset, inner_src * sizeof(T));
  }
}

template <class T>
void crop2d_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
                int64_t ow) {
#pragma omp parallel for if (nc * oh * ow > 32768)
  for (int64_t i = 0; i < nc; ++i)
    for (int64_t r = 0; r < oh; ++r)
      std::memcpy(y + (i * oh + r) * ow, x + (i * h + r + top) * w + left, ow * sizeof(T));
}

template <class T>
void pad2d_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
               int64_t ow) {
#pragma omp parallel for if (nc * oh * ow > 32768)
  for (int64_t i = 0; i < nc; ++i) {
    T* yi = y + i * oh * ow;
    std::memset(yi, 0, oh * ow * sizeof(T));
    for (int64_t r = 0; r < h; ++r) std::memcpy(yi + (r + top) * ow + left, x + (i * h + r) * w, w * sizeof(T));
  }
}

template <class T>
void space_to_depth_fwd(T* y, const T* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b) {
  const int64_t oh = h / b, ow = w / b, oc = c * b * b;
#pragma omp parallel for collapse(2) if (n * c * h * w > 32768)
  for (int64_t in = 0; in < n; ++in)
    for (int64_t co = 0; co < oc; ++co) {
      const int64_t blk = co / c, ci = co % c, dy = blk / b, dx = blk % b;
      const T* xs = x + (in * c + ci) * h * w;
      T* yd = y + (in * oc + co) * oh * ow;
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t q = 0; q < ow; ++q) yd[r * ow + q] = xs[(r * b + dy) * w + q * b + dx];
    }
}

template <class T>
void depth_to_space_fwd(T* y, const T* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b) {
  const int64_t oc = c / (b * b), oh = h * b, ow = w * b;
#pragma omp parallel for collapse(2) if (n * c * h * w > 32768)
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ci = 0; ci < c; ++ci) {
      const int64_t blk = ci / oc, co = ci % oc, dy = blk / b, dx = blk % b;
      const T* xs = x + (in * c + ci) * h * w;
      T* yd = y + (in * oc + co) * oh * ow;
      for (int64_t r = 0; r < h; ++r)
        for (int64_t q = 0; q < w; ++q) yd[(r * b + dy) * ow + q * b + dx] = xs[r * w + q];
    }
}

#define DL_INST(T)                                                                                      \
  template void copy_columns<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, bool);                \
  template void crop2d_fwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t); \
  template void pad2d_fwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);  \
  template void space_to_depth_fwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t);       \
  template void depth_to_space_fwd<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t);
DL_INST(float)
DL_INST(double)
DL_INST(int32_t)
DL_INST(uint8_t)
#undef DL_INST

}  // namespace dl::cpu
