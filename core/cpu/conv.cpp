// Convolution entry points: pick the fastest correct path for the geometry.
// (For now every geometry takes the direct reference path; fast paths dispatch from here.)
#include "core/cpu/conv_direct.h"
#include "core/cpu/kernels.h"

namespace dl::cpu {

template <class T> void conv2d_fwd(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  conv2d_fwd_direct(y, x, w, bias, g);
}
template <class T> void conv2d_bwd_input(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  conv2d_bwd_input_direct(gx, gy, w, g);
}
template <class T> void conv2d_bwd_weight(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  conv2d_bwd_weight_direct(gw, gy, x, g);
}

#define DL_INST(T)                                                               \
  template void conv2d_fwd<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight<T>(T*, const T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
