// Xception-71. The low-level feature is tapped inside entry3 (after sep2's BN, before the ReLU and
// the stride-2 sep3), as DeepLab does; that is why XceptionBlock::forward has an optional tap.
#include "layers/xception.h"

namespace dl {

XceptionBlock::XceptionBlock(int64_t in, std::array<int64_t, 3> out, int64_t stride, int64_t dilation,
                             Shortcut sc, bool act, Rng& rng, const BatchNormOptions& bn)
    : shortcut_kind(sc), act_inside(act) {
  sep1 = register_module("sep1", std::make_shared<SeparableConv2d>(in, out[0], 3, rng, bn, 1, dilation, act));
  sep2 = register_module("sep2",
                         std::make_shared<SeparableConv2d>(out[0], out[1], 3, rng, bn, 1, dilation, act));
  sep3 = register_module(
      "sep3", std::make_shared<SeparableConv2d>(out[1], out[2], 3, rng, bn, stride, dilation, act));
  if (sc == Shortcut::Conv)
    shortcut =
        register_module("shortcut", std::make_shared<ConvBn>(in, out[2], 1, rng, bn, Act::None, stride));
  else if (sc == Shortcut::Sum)
    DL_CHECK(in == out[2] && stride == 1,
             "XceptionBlock: identity shortcut needs in == out and stride 1, got " << in << " -> " << out[2]
                                                                                   << " stride " << stride);
}

Tensor XceptionBlock::forward(const Tensor& x, Tensor* after_sep2) const {
  auto pre = [this](const Tensor& t) { return act_inside ? t : relu(t); };
  Tensor h = sep1->forward(pre(x));
  h = sep2->forward(pre(h));
  if (after_sep2) *after_sep2 = h;
  h = sep3->forward(pre(h));
  switch (shortcut_kind) {
    case Shortcut::Conv:
      return add(h, shortcut->forward(x));
    case Shortcut::Sum:
      return add(h, x);
    case Shortcut::None:
      break;
  }
  return h;
}

Xception71::Xception71(const XceptionOptions& o, Rng& rng) {
  DL_CHECK(o.output_stride == 8 || o.output_stride == 16 || o.output_stride == 32,
           "Xception71: output_stride must be 8, 16 or 32, got " << o.output_stride);
  DL_CHECK(o.width_multiplier > 0 && o.middle_units >= 1, "Xception71: invalid width_multiplier "
                                                              << o.width_multiplier << " or middle_units "
                                                              << o.middle_units);
  auto ch = [&](int64_t c) { return make_divisible(double(c) * o.width_multiplier); };
  StrideTracker st{o.output_stride};
  conv1 = register_module("conv1",
                          std::make_shared<ConvBn>(3, ch(32), 3, rng, o.bn, Act::ReLU, st.next(2).first));
  conv2 = register_module("conv2", std::make_shared<ConvBn>(ch(32), ch(64), 3, rng, o.bn, Act::ReLU));
  auto block = [&](const char* name, int64_t in, std::array<int64_t, 3> out, int64_t stride, Shortcut sc,
                   bool act = false) {
    auto [s, d] = st.next(stride);
    for (auto& c : out) c = ch(c);
    return std::make_shared<XceptionBlock>(ch(in), out, s, d, sc, act, rng, o.bn);
  };
  entry1 = register_module("entry1", block("entry1", 64, {128, 128, 128}, 2, Shortcut::Conv));
  entry2 = register_module("entry2", block("entry2", 128, {256, 256, 256}, 1, Shortcut::Conv));
  entry3 = register_module("entry3", block("entry3", 256, {256, 256, 256}, 2, Shortcut::Conv));
  entry4 = register_module("entry4", block("entry4", 256, {728, 728, 728}, 1, Shortcut::Conv));
  entry5 = register_module("entry5", block("entry5", 728, {728, 728, 728}, 2, Shortcut::Conv));
  middle = register_module("middle", std::make_shared<ModuleList<XceptionBlock>>());
  for (int64_t i = 0; i < o.middle_units; ++i)
    middle->append(block("middle", 728, {728, 728, 728}, 1, Shortcut::Sum));
  exit1 = register_module("exit1", block("exit1", 728, {728, 1024, 1024}, 2, Shortcut::Conv));
  exit2 = register_module("exit2", block("exit2", 1024, {1536, 1536, 2048}, 1, Shortcut::None, true));
  low_level_channels = ch(256);
  high_level_channels = ch(2048);
}

BackboneFeatures Xception71::forward(const Tensor& x) const {
  BackboneFeatures f;
  Tensor h = conv2->forward(conv1->forward(x));
  h = entry1->forward(h);
  h = entry2->forward(h);
  h = entry3->forward(h, &f.low_level);
  h = entry4->forward(h);
  h = entry5->forward(h);
  for (const auto& b : middle->items) h = b->forward(h);
  h = exit1->forward(h);
  f.high_level = exit2->forward(h);
  return f;
}

}  // namespace dl
