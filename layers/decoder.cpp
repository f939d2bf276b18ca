// Decoder and heads. The last decoder width must be a multiple of block^2 for depth_to_space.
#include "layers/decoder.h"

namespace dl {

Decoder::Decoder(int64_t low_in, int64_t low_c, int64_t aspp_c, std::vector<int64_t> w, int64_t k, int64_t b,
                 Rng& rng, const BatchNormOptions& bn)
    : widths(std::move(w)), block(b) {
  DL_CHECK(b >= 1 && !widths.empty() && widths.back() % (b * b) == 0,
           "Decoder: needs at least one width and the last one divisible by "
               << b * b << " (depth_to_space(" << b << ")), got last "
               << (widths.empty() ? 0 : widths.back()));
  low_level = register_module("low_level", std::make_shared<ConvBn>(low_in, low_c, 1, rng, bn));
  int64_t in = aspp_c + b * b * low_c;
  for (size_t i = 0; i < widths.size(); ++i) {
    seps.push_back(register_module("sep" + std::to_string(i + 1),
                                   std::make_shared<SeparableConv2d>(in, widths[i], k, rng, bn, 1, 1, true)));
    in = widths[i];
  }
}

Tensor Decoder::forward(const Tensor& low, const Tensor& aspp) const {
  const int64_t b = block, h4 = low.size(2), w4 = low.size(3), hs = aspp.size(2), ws = aspp.size(3);
  DL_CHECK(b * hs >= h4 && b * ws >= w4 && b * (hs - 1) < h4 && b * (ws - 1) < w4,
           "Decoder: low-level feature " << low.shape_str() << " does not match the ASPP feature "
                                         << aspp.shape_str() << " at block " << b);
  Tensor l = low_level->forward(low);
  l = space_to_depth(pad2d(l, 0, b * hs - h4, 0, b * ws - w4), b);
  Tensor h = concat({aspp, l}, 1);
  for (const auto& s : seps) h = s->forward(h);
  return crop2d(depth_to_space(h, b), 0, 0, h4, w4);
}

PredictionHead::PredictionHead(int64_t in, int64_t width, int64_t outputs, int64_t k, Rng& rng,
                               const BatchNormOptions& bn) {
  sep = register_module("sep", std::make_shared<SeparableConv2d>(in, width, k, rng, bn, 1, 1, true));
  conv = register_module("conv", std::make_shared<Conv2d>(width, outputs, 1, rng, 1, 1, 1, true));
}

}  // namespace dl
