// Depthwise convolution (groups == c_in == c_out) on the CPU, one (n, c) plane per OpenMP iteration.
// Non-obvious decision: the forward kernel is specialised on (k, stride) and accumulates all k*k
// taps of an output pixel in a register; kernel rows that fall outside the image point at a row of
// zeros, so only the left/right border columns need bounds checks and the interior loop vectorises.
// Grad-input with stride 1 is the same kernel on gy with the flipped filter (a gather, no races);
// with stride > 1 each thread scatters into the one gx plane it owns. Grad-weight is a per-channel
// reduction: row dot products in T, summed across rows in double.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/conv_fast.h"

namespace dl::cpu {
namespace {

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Output columns [lo, hi) for which in-column o*s + off lies in [0, w_in).
inline void valid_range(int64_t off, int64_t s, int64_t w_in, int64_t w_out, int64_t& lo, int64_t& hi) {
  lo = std::min(w_out, std::max<int64_t>(0, ceil_div(-off, s)));
  hi = std::min<int64_t>(w_out, floor_div(w_in - 1 - off, s) + 1);
  if (hi < lo) hi = lo;
}

// One plane: out[oy, ox] = init + sum_{ky,kx} wk[ky,kx] * in[oy*sh - ph + ky*dh, ox*sw - pw + kx*dw]
// (zero outside). Pads may be negative (used by the stride-1 grad-input).
struct PlaneGeom {
  int64_t h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

// K, S > 0: square kernel of size K and horizontal stride S fixed at compile time.
template <class T, int K, int S>
void plane_fwd_fixed(T* __restrict out, const T* __restrict in, const T* __restrict wk, T init, const PlaneGeom& p,
                     const T* zero_row) {
  const int64_t dw = p.dw;
  int64_t lo, hi;  // interior columns: every tap inside the image
  lo = std::min(p.wo, std::max<int64_t>(0, ceil_div(p.pw, S)));
  hi = std::min<int64_t>(p.wo, floor_div(p.w - 1 - (K - 1) * dw + p.pw, S) + 1);
  if (hi < lo) hi = lo;
  T wv[K * K];
  for (int i = 0; i < K * K; ++i) wv[i] = wk[i];
  for (int64_t oy = 0; oy < p.ho; ++oy) {
    const T* rows[K];
    for (int ky = 0; ky < K; ++ky) {
      const int64_t iy = oy * p.sh - p.ph + ky * p.dh;
      rows[ky] = (iy >= 0 && iy < p.h) ? in + iy * p.w : zero_row;
    }
    T* __restrict yr = out + oy * p.wo;
    auto border = [&](int64_t ox) {
      T acc = init;
      for (int ky = 0; ky < K; ++ky)
        for (int kx = 0; kx < K; ++kx) {
          const int64_t ix = ox * S - p.pw + kx * dw;
          if (ix >= 0 && ix < p.w) acc += wv[ky * K + kx] * rows[ky][ix];
        }
      yr[ox] = acc;
    };
    for (int64_t ox = 0; ox < lo; ++ox) border(ox);
    // Base pointers shifted by -pw: the interior never indexes below 0.
    const int64_t base = -p.pw;
#pragma omp simd
    for (int64_t ox = lo; ox < hi; ++ox) {
      T acc = init;
      for (int ky = 0; ky < K; ++ky) {
        const T* r = rows[ky] + (base + ox * S);
        for (int kx = 0; kx < K; ++kx) acc += wv[ky * K + kx] * r[kx * dw];
      }
      yr[ox] = acc;
    }
    for (int64_t ox = hi; ox < p.wo; ++ox) border(ox);
  }
}

// Any kernel/stride: accumulate tap by tap over the valid column range of each tap (no checks inside).
template <class T>
void plane_fwd_generic(T* __restrict out, const T* __restrict in, const T* __restrict wk, T init, const PlaneGeom& p) {
  for (int64_t oy = 0; oy < p.ho; ++oy) {
    T* __restrict yr = out + oy * p.wo;
    for (int64_t ox = 0; ox < p.wo; ++ox) yr[ox] = init;
    for (int64_t ky = 0; ky < p.kh; ++ky) {
      const int64_t iy = oy * p.sh - p.ph + ky * p.dh;
      if (iy < 0 || iy >= p.h) continue;
      const T* xr = in + iy * p.w;
      for (int64_t kx = 0; kx < p.kw; ++kx) {
        const int64_t off = kx * p.dw - p.pw;
        int64_t lo, hi;
        valid_range(off, p.sw, p.w, p.wo, lo, hi);
        const T wv = wk[ky * p.kw + kx];
#pragma omp simd
        for (int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * p.sw + off];
      }
    }
  }
}

template <class T>
void plane_fwd(T* out, const T* in, const T* wk, T init, const PlaneGeom& p, const T* zero_row) {
  const bool sq = p.kh == p.kw && p.sh == p.sw;
#define DL_DW_CASE(K, S)                                               \
  if (sq && p.kw == K && p.sw == S) {                                  \
    plane_fwd_fixed<T, K, S>(out, in, wk, init, p, zero_row);          \
    return;                                                            \
  }
  DL_DW_CASE(3, 1) DL_DW_CASE(3, 2) DL_DW_CASE(5, 1) DL_DW_CASE(5, 2) DL_DW_CASE(7, 1) DL_DW_CASE(7, 2)
#undef DL_DW_CASE
  plane_fwd_generic(out, in, wk, init, p);
}

PlaneGeom fwd_plane_geom(const ConvGeom& g) {
  return {g.h, g.w, g.h_out, g.w_out, g.kh, g.kw, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w};
}

}  // namespace

template <class T> void conv2d_fwd_depthwise(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const PlaneGeom p = fwd_plane_geom(g);
  const int64_t hw = g.h * g.w, ohw = g.h_out * g.w_out, kk = g.kh * g.kw;
#pragma omp parallel
  {
    const std::vector<T> zero_row(g.w, T(0));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t c = 0; c < g.c_in; ++c)
        plane_fwd(y + (n * g.c_in + c) * ohw, x + (n * g.c_in + c) * hw, w + c * kk, bias ? bias[c] : T(0), p,
                  zero_row.data());
  }
}

template <class T> void conv2d_bwd_input_depthwise(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  const int64_t hw = g.h * g.w, ohw = g.h_out * g.w_out, kk = g.kh * g.kw;
  if (g.stride_h == 1 && g.stride_w == 1) {
    // gx = conv(gy, flip(w)) with padding (k-1)*d - pad, stride 1: a gather per gx pixel.
    const PlaneGeom p{g.h_out, g.w_out, g.h, g.w, g.kh, g.kw, 1, 1,
                      (g.kh - 1) * g.dil_h - g.pad_h, (g.kw - 1) * g.dil_w - g.pad_w, g.dil_h, g.dil_w};
#pragma omp parallel
    {
      const std::vector<T> zero_row(g.w_out, T(0));
      std::vector<T> wf(kk);
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t c = 0; c < g.c_in; ++c) {
          const T* wc = w + c * kk;
          for (int64_t i = 0; i < kk; ++i) wf[i] = wc[kk - 1 - i];
          plane_fwd(gx + (n * g.c_in + c) * hw, gy + (n * g.c_in + c) * ohw, wf.data(), T(0), p, zero_row.data());
        }
    }
    return;
  }
  // Strided: scatter tap by tap into the gx plane this iteration owns.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c_in; ++c) {
      T* __restrict gxp = gx + (n * g.c_in + c) * hw;
      const T* __restrict gyp = gy + (n * g.c_in + c) * ohw;
      const T* wc = w + c * kk;
      std::memset(gxp, 0, sizeof(T) * hw);
      for (int64_t oy = 0; oy < g.h_out; ++oy) {
        const T* gyr = gyp + oy * g.w_out;
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
          if (iy < 0 || iy >= g.h) continue;
          T* gxr = gxp + iy * g.w;
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            const int64_t off = kx * g.dil_w - g.pad_w;
            int64_t lo, hi;
            valid_range(off, g.stride_w, g.w, g.w_out, lo, hi);
            const T wv = wc[ky * g.kw + kx];
            const int64_t s = g.stride_w;
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) gxr[ox * s + off] += wv * gyr[ox];
          }
        }
      }
    }
}

