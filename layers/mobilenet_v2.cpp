// MobileNetV2. Output stride 16/8 comes from StrideTracker (stride 1 + dilation for the units that
// would go past it), so with output stride 16 the first 160-channel unit runs at stride 1,
// dilation 1, and every unit after it at dilation 2.
#include "layers/mobilenet_v2.h"

#include <cmath>

namespace dl {

InvertedResidual::InvertedResidual(int64_t in, int64_t out, int64_t t, int64_t k, int64_t stride,
                                   int64_t dilation, Rng& rng, const BatchNormOptions& bn) {
  hidden = int64_t(std::lround(double(in) * double(t)));
  residual = stride == 1 && in == out;
  if (t != 1)
    expand = register_module("expand", std::make_shared<ConvBn>(in, hidden, 1, rng, bn, Act::ReLU6));
  depthwise = register_module("depthwise", std::make_shared<ConvBn>(hidden, hidden, k, rng, bn, Act::ReLU6,
                                                                    stride, dilation, hidden));
  project = register_module("project", std::make_shared<ConvBn>(hidden, out, 1, rng, bn, Act::None));
}

Tensor InvertedResidual::forward(const Tensor& x, Tensor* depthwise_out) const {
  Tensor h = expand ? expand->forward(x) : x;
  h = depthwise->forward(h);
  if (depthwise_out) *depthwise_out = h;
  h = project->forward(h);
  return residual ? add(h, x) : h;
}

MobileNetV2::MobileNetV2(const MobileNetV2Options& o, Rng& rng) {
  DL_CHECK(o.output_stride == 8 || o.output_stride == 16 || o.output_stride == 32,
           "MobileNetV2: output_stride must be 8, 16 or 32, got " << o.output_stride);
  DL_CHECK(o.kernel_size >= 1 && o.kernel_size % 2 == 1,
           "MobileNetV2: backbone kernel size must be odd, got " << o.kernel_size);
  DL_CHECK(o.width_multiplier > 0, "MobileNetV2: invalid width_multiplier " << o.width_multiplier);
  struct Stage {
    int64_t t, c, n, s;
  };
  const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                          {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  StrideTracker st{o.output_stride};
  int64_t in = make_divisible(32 * o.width_multiplier);
  stem = register_module("stem", std::make_shared<ConvBn>(3, in, 3, rng, o.bn, Act::ReLU6, st.next(2).first));
  blocks = register_module("blocks", std::make_shared<ModuleList<InvertedResidual>>());
  for (const auto& s : stages) {
    const int64_t out = make_divisible(double(s.c) * o.width_multiplier);
    for (int64_t i = 0; i < s.n; ++i) {
      auto [stride, dil] = st.next(i == 0 ? s.s : 1);
      auto b = blocks->append(
          std::make_shared<InvertedResidual>(in, out, s.t, o.kernel_size, stride, dil, rng, o.bn));
      if (st.current == 4) {
        low_level_block = int64_t(blocks->items.size()) - 1;
        low_level_channels = b->hidden;
      }
      in = out;
    }
  }
  high_level_channels = in;
}

BackboneFeatures MobileNetV2::forward(const Tensor& x) const {
  BackboneFeatures f;
  Tensor h = stem->forward(x);
  for (size_t i = 0; i < blocks->items.size(); ++i)
    h = blocks->items[i]->forward(h, int64_t(i) == low_level_block ? &f.low_level : nullptr);
  f.high_level = h;
  return f;
}

}  // namespace dl
