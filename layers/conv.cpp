// Basic layers on top of core/ops.h.
#include "layers/conv.h"

namespace dl {

namespace {
thread_local MacCounter* g_counter = nullptr;
}

MacCounter::MacCounter(bool skip) : skip_compute(skip), prev_(g_counter) {
  g_counter = this;
}
MacCounter::~MacCounter() {
  g_counter = prev_;
}
MacCounter* current_mac_counter() {
  return g_counter;
}

Tensor apply_act(const Tensor& x, Act act) {
  switch (act) {
    case Act::ReLU:
      return relu(x);
    case Act::ReLU6:
      return relu6(x);
    case Act::None:
      break;
  }
  return x;
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, Rng& rng, int64_t stride, int64_t dilation, int64_t groups,
               bool with_bias)
    : opt(Conv2dOptions::same(k, stride, dilation, groups)) {
  DL_CHECK(in > 0 && out > 0 && k > 0 && groups > 0 && in % groups == 0 && out % groups == 0,
           "Conv2d: invalid shape in " << in << " out " << out << " k " << k << " groups " << groups);
  weight = register_parameter("weight", he_normal({out, in / groups, k, k}, rng));
  if (with_bias) bias = register_parameter("bias", Tensor::zeros({out}));
}

Tensor Conv2d::forward(const Tensor& x) const {
  if (MacCounter* mc = current_mac_counter()) {
    const ConvGeom g = conv_geometry(x.shape(), weight.shape(), opt);
    mc->macs += g.macs();
    if (mc->skip_compute) return Tensor::zeros({g.n, g.c_out, g.h_out, g.w_out}, x.dtype(), x.device());
  }
  return conv2d(x, weight, bias, opt);
}

BatchNorm2d::BatchNorm2d(int64_t c, const BatchNormOptions& o) : opt(o) {
  DL_CHECK(c > 0 && o.eps > 0 && o.momentum >= 0 && o.momentum <= 1,
           "BatchNorm2d: invalid channels " << c << ", eps " << o.eps << " or momentum " << o.momentum);
  weight = register_parameter("weight", Tensor::ones({c}));
  bias = register_parameter("bias", Tensor::zeros({c}));
  running_mean = register_buffer("running_mean", Tensor::zeros({c}));
  running_var = register_buffer("running_var", Tensor::ones({c}));
  if (o.track_num_batches)
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::I32));
}

Tensor BatchNorm2d::forward(const Tensor& x) const {
  Tensor y = batch_norm(x, weight, bias, running_mean, running_var, is_training(), opt.momentum, opt.eps);
  if (is_training() && num_batches_tracked.defined()) {
    Tensor h = num_batches_tracked.to(Device::CPU);
    if (h.same(num_batches_tracked)) h = h.clone();
    *h.data<int32_t>() += 1;
    const_cast<Tensor&>(num_batches_tracked).copy_(h);
  }
  return y;
}

ConvBn::ConvBn(int64_t in, int64_t out, int64_t k, Rng& rng, const BatchNormOptions& bno, Act a,
               int64_t stride, int64_t dilation, int64_t groups)
    : act(a) {
  conv = register_module("conv", std::make_shared<Conv2d>(in, out, k, rng, stride, dilation, groups));
  bn = register_module("bn", std::make_shared<BatchNorm2d>(out, bno));
}

Tensor ConvBn::forward(const Tensor& x) const {
  return apply_act(bn->forward(conv->forward(x)), act);
}

SeparableConv2d::SeparableConv2d(int64_t in, int64_t out, int64_t k, Rng& rng, const BatchNormOptions& bno,
                                 int64_t stride, int64_t dilation, bool a)
    : act(a) {
  depthwise = register_module("depthwise", std::make_shared<Conv2d>(in, in, k, rng, stride, dilation, in));
  depthwise_bn = register_module("depthwise_bn", std::make_shared<BatchNorm2d>(in, bno));
  pointwise = register_module("pointwise", std::make_shared<Conv2d>(in, out, 1, rng));
  pointwise_bn = register_module("pointwise_bn", std::make_shared<BatchNorm2d>(out, bno));
}

Tensor SeparableConv2d::forward(const Tensor& x) const {
  const Act a = act ? Act::ReLU : Act::None;
  Tensor y = apply_act(depthwise_bn->forward(depthwise->forward(x)), a);
  return apply_act(pointwise_bn->forward(pointwise->forward(y)), a);
}

}  // namespace dl
