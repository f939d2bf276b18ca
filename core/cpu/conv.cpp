// Convolution entry points: pick the fastest correct path for the geometry.
//   pointwise 1x1 (stride 1, no padding, groups 1) -> one GEMM per image (conv_gemm.cpp)
//   depthwise (groups == c_in == c_out)            -> direct per-plane kernels (conv_depthwise.cpp)
//   dense (groups 1, anything else)                -> im2col + GEMM (conv_gemm.cpp)
//   grouped, not depthwise                         -> the direct reference (conv_direct.cpp)
// Depthwise is tested before pointwise so a 1-channel 1x1 convolution takes the cheaper plane kernel.
#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_fast.h"
#include "core/cpu/kernels.h"

namespace dl::cpu {
namespace {
enum class ConvPath { Pointwise, Depthwise, Im2col, Direct };
ConvPath conv_path(const ConvGeom& g) {
  if (g.is_depthwise()) return ConvPath::Depthwise;
  if (g.is_pointwise()) return ConvPath::Pointwise;
  if (g.groups == 1) return ConvPath::Im2col;
  return ConvPath::Direct;
}
}  // namespace

template <class T>
void conv2d_fwd(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  switch (conv_path(g)) {
    case ConvPath::Pointwise:
      return conv2d_fwd_pointwise(y, x, w, bias, g);
    case ConvPath::Depthwise:
      return conv2d_fwd_depthwise(y, x, w, bias, g);
    case ConvPath::Im2col:
      return conv2d_fwd_im2col(y, x, w, bias, g);
    case ConvPath::Direct:
      return conv2d_fwd_direct(y, x, w, bias, g);
  }
}
template <class T>
void conv2d_bwd_input(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  switch (conv_path(g)) {
    case ConvPath::Pointwise:
      return conv2d_bwd_input_pointwise(gx, gy, w, g);
    case ConvPath::Depthwise:
      return conv2d_bwd_input_depthwise(gx, gy, w, g);
    case ConvPath::Im2col:
      return conv2d_bwd_input_im2col(gx, gy, w, g);
    case ConvPath::Direct:
      return conv2d_bwd_input_direct(gx, gy, w, g);
  }
}
template <class T>
void conv2d_bwd_weight(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  switch (conv_path(g)) {
    case ConvPath::Pointwise:
      return conv2d_bwd_weight_pointwise(gw, gy, x, g);
    case ConvPath::Depthwise:
      return conv2d_bwd_weight_depthwise(gw, gy, x, g);
    case ConvPath::Im2col:
      return conv2d_bwd_weight_im2col(gw, gy, x, g);
    case ConvPath::Direct:
      return conv2d_bwd_weight_direct(gw, gy, x, g);
  }
}

#define DL_INST(T)                                                                \
  template void conv2d_fwd<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight<T>(T*, const T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
