// Depthwise convolution (groups == c_in == c_out), called by conv.cu's dispatch.
#pragma once
#include "core/geometry.h"
#include "cuda/runtime.h"

namespace dl::cuda {

void depthwise_fwd(float* y, const float* x, const float* w, const float* bias, const ConvGeom& g,
                   cudaStream_t s);
void depthwise_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s);
void depthwise_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s);

}  // namespace dl::cuda
