// ASPP on the stride-16 feature: 1x1 conv; separable 3x3 convs at the given rates; image pooling
// (global average, 1x1 conv, BN, ReLU, broadcast back); concat -> 1x1 conv. BN + ReLU everywhere,
// no dropout. Children: branch0 (ConvBn), branch1.. (SeparableConv2d), pool (ConvBn), project (ConvBn).
#pragma once
#include "layers/backbone.h"

namespace dl {

class ASPP : public Module {
 public:
  ASPP(int64_t in, int64_t channels, const std::vector<int64_t>& rates, Rng& rng, const BatchNormOptions& bn);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<ConvBn> branch0, pool, project;
  std::vector<std::shared_ptr<SeparableConv2d>> atrous;  // registered as branch1, branch2, ...
};

}  // namespace dl
