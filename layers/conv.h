// The basic layers: Conv2d, BatchNorm2d, ConvBn (conv + BN + optional ReLU/ReLU6) and
// SeparableConv2d (depthwise k x k + BN [+ act], pointwise 1x1 + BN [+ act]).
// Padding is always the symmetric "same" rule of DESIGN.md (k_eff // 2).
// A MacCounter in scope makes every Conv2d add its multiply-adds; with skip_compute it also skips
// the convolution itself (the output is zeros of the right shape), so `deeperlab params` can count
// a 513x513 forward without running it.
#pragma once
#include <memory>

#include "core/ops.h"
#include "layers/module.h"

namespace dl {

class MacCounter {
 public:
  explicit MacCounter(bool skip_compute = false);
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  double macs = 0;
  bool skip_compute;

 private:
  MacCounter* prev_;
};
MacCounter* current_mac_counter();

struct BatchNormOptions {
  double eps = 1e-3;
  double momentum = 0.1;           // PyTorch's convention: running = (1 - m) running + m batch
  bool track_num_batches = false;  // adds a num_batches_tracked buffer (I32, counted on the host)
};

enum class Act { None, ReLU, ReLU6 };
Tensor apply_act(const Tensor& x, Act act);

class Conv2d : public Module {
 public:
  // Weight (out, in / groups, k, k) He-normal; bias zeros when `bias`.
  Conv2d(int64_t in, int64_t out, int64_t k, Rng& rng, int64_t stride = 1, int64_t dilation = 1,
         int64_t groups = 1, bool bias = false);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  Conv2dOptions opt;
};

class BatchNorm2d : public Module {
 public:
  BatchNorm2d(int64_t channels, const BatchNormOptions& o = {});
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  BatchNormOptions opt;
};

// conv -> BN -> act; names X.conv.weight, X.bn.*.
class ConvBn : public Module {
 public:
  ConvBn(int64_t in, int64_t out, int64_t k, Rng& rng, const BatchNormOptions& bn, Act act = Act::ReLU,
         int64_t stride = 1, int64_t dilation = 1, int64_t groups = 1);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
  Act act;
};

// Depthwise k x k (stride, dilation) + BN [+ ReLU], pointwise 1x1 + BN [+ ReLU].
// act = true: DeepLab's separable conv (ASPP, decoder, heads, Xception exit2);
// act = false: the pre-activation Xception units (ReLU comes before the separable conv, none inside).
class SeparableConv2d : public Module {
 public:
  SeparableConv2d(int64_t in, int64_t out, int64_t k, Rng& rng, const BatchNormOptions& bn,
                  int64_t stride = 1, int64_t dilation = 1, bool act = true);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Conv2d> depthwise, pointwise;
  std::shared_ptr<BatchNorm2d> depthwise_bn, pointwise_bn;
  bool act;
};

}  // namespace dl
