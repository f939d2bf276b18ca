// Convolution as matrix products (float: core/cpu/sgemm.cpp, double: OpenBLAS): pointwise 1x1 directly
// on the NCHW planes, dense convolutions through im2col (col2im for grad-input), one image at a time.
// Non-obvious decision: the GEMMs run single-threaded and OpenMP does all the threading: each GEMM is
// split into column (or row) panels, one single-threaded GEMM call per OpenMP thread. OpenBLAS's own
// pthread pool spins (sched_yield) for a while after every call it serves; on a small machine that
// steals the cores from the OpenMP loops of the next layer, and the two pools must never nest.
// The column buffer covers a block of output rows (rows_per_block), allocated once per call.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/conv_fast.h"
#include "core/cpu/sgemm.h"

namespace dl::cpu {
namespace {

constexpr int64_t kColBytes = int64_t(4) << 20, kMinBlockCols = 1024;

inline void gemm1(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm1(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
                  const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(k), 1.0, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// A small C with a long depth (grad-weight of a thin layer on a big map): each thread takes a slice of
// the depth into its own partial C, then the partials are summed into C.
template <class T>
void gemm_split_depth(int64_t threads, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                      const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const int64_t parts = std::min<int64_t>(threads, k / 512);
  const int64_t chunk = (k + parts - 1) / parts;
  std::vector<T> partial(size_t((parts - 1) * m * n));
#pragma omp parallel for schedule(static) num_threads(int(parts))
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t lo = p * chunk, len = std::min(k, lo + chunk) - lo;
    const T* ap = ta ? a + lo * lda : a + lo;
    const T* bp = tb ? b + lo : b + lo * ldb;
    if (p == 0)
      gemm1(ta, tb, m, n, len, ap, lda, bp, ldb, beta, c, ldc);
    else
      gemm1(ta, tb, m, n, len, ap, lda, bp, ldb, T(0), partial.data() + (p - 1) * m * n, n);
  }
  for (int64_t p = 1; p < parts; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += partial[size_t(((p - 1) * m + i) * n + j)];
}

// Row-major C[M,N] = op(A) * op(B) + beta * C, split over the OpenMP threads along N (or M when N is
// the smaller side); every panel is one single-threaded GEMM call. Called outside parallel regions.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
  blas_single_threaded();
  const int64_t nt = std::max(1, omp_get_max_threads());
  const bool split_n = n >= m;
  const int64_t len = split_n ? n : m;
  // Panels of at least 64 columns/rows (GEMM packing is amortised); a multiple of 16 keeps them aligned.
  const int64_t parts = std::max<int64_t>(1, std::min(nt, len / 64));
  if (parts == 1 && nt > 1 && k >= 1024)
    return gemm_split_depth(nt, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  if (parts == 1) return gemm1(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  const int64_t chunk = (len + parts - 1) / parts / 16 * 16 + 16;
#pragma omp parallel for schedule(static) num_threads(int(parts))
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t lo = std::min(len, p * chunk), hi = std::min(len, lo + chunk);
    if (hi <= lo) continue;
    if (split_n) {  // columns [lo, hi) of B and C
      const T* bp = tb ? b + lo * ldb : b + lo;
      gemm1(ta, tb, m, hi - lo, k, a, lda, bp, ldb, beta, c + lo, ldc);
    } else {  // rows [lo, hi) of A and C
      const T* ap = ta ? a + lo : a + lo * lda;
      gemm1(ta, tb, hi - lo, n, k, ap, lda, b, ldb, beta, c + lo * ldc, ldc);
    }
  }
}

// y[co, :] = bias[co] for one image (so the GEMM can accumulate with beta = 1).
template <class T>
void fill_bias(T* y, const T* bias, int64_t c_out, int64_t hw) {
#pragma omp parallel for schedule(static)
  for (int64_t co = 0; co < c_out; ++co) std::fill(y + co * hw, y + (co + 1) * hw, bias[co]);
}

inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
inline int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}
inline void valid_range(int64_t off, int64_t s, int64_t w_in, int64_t w_out, int64_t& lo, int64_t& hi) {
  lo = std::min(w_out, std::max<int64_t>(0, ceil_div(-off, s)));
  hi = std::min<int64_t>(w_out, floor_div(w_in - 1 - off, s) + 1);
  if (hi < lo) hi = lo;
}

// col[(c*kh + ky)*kw + kx, (oy - oy0)*w_out + ox] = x[c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] (0 outside),
// for output rows [oy0, oy1) of one image.
template <class T>
void im2col(T* col, const T* x, const ConvGeom& g, int64_t oy0, int64_t oy1) {
  const int64_t rows = g.c_in * g.kh * g.kw, ncol = (oy1 - oy0) * g.w_out;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t kx = r % g.kw, ky = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
    const T* xp = x + c * g.h * g.w;
    T* cp = col + r * ncol;
    const int64_t off = kx * g.dil_w - g.pad_w, s = g.stride_w;
    int64_t lo, hi;
    valid_range(off, s, g.w, g.w_out, lo, hi);
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      T* dst = cp + (oy - oy0) * g.w_out;
      const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
      if (iy < 0 || iy >= g.h) {
        std::memset(dst, 0, sizeof(T) * g.w_out);
        continue;
      }
      const T* xr = xp + iy * g.w;
      for (int64_t ox = 0; ox < lo; ++ox) dst[ox] = 0;
      if (s == 1)
        std::memcpy(dst + lo, xr + lo + off, sizeof(T) * (hi - lo));
      else
        for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = xr[ox * s + off];
      for (int64_t ox = hi; ox < g.w_out; ++ox) dst[ox] = 0;
    }
  }
}

// gx[c, ...] += the entries of col that im2col read from it; parallel over c so each thread owns
// its gx plane.
template <class T>
void col2im_add(T* gx, const T* col, const ConvGeom& g, int64_t oy0, int64_t oy1) {
  const int64_t ncol = (oy1 - oy0) * g.w_out;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < g.c_in; ++c) {
    T* __restrict gxp = gx + c * g.h * g.w;
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const T* __restrict cp = col + ((c * g.kh + ky) * g.kw + kx) * ncol;
        const int64_t off = kx * g.dil_w - g.pad_w, s = g.stride_w;
        int64_t lo, hi;
        valid_range(off, s, g.w, g.w_out, lo, hi);
        for (int64_t oy = oy0; oy < oy1; ++oy) {
          const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
          if (iy < 0 || iy >= g.h) continue;
          T* gxr = gxp + iy * g.w;
          const T* src = cp + (oy - oy0) * g.w_out;
#pragma omp simd
          for (int64_t ox = lo; ox < hi; ++ox) gxr[ox * s + off] += src[ox];
        }
      }
  }
}

