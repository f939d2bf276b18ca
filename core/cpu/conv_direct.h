// The reference (direct loop-nest) convolution; see conv_direct.cpp.
#pragma once
#include "core/geometry.h"

namespace dl::cpu {
template <class T> void conv2d_fwd_direct(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g);
template <class T> void conv2d_bwd_input_direct(T* gx, const T* gy, const T* w, const ConvGeom& g);
template <class T> void conv2d_bwd_weight_direct(T* gw, const T* gy, const T* x, const ConvGeom& g);
}  // namespace dl::cpu
