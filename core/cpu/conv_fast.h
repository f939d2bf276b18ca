// Fast CPU convolution paths picked by conv.cpp from the geometry; each is tested against the
// direct reference (conv_direct.h) in tests/test_conv_paths.cpp.
#pragma once
#include "core/geometry.h"

namespace dl::cpu {

// Pointwise (1x1, stride 1, no padding, groups 1): one GEMM per image through OpenBLAS.
template <class T>
void conv2d_fwd_pointwise(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g);
template <class T>
void conv2d_bwd_input_pointwise(T* gx, const T* gy, const T* w, const ConvGeom& g);
template <class T>
void conv2d_bwd_weight_pointwise(T* gw, const T* gy, const T* x, const ConvGeom& g);

// Dense (groups 1, any kernel/stride/dilation/padding): im2col + GEMM per image, col2im for grad-input.
template <class T>
void conv2d_fwd_im2col(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g);
template <class T>
void conv2d_bwd_input_im2col(T* gx, const T* gy, const T* w, const ConvGeom& g);
template <class T>
void conv2d_bwd_weight_im2col(T* gw, const T* gy, const T* x, const ConvGeom& g);

// Depthwise (groups == c_in == c_out): direct per-plane kernels, specialised for k = 3, 5, 7.
template <class T>
void conv2d_fwd_depthwise(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g);
template <class T>
void conv2d_bwd_input_depthwise(T* gx, const T* gy, const T* w, const ConvGeom& g);
template <class T>
void conv2d_bwd_weight_depthwise(T* gw, const T* gy, const T* x, const ConvGeom& g);

}  // namespace dl::cpu
