// Op front-ends: check shapes, dtypes and devices (errors name the op and the shapes), allocate
// the output, dispatch to cpu:: or cuda:: kernels, and record the autograd Node.
// Float ops accept F32 on every device and F64 on the CPU (for gradient checks).
#pragma once
#include <vector>

#include "core/autograd.h"
#include "core/geometry.h"
#include "core/tensor.h"

namespace dl {

// ---- convolution ----
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  // Symmetric "same"-style padding k_eff // 2 with k_eff = k + (k-1)(d-1) (DESIGN.md section 4).
  static Conv2dOptions same(int64_t k, int64_t stride = 1, int64_t dilation = 1, int64_t groups = 1);
};
// x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), bias (C_out) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt);
ConvGeom conv_geometry(const Shape& x, const Shape& w, const Conv2dOptions& opt);

// ---- normalisation ----
// Train: normalise with batch statistics (biased variance) and update the running stats in place
// with unbiased variance, running = (1 - momentum) * running + momentum * batch (PyTorch's rule).
// Eval: normalise with the running stats. weight/bias (C) may be undefined (affine off).
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps);

// ---- elementwise ----
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shapes
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);  // x * s

// ---- reductions ----
Tensor sum(const Tensor& x);   // -> scalar (shape {})
Tensor mean(const Tensor& x);  // -> scalar
Tensor global_avg_pool(const Tensor& x);  // (N, C, H, W) -> (N, C, 1, 1)

// ---- shape ----
Tensor reshape(const Tensor& x, const Shape& shape);  // shares storage; -1 infers one dim
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
// Zero padding of the last two dims.
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right);
// The window [top, top + h) x [left, left + w) of the last two dims.
Tensor crop2d(const Tensor& x, int64_t top, int64_t left, int64_t h, int64_t w);
// TensorFlow channel order: out_c = (dy * b + dx) * C + c. depth_to_space is the exact inverse.
Tensor space_to_depth(const Tensor& x, int64_t block);
Tensor depth_to_space(const Tensor& x, int64_t block);
// Bilinear resize of the last two dims (PyTorch's align_corners semantics, no antialiasing).
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners);

// ---- helpers used by backward passes and optimizers (no autograd) ----
void add_inplace(Tensor& acc, const Tensor& x);  // acc += x
void axpy_inplace(Tensor& y, double a, const Tensor& x);  // y += a * x

// Checks shared by op front-ends.
void check_float(const char* op, const Tensor& t, const char* what);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);

}  // namespace dl
