// Plain loop-nest convolution for any groups/stride/dilation/padding: the oracle every faster
// path (im2col + GEMM, 1x1 GEMM, depthwise, CUDA) is tested against.
#include <cstring>

#include "core/cpu/conv_direct.h"

namespace dl::cpu {

template <class T> void conv2d_fwd_direct(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const int64_t cig = g.cin_per_group(), cog = g.cout_per_group();
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t co = 0; co < g.c_out; ++co) {
      const int64_t grp = co / cog;
      T* yp = y + (n * g.c_out + co) * g.h_out * g.w_out;
      for (int64_t oy = 0; oy < g.h_out; ++oy)
        for (int64_t ox = 0; ox < g.w_out; ++ox) {
          T acc = bias ? bias[co] : T(0);
          for (int64_t ci = 0; ci < cig; ++ci) {
            const T* xp = x + (n * g.c_in + grp * cig + ci) * g.h * g.w;
            const T* wp = w + (co * cig + ci) * g.kh * g.kw;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
              const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
              if (iy < 0 || iy >= g.h) continue;
              for (int64_t kx = 0; kx < g.kw; ++kx) {
                const int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dil_w;
                if (ix < 0 || ix >= g.w) continue;
                acc += xp[iy * g.w + ix] * wp[ky * g.kw + kx];
              }
            }
          }
          yp[oy * g.w_out + ox] = acc;
        }
    }
}

template <class T> void conv2d_bwd_input_direct(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  const int64_t cig = g.cin_per_group(), cog = g.cout_per_group();
  std::memset(gx, 0, sizeof(T) * g.n * g.c_in * g.h * g.w);
  // Parallel over (n, input channel): each thread owns its gx plane, so no races.
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t cin = 0; cin < g.c_in; ++cin) {
      const int64_t grp = cin / cig, ci = cin % cig;
      T* gxp = gx + (n * g.c_in + cin) * g.h * g.w;
      for (int64_t col = 0; col < cog; ++col) {
        const int64_t co = grp * cog + col;
        const T* gyp = gy + (n * g.c_out + co) * g.h_out * g.w_out;
        const T* wp = w + (co * cig + ci) * g.kh * g.kw;
        for (int64_t oy = 0; oy < g.h_out; ++oy)
          for (int64_t ox = 0; ox < g.w_out; ++ox) {
            const T gv = gyp[oy * g.w_out + ox];
            for (int64_t ky = 0; ky < g.kh; ++ky) {
              const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
              if (iy < 0 || iy >= g.h) continue;
              for (int64_t kx = 0; kx < g.kw; ++kx) {
                const int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dil_w;
                if (ix < 0 || ix >= g.w) continue;
                gxp[iy * g.w + ix] += gv * wp[ky * g.kw + kx];
              }
            }
          }
      }
    }
}

template <class T> void conv2d_bwd_weight_direct(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  const int64_t cig = g.cin_per_group(), cog = g.cout_per_group();
#pragma omp parallel for collapse(2)
  for (int64_t co = 0; co < g.c_out; ++co)
    for (int64_t ci = 0; ci < cig; ++ci) {
      const int64_t grp = co / cog;
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          T acc = 0;
          for (int64_t n = 0; n < g.n; ++n) {
            const T* xp = x + (n * g.c_in + grp * cig + ci) * g.h * g.w;
            const T* gyp = gy + (n * g.c_out + co) * g.h_out * g.w_out;
            for (int64_t oy = 0; oy < g.h_out; ++oy) {
              const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
              if (iy < 0 || iy >= g.h) continue;
              for (int64_t ox = 0; ox < g.w_out; ++ox) {
                const int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dil_w;
                if (ix < 0 || ix >= g.w) continue;
                acc += gyp[oy * g.w_out + ox] * xp[iy * g.w + ix];
              }
            }
          }
          gw[((co * cig + ci) * g.kh + ky) * g.kw + kx] = acc;
        }
    }
}

template <class T> void conv2d_bwd_bias(T* gb, const T* gy, const ConvGeom& g) {
  const int64_t hw = g.h_out * g.w_out;
#pragma omp parallel for
  for (int64_t co = 0; co < g.c_out; ++co) {
    double s = 0;
    for (int64_t n = 0; n < g.n; ++n) {
      const T* p = gy + (n * g.c_out + co) * hw;
      for (int64_t j = 0; j < hw; ++j) s += p[j];
    }
    gb[co] = static_cast<T>(s);
  }
}

#define DL_INST(T)                                                                      \
  template void conv2d_fwd_direct<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input_direct<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight_direct<T>(T*, const T*, const T*, const ConvGeom&);    \
  template void conv2d_bwd_bias<T>(T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