// Output rows per column block: as many as fit in kColBytes (the block then stays in the last-level
// cache between im2col and the GEMM), but at least kMinBlockCols columns (each GEMM call packs all
// of W), spread evenly so the last block is not a sliver.
template <class T>
int64_t rows_per_block(const ConvGeom& g) {
  const int64_t row_bytes = g.c_in * g.kh * g.kw * g.w_out * int64_t(sizeof(T));
  const int64_t by_bytes = kColBytes / std::max<int64_t>(row_bytes, 1);
  const int64_t by_cols = (kMinBlockCols + g.w_out - 1) / g.w_out;
  const int64_t rows = std::clamp<int64_t>(std::max(by_bytes, by_cols), 1, g.h_out);
  const int64_t blocks = (g.h_out + rows - 1) / rows;
  return (g.h_out + blocks - 1) / blocks;
}

}  // namespace

// ---- pointwise: per image Y[cout, HW] = W[cout, cin] * X[cin, HW] ----
template <class T>
void conv2d_fwd_pointwise(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const int64_t hw = g.h * g.w;
  for (int64_t n = 0; n < g.n; ++n) {
    T* yn = y + n * g.c_out * hw;
    if (bias) fill_bias(yn, bias, g.c_out, hw);
    gemm(false, false, g.c_out, hw, g.c_in, w, g.c_in, x + n * g.c_in * hw, hw, bias ? T(1) : T(0), yn, hw);
  }
}

