// Convolution algorithm selection for the CUDA backend (cuda/conv.cu). Depthwise geometries always
// take cuda/depthwise.cu and 1x1 stride-1 geometries a direct cuBLAS GEMM; the switch picks the path
// of the other (dense / grouped) geometries: im2col + cuBLAS GEMM (default, always available) or
// cuDNN (builds that found it). DEEPERLAB_CONV_ALGO=im2col|cudnn sets it at start-up.
#pragma once

namespace dl::cuda {

enum class ConvAlgo { Im2col, Cudnn };

ConvAlgo conv_algo();
void set_conv_algo(ConvAlgo a);
bool cudnn_built();  // true when the build found cuDNN (DEEPERLAB_WITH_CUDNN)

}  // namespace dl::cuda
