// Plain geometry records shared by the op front-ends, the CPU kernels and the CUDA kernels.
#pragma once
#include <cstdint>

namespace dl {

// 2-D convolution, NCHW input, OIHW weight (I = c_in / groups). Padding is explicit here;
// layers use the symmetric k_eff // 2 of DESIGN.md.
struct ConvGeom {
  int64_t n, c_in, h, w;       // input
  int64_t c_out, kh, kw;       // weight
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;        // top/left padding (bottom/right follows from the output size)
  int64_t dil_h, dil_w;
  int64_t groups;
  int64_t h_out, w_out;
  int64_t cin_per_group() const { return c_in / groups; }
  int64_t cout_per_group() const { return c_out / groups; }
  bool is_depthwise() const { return groups == c_in && c_out == c_in; }
  bool is_pointwise() const {
    return kh == 1 && kw == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0 && groups == 1;
  }
  double macs() const { return double(n) * c_out * h_out * w_out * cin_per_group() * kh * kw; }
};

}  // namespace dl