template <class T>
void conv2d_bwd_input_pointwise(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  const int64_t hw = g.h * g.w;
  for (int64_t n = 0; n < g.n; ++n)  // gX[cin, HW] = W^T * gY
    gemm(true, false, g.c_in, hw, g.c_out, w, g.c_in, gy + n * g.c_out * hw, hw, T(0), gx + n * g.c_in * hw,
         hw);
}

template <class T>
void conv2d_bwd_weight_pointwise(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  const int64_t hw = g.h * g.w;
  for (int64_t n = 0; n < g.n; ++n)  // gW[cout, cin] += gY * X^T
    gemm(false, true, g.c_out, g.c_in, hw, gy + n * g.c_out * hw, hw, x + n * g.c_in * hw, hw,
         n ? T(1) : T(0), gw, g.c_in);
}

// ---- dense: per image and block of output rows, Y[cout, rows] = W[cout, cin*kh*kw] * col ----
template <class T>
void conv2d_fwd_im2col(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const int64_t k = g.c_in * g.kh * g.kw, ohw = g.h_out * g.w_out, rb = rows_per_block<T>(g);
  std::vector<T> col(size_t(k * rb * g.w_out));
  for (int64_t n = 0; n < g.n; ++n) {
    T* yn = y + n * g.c_out * ohw;
    if (bias) fill_bias(yn, bias, g.c_out, ohw);
    for (int64_t oy0 = 0; oy0 < g.h_out; oy0 += rb) {
      const int64_t oy1 = std::min(g.h_out, oy0 + rb), nc = (oy1 - oy0) * g.w_out;
      im2col(col.data(), x + n * g.c_in * g.h * g.w, g, oy0, oy1);
      gemm(false, false, g.c_out, nc, k, w, k, col.data(), nc, bias ? T(1) : T(0), yn + oy0 * g.w_out, ohw);
    }
  }
}

template <class T>
void conv2d_bwd_input_im2col(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  const int64_t k = g.c_in * g.kh * g.kw, ohw = g.h_out * g.w_out, rb = rows_per_block<T>(g);
  std::vector<T> col(size_t(k * rb * g.w_out));
  std::memset(gx, 0, sizeof(T) * g.n * g.c_in * g.h * g.w);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy0 = 0; oy0 < g.h_out; oy0 += rb) {
      const int64_t oy1 = std::min(g.h_out, oy0 + rb), nc = (oy1 - oy0) * g.w_out;
      // col[K, rows] = W^T * gY[:, rows]
      gemm(true, false, k, nc, g.c_out, w, k, gy + n * g.c_out * ohw + oy0 * g.w_out, ohw, T(0), col.data(),
           nc);
      col2im_add(gx + n * g.c_in * g.h * g.w, col.data(), g, oy0, oy1);
    }
}

template <class T>
void conv2d_bwd_weight_im2col(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  const int64_t k = g.c_in * g.kh * g.kw, ohw = g.h_out * g.w_out, rb = rows_per_block<T>(g);
  std::vector<T> col(size_t(k * rb * g.w_out));
  bool first = true;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy0 = 0; oy0 < g.h_out; oy0 += rb) {
      const int64_t oy1 = std::min(g.h_out, oy0 + rb), nc = (oy1 - oy0) * g.w_out;
      im2col(col.data(), x + n * g.c_in * g.h * g.w, g, oy0, oy1);
      // gW[cout, K] += gY[:, rows] * col^T
      gemm(false, true, g.c_out, k, nc, gy + n * g.c_out * ohw + oy0 * g.w_out, ohw, col.data(), nc,
           first ? T(0) : T(1), gw, k);
      first = false;
    }
}

#define DL_INST(T)                                                                          \
  template void conv2d_fwd_pointwise<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input_pointwise<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight_pointwise<T>(T*, const T*, const T*, const ConvGeom&);    \
  template void conv2d_fwd_im2col<T>(T*, const T*, const T*, const T*, const ConvGeom&);    \
  template void conv2d_bwd_input_im2col<T>(T*, const T*, const T*, const ConvGeom&);        \
  template void conv2d_bwd_weight_im2col<T>(T*, const T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
