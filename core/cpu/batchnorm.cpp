// Batch normalisation over (N, H, W) per channel. Statistics accumulate in double so float and
// double paths agree and large planes do not lose precision; the sums are vectorised (omp simd
// reductions: a fixed, deterministic order, several partial sums instead of one serial chain).
#include <cmath>

#include "core/cpu/kernels.h"

namespace dl::cpu {

template <class T> void batch_norm_stats(T* mean, T* var, const T* x, int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for if (n * c * hw > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* p = x + (i * c + ch) * hw;
      double ls = 0;
#pragma omp simd reduction(+ : ls)
      for (int64_t j = 0; j < hw; ++j) ls += p[j];
      s += ls;
    }
    const double m = s / double(n * hw);
    for (int64_t i = 0; i < n; ++i) {
      const T* p = x + (i * c + ch) * hw;
      double ls2 = 0;
#pragma omp simd reduction(+ : ls2)
      for (int64_t j = 0; j < hw; ++j) {
        const double d = p[j] - m;
        ls2 += d * d;
      }
      s2 += ls2;
    }
    mean[ch] = static_cast<T>(m);
    var[ch] = static_cast<T>(s2 / double(n * hw));
  }
}

template <class T>
void batch_norm_fwd(T* y, const T* x, const T* mean, const T* invstd, const T* w, const T* b, int64_t n,
                    int64_t c, int64_t hw) {
#pragma omp parallel for collapse(2) if (n * c * hw > 32768)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch) {
      const T a = invstd[ch] * (w ? w[ch] : T(1));
      const T sh = (b ? b[ch] : T(0)) - mean[ch] * a;
      const T* p = x + (i * c + ch) * hw;
      T* q = y + (i * c + ch) * hw;
      for (int64_t j = 0; j < hw; ++j) q[j] = p[j] * a + sh;
    }
}

template <class T>
void batch_norm_bwd_train(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                          const T* w, int64_t n, int64_t c, int64_t hw) {
  const double m = double(n * hw);
#pragma omp parallel for if (n * c * hw > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sg = 0, sgx = 0;  // sum(gy), sum(gy * xhat)
    const double mu = mean[ch], is = invstd[ch];
    for (int64_t i = 0; i < n; ++i) {
      const T* g = gy + (i * c + ch) * hw;
      const T* p = x + (i * c + ch) * hw;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < hw; ++j) {
        sg += g[j];
        sgx += g[j] * (p[j] - mu) * is;
      }
    }
    if (gw) gw[ch] = static_cast<T>(sgx);
    if (gb) gb[ch] = static_cast<T>(sg);
    if (!gx) continue;
    const double wk = w ? double(w[ch]) : 1.0;
    const double mg = sg / m, mgx = sgx / m;
    for (int64_t i = 0; i < n; ++i) {
      const T* g = gy + (i * c + ch) * hw;
      const T* p = x + (i * c + ch) * hw;
      T* o = gx + (i * c + ch) * hw;
      for (int64_t j = 0; j < hw; ++j) {
        const double xh = (p[j] - mu) * is;
        o[j] = static_cast<T>(wk * is * (g[j] - mg - xh * mgx));
      }
    }
  }
}

template <class T>
void batch_norm_bwd_eval(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                         const T* w, int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for if (n * c * hw > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sg = 0, sgx = 0;
    const double mu = mean[ch], is = invstd[ch];
    const T a = static_cast<T>(is * (w ? double(w[ch]) : 1.0));
    for (int64_t i = 0; i < n; ++i) {
      const T* g = gy + (i * c + ch) * hw;
      const T* p = x + (i * c + ch) * hw;
      T* o = gx ? gx + (i * c + ch) * hw : nullptr;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < hw; ++j) {
        sg += g[j];
        sgx += g[j] * (p[j] - mu) * is;
        if (o) o[j] = g[j] * a;
      }
    }
    if (gw) gw[ch] = static_cast<T>(sgx);
    if (gb) gb[ch] = static_cast<T>(sg);
  }
}

#define DL_INST(T)                                                                                           \
  template void batch_norm_stats<T>(T*, T*, const T*, int64_t, int64_t, int64_t);                            \
  template void batch_norm_fwd<T>(T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                  int64_t);                                                                  \
  template void batch_norm_bwd_train<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                        int64_t, int64_t);                                                   \
  template void batch_norm_bwd_eval<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,  \
                                       int64_t, int64_t);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
