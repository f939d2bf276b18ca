// MobileNetV2 backbone (torchvision's layout without the final 1x1 -> 1280 conv), with the
// depthwise kernel size and width multiplier from the config: kernel 3 / width 1 is torchvision's
// mobilenet_v2().features[:18]; kernel 5 is DeeperLab's "wider" MobileNetV2.
#pragma once
#include "layers/backbone.h"

namespace dl {

class InvertedResidual : public Module {
 public:
  InvertedResidual(int64_t in, int64_t out, int64_t expand_ratio, int64_t k, int64_t stride, int64_t dilation,
                   Rng& rng, const BatchNormOptions& bn);
  // `depthwise_out` (optional) receives the expanded depthwise output (after BN and ReLU6).
  Tensor forward(const Tensor& x, Tensor* depthwise_out = nullptr) const;
  std::shared_ptr<ConvBn> expand;  // absent when expand_ratio == 1
  std::shared_ptr<ConvBn> depthwise, project;
  bool residual;
  int64_t hidden;
};

struct MobileNetV2Options {
  double width_multiplier = 1.0;
  int64_t kernel_size = 5;
  int64_t output_stride = 16;
  BatchNormOptions bn;
};

class MobileNetV2 : public Backbone {
 public:
  MobileNetV2(const MobileNetV2Options& o, Rng& rng);
  BackboneFeatures forward(const Tensor& x) const override;
  std::shared_ptr<ConvBn> stem;
  std::shared_ptr<ModuleList<InvertedResidual>> blocks;
  int64_t low_level_block = -1;  // the last block at stride 4: its depthwise output is the low-level feature
};

}  // namespace dl
