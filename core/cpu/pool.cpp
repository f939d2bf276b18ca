// Global average pooling over the spatial dims.
#include "core/cpu/kernels.h"

namespace dl::cpu {

template <class T> void global_avg_pool_fwd(T* y, const T* x, int64_t nc, int64_t hw) {
#pragma omp parallel for if (nc * hw > 32768)
  for (int64_t i = 0; i < nc; ++i) {
    double s = 0;
    const T* p = x + i * hw;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < hw; ++j) s += p[j];
    y[i] = static_cast<T>(s / static_cast<double>(hw));
  }
}
template <class T> void global_avg_pool_bwd(T* gx, const T* gy, int64_t nc, int64_t hw) {
#pragma omp parallel for if (nc * hw > 32768)
  for (int64_t i = 0; i < nc; ++i) {
    const T v = gy[i] / static_cast<T>(hw);
    T* p = gx + i * hw;
    for (int64_t j = 0; j < hw; ++j) p[j] = v;
  }
}

template void global_avg_pool_fwd<float>(float*, const float*, int64_t, int64_t);
template void global_avg_pool_fwd<double>(double*, const double*, int64_t, int64_t);
template void global_avg_pool_bwd<float>(float*, const float*, int64_t, int64_t);
template void global_avg_pool_bwd<double>(double*, const double*, int64_t, int64_t);

}  // namespace dl::cpu
