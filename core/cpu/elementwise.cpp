// Elementwise kernels and full reductions. Simple OpenMP loops the compiler vectorises.
#include <algorithm>
#include <cmath>

#include "core/cpu/kernels.h"

namespace dl::cpu {

template <class T> void relu_fwd(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <class T> void relu_bwd(T* gx, const T* gy, const T* y, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) gx[i] = y[i] > T(0) ? gy[i] : T(0);
}
template <class T> void relu6_fwd(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    // Written as selects, not std::min/max (GCC left those scalar and branchy); NaN still propagates.
    const T v = x[i] < T(0) ? T(0) : x[i];
    y[i] = v > T(6) ? T(6) : v;
  }
}
template <class T> void relu6_bwd(T* gx, const T* gy, const T* x, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) gx[i] = (x[i] > T(0) && x[i] < T(6)) ? gy[i] : T(0);
}
template <class T> void sigmoid_fwd(T* y, const T* x, int64_t n) {
#pragma omp parallel for if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    // Stable on both tails.
    T v = x[i];
    if (v >= 0) {
      y[i] = T(1) / (T(1) + std::exp(-v));
    } else {
      T e = std::exp(v);
      y[i] = e / (T(1) + e);
    }
  }
}
template <class T> void sigmoid_bwd(T* gx, const T* gy, const T* y, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * y[i] * (T(1) - y[i]);
}
template <class T> void add_fwd(T* y, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
template <class T> void sub_fwd(T* y, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] - b[i];
}
template <class T> void mul_fwd(T* y, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
template <class T> void scale_fwd(T* y, const T* x, T s, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}
template <class T> void axpy(T* y, T a, const T* x, int64_t n) {
#pragma omp parallel for simd if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}
template <class T> double sum_all(const T* x, int64_t n) {
  // Fixed chunking keeps the result independent of the thread schedule for a given thread count.
  double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (parallel : n > 32768)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
  return s;
}
template <class T> void fill(T* y, T v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

#define DL_INST(T)                                              \
  template void relu_fwd<T>(T*, const T*, int64_t);             \
  template void relu_bwd<T>(T*, const T*, const T*, int64_t);   \
  template void relu6_fwd<T>(T*, const T*, int64_t);            \
  template void relu6_bwd<T>(T*, const T*, const T*, int64_t);  \
  template void sigmoid_fwd<T>(T*, const T*, int64_t);          \
  template void sigmoid_bwd<T>(T*, const T*, const T*, int64_t); \
  template void add_fwd<T>(T*, const T*, const T*, int64_t);    \
  template void sub_fwd<T>(T*, const T*, const T*, int64_t);    \
  template void mul_fwd<T>(T*, const T*, const T*, int64_t);    \
  template void scale_fwd<T>(T*, const T*, T, int64_t);         \
  template void axpy<T>(T*, T, const T*, int64_t);              \
  template double sum_all<T>(const T*, int64_t);                \
  template void fill<T>(T*, T, int64_t);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
