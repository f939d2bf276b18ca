// Op front-ends. Pattern of every op: check inputs (errors name the op and the shapes), allocate the
// output, run the CPU kernel (float or double) or the CUDA kernel (float), record a Node whose
// backward calls the matching backward kernels.
#include "core/ops.h"

#include <cmath>

#include "core/cpu/kernels.h"
#include "core/dispatch.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/kernels.h"
#endif

namespace dl {

void check_float(const char* op, const Tensor& t, const char* what) {
  DL_CHECK(t.defined(), op << ": " << what << " is undefined");
  DL_CHECK(t.dtype() == DType::F32 || (t.dtype() == DType::F64 && t.device() == Device::CPU),
           op << ": " << what << " must be F32 (or F64 on the CPU), got " << t.desc());
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return;
  DL_CHECK(a.device() == b.device(), op << ": tensors on different devices: " << a.desc() << " and " << b.desc());
  DL_CHECK(a.dtype() == b.dtype(), op << ": dtypes differ: " << a.desc() << " and " << b.desc());
}

namespace {
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
Tensor empty_as(const Shape& s, const Tensor& t) { return Tensor::empty(s, t.dtype(), t.device()); }

void check_4d(const char* op, const Tensor& x) {
  DL_CHECK(x.dim() == 4, op << ": expected an (N, C, H, W) tensor, got " << x.desc());
}
}  // namespace

// =====================================================================================
// in-place helpers
void add_inplace(Tensor& acc, const Tensor& x) { axpy_inplace(acc, 1.0, x); }

void axpy_inplace(Tensor& y, double a, const Tensor& x) {
  check_float("axpy", y, "destination");
  check_same_device("axpy", y, x);
  DL_CHECK(y.numel() == x.numel(), "axpy: shapes " << y.shape_str() << " and " << x.shape_str());
  if (y.is_cuda())
    DL_CUDA("axpy", cuda::axpy(y.data<float>(), float(a), x.data<float>(), y.numel(), DL_STREAM));
  else
    DL_CPU_FLOAT(y.dtype(), cpu::axpy(y.data<T>(), T(a), x.data<T>(), y.numel()));
}

// =====================================================================================
// convolution
Conv2dOptions Conv2dOptions::same(int64_t k, int64_t stride, int64_t dilation, int64_t groups) {
  Conv2dOptions o;
  const int64_t k_eff = k + (k - 1) * (dilation - 1);
  o.stride_h = o.stride_w = stride;
  o.dil_h = o.dil_w = dilation;
  o.pad_h = o.pad_w = k_eff / 2;
  o.groups = groups;
  return o;
}

ConvGeom conv_geometry(const Shape& xs, const Shape& ws, const Conv2dOptions& o) {
  DL_CHECK(xs.size() == 4, "conv2d: input must be (N, C, H, W), got " << shape_str(xs));
  DL_CHECK(ws.size() == 4, "conv2d: weight must be (C_out, C_in/groups, kh, kw), got " << shape_str(ws));
  DL_CHECK(o.groups >= 1 && o.stride_h >= 1 && o.stride_w >= 1 && o.dil_h >= 1 && o.dil_w >= 1 && o.pad_h >= 0 &&
               o.pad_w >= 0,
           "conv2d: invalid options (groups " << o.groups << ", stride " << o.stride_h << "x" << o.stride_w
                                              << ", dilation " << o.dil_h << "x" << o.dil_w << ", padding "
                                              << o.pad_h << "x" << o.pad_w << ")");
  ConvGeom g{};
  g.n = xs[0];
  g.c_in = xs[1];
  g.h = xs[2];
  g.w = xs[3];
  g.c_out = ws[0];
  g.kh = ws[2];
  g.kw = ws[3];
  g.stride_h = o.stride_h;
  g.stride_w = o.stride_w;
  g.pad_h = o.pad_h;
  g.pad_w = o.pad_w;
  g.dil_h = o.dil_h;
  g.dil_w = o.dil_w;
  g.groups = o.groups;
  DL_CHECK(g.c_in % g.groups == 0 && g.c_out % g.groups == 0 && ws[1] == g.c_in / g.groups,
           "conv2d: input " << shape_str(xs) << " and weight " << shape_str(ws) << " do not match with groups "
                            << g.groups);
  const int64_t keh = (g.kh - 1) * g.dil_h + 1, kew = (g.kw - 1) * g.dil_w + 1;
  g.h_out = (g.h + 2 * g.pad_h - keh) / g.stride_h + 1;
  g.w_out = (g.w + 2 * g.pad_w - kew) / g.stride_w + 1;
  DL_CHECK(g.h + 2 * g.pad_h >= keh && g.w + 2 * g.pad_w >= kew,
           "conv2d: input " << shape_str(xs) << " is smaller than the kernel " << shape_str(ws) << " (dilation "
                            << g.dil_h << ")");
  return g;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt) {
  check_float("conv2d", x, "input");
  check_float("conv2d", w, "weight");
  check_same_device("conv2d", x, w);
  const ConvGeom g = conv_geometry(x.shape(), w.shape(), opt);
  if (bias.defined()) {
    check_same_device("conv2d", x, bias);
    DL_CHECK(bias.dim() == 1 && bias.size(0) == g.c_out,
             "conv2d: bias " << bias.shape_str() << " for " << g.c_out << " output channels");
  }
  Tensor y = empty_as({g.n, g.c_out, g.h_out, g.w_out}, x);
  if (x.is_cuda()) {
    DL_CUDA("conv2d", cuda::conv2d_fwd(y.data<float>(), x.data<float>(), w.data<float>(),
                                       bias.defined() ? bias.data<float>() : nullptr, g, DL_STREAM));
  } else {
    DL_CPU_FLOAT(x.dtype(), cpu::conv2d_fwd(y.data<T>(), x.data<T>(), w.data<T>(),
                                            bias.defined() ? bias.data<T>() : nullptr, g));
  }
  if (!any_requires_grad({x, w, bias})) return y;
  // Saved inputs are detached: the Node must not keep their history alive.
  return record_fn(y, "Conv2dBackward", {x, w, bias}, [x = x.detach(), w = w.detach(), g](const Tensor& gy, const LambdaNode& node) {
    Tensor gx, gw, gb;
    if (node.needs_input_grad(0)) {
      gx = empty_like(x);
      if (x.is_cuda())
        DL_CUDA("conv2d_bwd_input", cuda::conv2d_bwd_input(gx.data<float>(), gy.data<float>(), w.data<float>(), g,
                                                           DL_STREAM));
      else
        DL_CPU_FLOAT(x.dtype(), cpu::conv2d_bwd_input(gx.data<T>(), gy.data<T>(), w.data<T>(), g));
    }
    if (node.needs_input_grad(1)) {
      gw = empty_like(w);
      if (x.is_cuda())
        DL_CUDA("conv2d_bwd_weight", cuda::conv2d_bwd_weight(gw.data<float>(), gy.data<float>(), x.data<float>(),
                                                             g, DL_STREAM));
      else
        DL_CPU_FLOAT(x.dtype(), cpu::conv2d_bwd_weight(gw.data<T>(), gy.data<T>(), x.data<T>(), g));
    }
    if (node.needs_input_grad(2)) {
      gb = empty_as({g.c_out}, gy);
      if (x.is_cuda())
        DL_CUDA("conv2d_bwd_bias", cuda::conv2d_bwd_bias(gb.data<float>(), gy.data<float>(), g, DL_STREAM));
      else
        DL_CPU_FLOAT(x.dtype(), cpu::conv2d_bwd_bias(gb.data<T>(), gy.data<T>(), g));
    }
    return std::vector<Tensor>{gx, gw, gb};
  });
}

// =====================================================================================
// batch norm
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  check_float("batch_norm", x, "input");
  check_4d("batch_norm", x);
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  for (const Tensor* p : {&weight, &bias, &running_mean, &running_var}) {
    if (!p->defined()) continue;
    check_same_device("batch_norm", x, *p);
    DL_CHECK(p->dim() == 1 && p->size(0) == c,
             "batch_norm: parameter " << p->shape_str() << " for input " << x.shape_str() << " (" << c
                                      << " channels)");
  }
  DL_CHECK(running_mean.defined() && running_var.defined(), "batch_norm: running_mean/running_var are required");
  if (training)
    DL_CHECK(n * hw > 1, "batch_norm: expected more than 1 value per channel when training, got input "
                             << x.shape_str() << " (train with batch >= 2, or use eval mode)");
  Tensor mean = empty_as({c}, x), var = empty_as({c}, x), invstd = empty_as({c}, x);
  Tensor y = empty_like(x);
  const bool cuda = x.is_cuda();
  if (training) {
    const double unbias = double(n * hw) / double(n * hw - 1);
    if (cuda) {
      DL_CUDA("batch_norm", cuda::batch_norm_stats(mean.data<float>(), var.data<float>(), x.data<float>(), n, c, hw,
                                                   DL_STREAM));
      DL_CUDA("batch_norm", cuda::batch_norm_update_running(running_mean.data<float>(), running_var.data<float>(),
                                                            mean.data<float>(), var.data<float>(), c,
                                                            float(momentum), float(unbias), DL_STREAM));
    } else {
      DL_CPU_FLOAT(x.dtype(), {
        cpu::batch_norm_stats(mean.data<T>(), var.data<T>(), x.data<T>(), n, c, hw);
        T* rm = running_mean.data<T>();
        T* rv = running_var.data<T>();
        const T* m = mean.data<T>();
        const T* v = var.data<T>();
        for (int64_t i = 0; i < c; ++i) {
          rm[i] = T((1 - momentum) * rm[i] + momentum * m[i]);
          rv[i] = T((1 - momentum) * rv[i] + momentum * v[i] * unbias);
        }
      });
    }
  } else {
    mean.copy_(running_mean);
    var.copy_(running_var);
  }
  if (cuda) {
    DL_CUDA("batch_norm", cuda::batch_norm_invstd(invstd.data<float>(), var.data<float>(), c, float(eps), DL_STREAM));
    DL_CUDA("batch_norm",
            cuda::batch_norm_fwd(y.data<float>(), x.data<float>(), mean.data<float>(), invstd.data<float>(),
                                 weight.defined() ? weight.data<float>() : nullptr,
                                 bias.defined() ? bias.data<float>() : nullptr, n, c, hw, DL_STREAM));
  } else {
    DL_CPU_FLOAT(x.dtype(), {
      T* is = invstd.data<T>();
      const T* v = var.data<T>();
      for (int64_t i = 0; i < c; ++i) is[i] = T(1.0 / std::sqrt(double(v[i]) + eps));
      cpu::batch_norm_fwd(y.data<T>(), x.data<T>(), mean.data<T>(), invstd.data<T>(),
                          weight.defined() ? weight.data<T>() : nullptr, bias.defined() ? bias.data<T>() : nullptr,
                          n, c, hw);
    });
  }
  if (!any_requires_grad({x, weight, bias})) return y;
  return record_fn(
      y, training ? "BatchNormTrainBackward" : "BatchNormEvalBackward", {x, weight, bias},
      [x = x.detach(), weight = weight.defined() ? weight.detach() : Tensor(), mean, invstd, training, n, c, hw](const Tensor& gy, const LambdaNode& node) {
        Tensor gx = node.needs_input_grad(0) ? empty_like(x) : Tensor();
        Tensor gw = node.needs_input_grad(1) ? empty_as({c}, x) : Tensor();
        Tensor gb = node.needs_input_grad(2) ? empty_as({c}, x) : Tensor();
        if (x.is_cuda()) {
          [[maybe_unused]] auto f = [](const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
          if (training)
            DL_CUDA("batch_norm_bwd", cuda::batch_norm_bwd_train(f(gx), f(gw), f(gb), gy.data<float>(),
                                                                  x.data<float>(), mean.data<float>(),
                                                                  invstd.data<float>(), f(weight), n, c, hw,
                                                                  DL_STREAM));
          else
            DL_CUDA("batch_norm_bwd", cuda::batch_norm_bwd_eval(f(gx), f(gw), f(gb), gy.data<float>(),
                                                                 x.data<float>(), mean.data<float>(),
                                                                 invstd.data<float>(), f(weight), n, c, hw,
                                                                 DL_STREAM));
        } else {
          DL_CPU_FLOAT(x.dtype(), {
            auto f = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
            if (training)
              cpu::batch_norm_bwd_train(f(gx), f(gw), f(gb), gy.data<T>(), x.data<T>(), mean.data<T>(),
                                        invstd.data<T>(), f(weight), n, c, hw);
            else
              cpu::batch_norm_bwd_eval(f(gx), f(gw), f(gb), gy.data<T>(), x.data<T>(), mean.data<T>(),
                                       invstd.data<T>(), f(weight), n, c, hw);
          });
        }
        return std::vector<Tensor>{gx, gw, gb};
      });
}

// =====================================================================================
// elementwise
#define DL_UNARY_OP(NAME, LABEL, SAVE_OUTPUT)                                                                  \
  Tensor NAME(const Tensor& x) {                                                                               \
    check_float(LABEL, x, "input");                                                                            \
    Tensor y = empty_like(x);                                                                                  \
    const int64_t n = x.numel();                                                                               \
    if (x.is_cuda())                                                                                           \
      DL_CUDA(LABEL, cuda::NAME##_fwd(y.data<float>(), x.data<float>(), n, DL_STREAM));                        \
    else                                                                                                       \
      DL_CPU_FLOAT(x.dtype(), cpu::NAME##_fwd(y.data<T>(), x.data<T>(), n));                                   \
    if (!any_requires_grad({x})) return y;                                                                     \
    Tensor saved = SAVE_OUTPUT ? y.detach() : x.detach();                                                             \
    return record_fn(y, LABEL "Backward", {x}, [saved](const Tensor& gy, const LambdaNode&) {                  \
      Tensor gx = empty_like(gy);                                                                              \
      const int64_t n = gy.numel();                                                                            \
      if (gy.is_cuda())                                                                                        \
        DL_CUDA(LABEL, cuda::NAME##_bwd(gx.data<float>(), gy.data<float>(), saved.data<float>(), n, DL_STREAM)); \
      else                                                                                                     \
        DL_CPU_FLOAT(gy.dtype(), cpu::NAME##_bwd(gx.data<T>(), gy.data<T>(), saved.data<T>(), n));             \
      return std::vector<Tensor>{gx};                                                                          \
    });                                                                                                        \
  }
DL_UNARY_OP(relu, "relu", true)
DL_UNARY_OP(relu6, "relu6", false)
DL_UNARY_OP(sigmoid, "sigmoid", true)
#undef DL_UNARY_OP

namespace {
enum class Bin { Add, Sub, Mul };
Tensor binary_raw(Bin op, const Tensor& a, const Tensor& b) {
  Tensor y = empty_like(a);
  const int64_t n = a.numel();
  if (a.is_cuda()) {
    if (op == Bin::Add) DL_CUDA("add", cuda::add_fwd(y.data<float>(), a.data<float>(), b.data<float>(), n, DL_STREAM));
    if (op == Bin::Sub) DL_CUDA("sub", cuda::sub_fwd(y.data<float>(), a.data<float>(), b.data<float>(), n, DL_STREAM));
    if (op == Bin::Mul) DL_CUDA("mul", cuda::mul_fwd(y.data<float>(), a.data<float>(), b.data<float>(), n, DL_STREAM));
  } else {
    DL_CPU_FLOAT(a.dtype(), {
      if (op == Bin::Add) cpu::add_fwd(y.data<T>(), a.data<T>(), b.data<T>(), n);
      if (op == Bin::Sub) cpu::sub_fwd(y.data<T>(), a.data<T>(), b.data<T>(), n);
      if (op == Bin::Mul) cpu::mul_fwd(y.data<T>(), a.data<T>(), b.data<T>(), n);
    });
  }
  return y;
}

Tensor scale_raw(const Tensor& x, double s) {
  Tensor y = empty_like(x);
  if (x.is_cuda())
    DL_CUDA("scale", cuda::scale_fwd(y.data<float>(), x.data<float>(), float(s), x.numel(), DL_STREAM));
  else
    DL_CPU_FLOAT(x.dtype(), cpu::scale_fwd(y.data<T>(), x.data<T>(), T(s), x.numel()));
  return y;
}

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_float(op, a, "first input");
  check_float(op, b, "second input");
  check_same_device(op, a, b);
  DL_CHECK(a.shape() == b.shape(), op << ": shapes differ: " << a.shape_str() << " and " << b.shape_str());
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_binary("add", a, b);
  Tensor y = binary_raw(Bin::Add, a, b);
  if (!any_requires_grad({a, b})) return y;
  return record_fn(y, "AddBackward", {a, b},
                   [](const Tensor& gy, const LambdaNode&) { return std::vector<Tensor>{gy, gy}; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  check_binary("sub", a, b);
  Tensor y = binary_raw(Bin::Sub, a, b);
  if (!any_requires_grad({a, b})) return y;
  return record_fn(y, "SubBackward", {a, b}, [](const Tensor& gy, const LambdaNode& node) {
    return std::vector<Tensor>{gy, node.needs_input_grad(1) ? scale_raw(gy, -1.0) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_binary("mul", a, b);
  Tensor y = binary_raw(Bin::Mul, a, b);
  if (!any_requires_grad({a, b})) return y;
  Tensor sa = a.detach(), sb = b.detach();
  return record_fn(y, "MulBackward", {a, b}, [sa, sb](const Tensor& gy, const LambdaNode& node) {
    return std::vector<Tensor>{node.needs_input_grad(0) ? binary_raw(Bin::Mul, gy, sb) : Tensor(),
                               node.needs_input_grad(1) ? binary_raw(Bin::Mul, gy, sa) : Tensor()};
  });
}

Tensor scale(const Tensor& x, double s) {
  check_float("scale", x, "input");
  Tensor y = scale_raw(x, s);
  if (!any_requires_grad({x})) return y;
  return record_fn(y, "ScaleBackward", {x},
                   [s](const Tensor& gy, const LambdaNode&) { return std::vector<Tensor>{scale_raw(gy, s)}; });
}

// =====================================================================================
// reductions
Tensor sum(const Tensor& x) {
  check_float("sum", x, "input");
  Tensor y = empty_as({}, x);
  if (x.is_cuda())
    DL_CUDA("sum", cuda::sum_all(y.data<float>(), x.data<float>(), x.numel(), DL_STREAM));
  else
    DL_CPU_FLOAT(x.dtype(), *y.data<T>() = T(cpu::sum_all(x.data<T>(), x.numel())));
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  return record_fn(y, "SumBackward", {x}, [xs](const Tensor& gy, const LambdaNode&) {
    // Broadcast the scalar gradient (read on the host: one value).
    return std::vector<Tensor>{Tensor::full(xs, gy.item(), gy.dtype(), gy.device())};
  });
}

Tensor mean(const Tensor& x) {
  DL_CHECK(x.defined() && x.numel() > 0, "mean: empty input " << x.desc());
  return scale(sum(x), 1.0 / double(x.numel()));
}

Tensor global_avg_pool(const Tensor& x) {
  check_float("global_avg_pool", x, "input");
  check_4d("global_avg_pool", x);
  const int64_t nc = x.size(0) * x.size(1), hw = x.size(2) * x.size(3);
  Tensor y = empty_as({x.size(0), x.size(1), 1, 1}, x);
  if (x.is_cuda())
    DL_CUDA("global_avg_pool", cuda::global_avg_pool_fwd(y.data<float>(), x.data<float>(), nc, hw, DL_STREAM));
  else
    DL_CPU_FLOAT(x.dtype(), cpu::global_avg_pool_fwd(y.data<T>(), x.data<T>(), nc, hw));
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  return record_fn(y, "GlobalAvgPoolBackward", {x}, [xs, nc, hw](const Tensor& gy, const LambdaNode&) {
    Tensor gx = empty_as(xs, gy);
    if (gy.is_cuda())
      DL_CUDA("global_avg_pool", cuda::global_avg_pool_bwd(gx.data<float>(), gy.data<float>(), nc, hw, DL_STREAM));
    else
      DL_CPU_FLOAT(gy.dtype(), cpu::global_avg_pool_bwd(gx.data<T>(), gy.data<T>(), nc, hw));
    return std::vector<Tensor>{gx};
  });
}

// =====================================================================================
// shape ops
Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = x.view(shape);
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  return record_fn(y, "ReshapeBackward", {x},
                   [xs](const Tensor& gy, const LambdaNode&) { return std::vector<Tensor>{gy.view(xs)}; });
}

namespace {
// Copies src (outer, inner_src) into / out of columns [offset, offset + inner_src) of dst (outer, inner_dst).
void copy_cols(const Tensor& dst, const Tensor& src, int64_t outer, int64_t inner_dst, int64_t inner_src,
               int64_t offset, bool into_dst) {
  const Tensor& big = into_dst ? dst : src;
  if (big.is_cuda()) {
    DL_CUDA("concat", cuda::copy_columns(dst.raw_data(), src.raw_data(), outer, inner_dst, inner_src, offset,
                                         into_dst, int64_t(dtype_size(big.dtype())), DL_STREAM));
    return;
  }
  switch (big.dtype()) {
    case DType::F32: cpu::copy_columns(dst.data<float>(), src.data<float>(), outer, inner_dst, inner_src, offset, into_dst); break;
    case DType::F64: cpu::copy_columns(dst.data<double>(), src.data<double>(), outer, inner_dst, inner_src, offset, into_dst); break;
    case DType::I32: cpu::copy_columns(dst.data<int32_t>(), src.data<int32_t>(), outer, inner_dst, inner_src, offset, into_dst); break;
    case DType::U8: cpu::copy_columns(dst.data<uint8_t>(), src.data<uint8_t>(), outer, inner_dst, inner_src, offset, into_dst); break;
  }
}

int64_t norm_dim(const char* op, int64_t dim, int64_t nd) {
  if (dim < 0) dim += nd;
  DL_CHECK(dim >= 0 && dim < nd, op << ": dim " << dim << " out of range for " << nd << " dims");
  return dim;
}
}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  DL_CHECK(!xs.empty(), "concat: no inputs");
  const Tensor& x0 = xs[0];
  DL_CHECK(x0.defined(), "concat: input 0 is undefined");
  dim = norm_dim("concat", dim, x0.dim());
  Shape out = x0.shape();
  out[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_same_device("concat", x0, xs[i]);
    bool ok = xs[i].dim() == x0.dim();
    for (int64_t d = 0; ok && d < x0.dim(); ++d)
      if (d != dim && xs[i].size(d) != x0.size(d)) ok = false;
    DL_CHECK(ok, "concat: input " << i << " " << xs[i].shape_str() << " does not match input 0 "
                                  << x0.shape_str() << " outside dim " << dim);
    out[dim] += xs[i].size(dim);
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out[d];
  for (int64_t d = dim + 1; d < x0.dim(); ++d) inner *= out[d];
  Tensor y = empty_as(out, x0);
  std::vector<int64_t> offsets;
  int64_t off = 0;
  for (const auto& x : xs) {
    offsets.push_back(off);
    copy_cols(y, x, outer, out[dim] * inner, x.size(dim) * inner, off * inner, true);
    off += x.size(dim);
  }
  if (!any_requires_grad(xs)) return y;
  std::vector<Shape> shapes;
  for (const auto& x : xs) shapes.push_back(x.shape());
  return record(y,
                std::make_shared<LambdaNode>(
                    "ConcatBackward",
                    [shapes, offsets, outer, inner, dim, out](const Tensor& gy, const LambdaNode& node) {
                      std::vector<Tensor> g(shapes.size());
                      for (size_t i = 0; i < shapes.size(); ++i) {
                        if (!node.needs_input_grad(i)) continue;
                        g[i] = empty_as(shapes[i], gy);
                        copy_cols(g[i], gy, outer, out[dim] * inner, shapes[i][dim] * inner, offsets[i] * inner,
                                  false);
                      }
                      return g;
                    }),
                xs);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  DL_CHECK(x.defined(), "slice: undefined input");
  dim = norm_dim("slice", dim, x.dim());
  DL_CHECK(0 <= start && start <= end && end <= x.size(dim),
           "slice: [" << start << ", " << end << ") out of range for dim " << dim << " of " << x.shape_str());
  Shape out = x.shape();
  out[dim] = end - start;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= out[d];
  Tensor y = empty_as(out, x);
  copy_cols(y, x, outer, x.size(dim) * inner, out[dim] * inner, start * inner, false);
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  const int64_t full = x.size(dim);
  return record_fn(y, "SliceBackward", {x}, [xs, outer, inner, full, out, dim, start](const Tensor& gy, const LambdaNode&) {
    Tensor gx = Tensor::zeros(xs, gy.dtype(), gy.device());
    copy_cols(gx, gy, outer, full * inner, out[dim] * inner, start * inner, true);
    return std::vector<Tensor>{gx};
  });
}

namespace {
Tensor window_raw(const Tensor& x, int64_t top, int64_t left, int64_t oh, int64_t ow, bool pad) {
  const int64_t h = x.size(-2), w = x.size(-1), nc = x.numel() / (h * w);
  Shape s = x.shape();
  s[s.size() - 2] = oh;
  s[s.size() - 1] = ow;
  Tensor y = empty_as(s, x);
  if (x.is_cuda()) {
    if (pad)
      DL_CUDA("pad2d", cuda::pad2d_fwd(y.data<float>(), x.data<float>(), nc, h, w, top, left, oh, ow, DL_STREAM));
    else
      DL_CUDA("crop2d", cuda::crop2d_fwd(y.data<float>(), x.data<float>(), nc, h, w, top, left, oh, ow, DL_STREAM));
  } else {
    DL_CPU_FLOAT(x.dtype(), {
      if (pad)
        cpu::pad2d_fwd(y.data<T>(), x.data<T>(), nc, h, w, top, left, oh, ow);
      else
        cpu::crop2d_fwd(y.data<T>(), x.data<T>(), nc, h, w, top, left, oh, ow);
    });
  }
  return y;
}
}  // namespace

Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  check_float("pad2d", x, "input");
  DL_CHECK(x.dim() >= 2 && top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
           "pad2d: padding (" << top << ", " << bottom << ", " << left << ", " << right << ") of " << x.shape_str());
  const int64_t h = x.size(-2), w = x.size(-1);
  Tensor y = window_raw(x, top, left, h + top + bottom, w + left + right, true);
  if (!any_requires_grad({x})) return y;
  return record_fn(y, "Pad2dBackward", {x}, [top, left, h, w](const Tensor& gy, const LambdaNode&) {
    return std::vector<Tensor>{window_raw(gy, top, left, h, w, false)};
  });
}

Tensor crop2d(const Tensor& x, int64_t top, int64_t left, int64_t h, int64_t w) {
  check_float("crop2d", x, "input");
  DL_CHECK(x.dim() >= 2 && top >= 0 && left >= 0 && h >= 0 && w >= 0 && top + h <= x.size(-2) &&
               left + w <= x.size(-1),
           "crop2d: window (top " << top << ", left " << left << ", " << h << "x" << w << ") outside "
                                  << x.shape_str());
  Tensor y = window_raw(x, top, left, h, w, false);
  if (!any_requires_grad({x})) return y;
  const int64_t ih = x.size(-2), iw = x.size(-1);
  return record_fn(y, "Crop2dBackward", {x}, [top, left, ih, iw](const Tensor& gy, const LambdaNode&) {
    return std::vector<Tensor>{window_raw(gy, top, left, ih, iw, true)};
  });
}

namespace {
Tensor s2d_raw(const Tensor& x, int64_t b, bool to_depth) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  Shape s = to_depth ? Shape{n, c * b * b, h / b, w / b} : Shape{n, c / (b * b), h * b, w * b};
  Tensor y = empty_as(s, x);
  if (x.is_cuda()) {
    if (to_depth)
      DL_CUDA("space_to_depth", cuda::space_to_depth_fwd(y.data<float>(), x.data<float>(), n, c, h, w, b, DL_STREAM));
    else
      DL_CUDA("depth_to_space", cuda::depth_to_space_fwd(y.data<float>(), x.data<float>(), n, c, h, w, b, DL_STREAM));
  } else {
    DL_CPU_FLOAT(x.dtype(), {
      if (to_depth)
        cpu::space_to_depth_fwd(y.data<T>(), x.data<T>(), n, c, h, w, b);
      else
        cpu::depth_to_space_fwd(y.data<T>(), x.data<T>(), n, c, h, w, b);
    });
  }
  return y;
}
}  // namespace

Tensor space_to_depth(const Tensor& x, int64_t block) {
  check_float("space_to_depth", x, "input");
  check_4d("space_to_depth", x);
  DL_CHECK(block >= 1 && x.size(2) % block == 0 && x.size(3) % block == 0,
           "space_to_depth: spatial size of " << x.shape_str() << " is not divisible by block " << block);
  Tensor y = s2d_raw(x, block, true);
  if (!any_requires_grad({x})) return y;
  return record_fn(y, "SpaceToDepthBackward", {x}, [block](const Tensor& gy, const LambdaNode&) {
    return std::vector<Tensor>{s2d_raw(gy, block, false)};
  });
}

Tensor depth_to_space(const Tensor& x, int64_t block) {
  check_float("depth_to_space", x, "input");
  check_4d("depth_to_space", x);
  DL_CHECK(block >= 1 && x.size(1) % (block * block) == 0,
           "depth_to_space: channels of " << x.shape_str() << " are not divisible by block^2 = " << block * block);
  Tensor y = s2d_raw(x, block, false);
  if (!any_requires_grad({x})) return y;
  return record_fn(y, "DepthToSpaceBackward", {x}, [block](const Tensor& gy, const LambdaNode&) {
    return std::vector<Tensor>{s2d_raw(gy, block, true)};
  });
}

Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  check_float("resize_bilinear", x, "input");
  check_4d("resize_bilinear", x);
  DL_CHECK(out_h >= 1 && out_w >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
           "resize_bilinear: " << x.shape_str() << " -> " << out_h << "x" << out_w);
  const int64_t nc = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Tensor y = empty_as({x.size(0), x.size(1), out_h, out_w}, x);
  if (x.is_cuda())
    DL_CUDA("resize_bilinear", cuda::resize_bilinear_fwd(y.data<float>(), x.data<float>(), nc, h, w, out_h, out_w,
                                                         align_corners, DL_STREAM));
  else
    DL_CPU_FLOAT(x.dtype(),
                 cpu::resize_bilinear_fwd(y.data<T>(), x.data<T>(), nc, h, w, out_h, out_w, align_corners));
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  return record_fn(y, "ResizeBilinearBackward", {x},
                   [xs, nc, h, w, out_h, out_w, align_corners](const Tensor& gy, const LambdaNode&) {
                     Tensor gx = empty_as(xs, gy);
                     if (gy.is_cuda())
                       DL_CUDA("resize_bilinear",
                               cuda::resize_bilinear_bwd(gx.data<float>(), gy.data<float>(), nc, h, w, out_h, out_w,
                                                         align_corners, DL_STREAM));
                     else
                       DL_CPU_FLOAT(gy.dtype(), cpu::resize_bilinear_bwd(gx.data<T>(), gy.data<T>(), nc, h, w,
                                                                         out_h, out_w, align_corners));
                     return std::vector<Tensor>{gx};
                   });
}

}  // namespace dl
