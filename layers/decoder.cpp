// Decoder and heads. The s2d block is fixed at 4 (stride 4 low-level -> stride 16), so the last
// decoder width must be a multiple of 16 for depth_to_space(4).
#include "layers/decoder.h"

namespace dl {

Decoder::Decoder(int64_t low_in, int64_t low_c, int64_t aspp_c, std::vector<int64_t> w, int64_t k, Rng& rng,
                 const BatchNormOptions& bn)
    : widths(std::move(w)) {
  DL_CHECK(!widths.empty() && widths.back() % 16 == 0,
           "Decoder: needs at least one width and the last one divisible by 16 (depth_to_space(4)), got last "
               << (widths.empty() ? 0 : widths.back()));
  low_level = register_module("low_level", std::make_shared<ConvBn>(low_in, low_c, 1, rng, bn));
  int64_t in = aspp_c + 16 * low_c;
  for (size_t i = 0; i < widths.size(); ++i) {
    seps.push_back(register_module("sep" + std::to_string(i + 1),
                                   std::make_shared<SeparableConv2d>(in, widths[i], k, rng, bn, 1, 1, true)));
    in = widths[i];
  }
}

Tensor Decoder::forward(const Tensor& low, const Tensor& aspp) const {
  const int64_t h4 = low.size(2), w4 = low.size(3), h16 = aspp.size(2), w16 = aspp.size(3);
  DL_CHECK(4 * h16 >= h4 && 4 * w16 >= w4 && 4 * (h16 - 1) < h4 && 4 * (w16 - 1) < w4,
           "Decoder: low-level feature " << low.shape_str() << " does not match the stride-16 feature "
                                         << aspp.shape_str());
  Tensor l = low_level->forward(low);
  l = space_to_depth(pad2d(l, 0, 4 * h16 - h4, 0, 4 * w16 - w4), 4);
  Tensor h = concat({aspp, l}, 1);
  for (const auto& s : seps) h = s->forward(h);
  return crop2d(depth_to_space(h, 4), 0, 0, h4, w4);
}

PredictionHead::PredictionHead(int64_t in, int64_t width, int64_t outputs, int64_t k, Rng& rng,
                               const BatchNormOptions& bn) {
  sep = register_module("sep", std::make_shared<SeparableConv2d>(in, width, k, rng, bn, 1, 1, true));
  conv = register_module("conv", std::make_shared<Conv2d>(width, outputs, 1, rng, 1, 1, 1, true));
}

}  // namespace dl