template <class T> void conv2d_bwd_weight_depthwise(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  const int64_t hw = g.h * g.w, ohw = g.h_out * g.w_out, kk = g.kh * g.kw;
  // Per channel: gw[ky, kx] = sum_n sum_oy dot(gy row, shifted x row); no sharing between threads.
#pragma omp parallel
  {
    std::vector<double> acc(kk);
    std::vector<int64_t> lo(g.kw), hi(g.kw), off(g.kw);
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      off[kx] = kx * g.dil_w - g.pad_w;
      valid_range(off[kx], g.stride_w, g.w, g.w_out, lo[kx], hi[kx]);
    }
    const int64_t s = g.stride_w;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.c_in; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.n; ++n) {
        const T* xp = x + (n * g.c_in + c) * hw;
        const T* gyp = gy + (n * g.c_in + c) * ohw;
        for (int64_t oy = 0; oy < g.h_out; ++oy) {
          const T* __restrict gyr = gyp + oy * g.w_out;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
            if (iy < 0 || iy >= g.h) continue;
            const T* __restrict xr = xp + iy * g.w;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t o = off[kx];
              T d = 0;
#pragma omp simd reduction(+ : d)
              for (int64_t ox = lo[kx]; ox < hi[kx]; ++ox) d += gyr[ox] * xr[ox * s + o];
              acc[ky * g.kw + kx] += d;
            }
          }
        }
      }
      for (int64_t i = 0; i < kk; ++i) gw[c * kk + i] = static_cast<T>(acc[i]);
    }
  }
}

#define DL_INST(T)                                                                         \
  template void conv2d_fwd_depthwise<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input_depthwise<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight_depthwise<T>(T*, const T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
