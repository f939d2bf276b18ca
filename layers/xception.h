// Xception-71 (DeepLab's aligned Xception; the block table of DESIGN.md section 4) with a width
// multiplier (channels rounded by make_divisible) so tests can run the real block structure small.
#pragma once
#include <array>

#include "layers/backbone.h"

namespace dl {

enum class Shortcut { Conv, Sum, None };

// One unit: three separable 3x3 convs, stride in the third. Pre-activation (ReLU before each
// separable conv, none inside) unless `act_inside` (exit2: BN+ReLU after depthwise and pointwise).
class XceptionBlock : public Module {
 public:
  XceptionBlock(int64_t in, std::array<int64_t, 3> out, int64_t stride, int64_t dilation, Shortcut sc,
                bool act_inside, Rng& rng, const BatchNormOptions& bn);
  // `after_sep2` (optional) receives the output of the second separable conv (after its BN).
  Tensor forward(const Tensor& x, Tensor* after_sep2 = nullptr) const;
  std::shared_ptr<SeparableConv2d> sep1, sep2, sep3;
  std::shared_ptr<ConvBn> shortcut;  // Shortcut::Conv only
  Shortcut shortcut_kind;
  bool act_inside;
};

struct XceptionOptions {
  double width_multiplier = 1.0;
  int64_t output_stride = 16;
  int64_t middle_units = 16;
  BatchNormOptions bn;
};

class Xception71 : public Backbone {
 public:
  Xception71(const XceptionOptions& o, Rng& rng);
  BackboneFeatures forward(const Tensor& x) const override;
  std::shared_ptr<ConvBn> conv1, conv2;
  std::shared_ptr<XceptionBlock> entry1, entry2, entry3, entry4, entry5, exit1, exit2;
  std::shared_ptr<ModuleList<XceptionBlock>> middle;
};

}  // namespace dl
