// ASPP. The image-pooling branch is broadcast back with resize_bilinear(align_corners=true) from
// 1x1, which is an exact copy forward and a sum backward, so no extra broadcast op is needed.
#include "layers/aspp.h"

namespace dl {

ASPP::ASPP(int64_t in, int64_t c, const std::vector<int64_t>& rates, Rng& rng, const BatchNormOptions& bn) {
  branch0 = register_module("branch0", std::make_shared<ConvBn>(in, c, 1, rng, bn));
  for (size_t i = 0; i < rates.size(); ++i) {
    DL_CHECK(rates[i] >= 1, "ASPP: atrous rate must be >= 1, got " << rates[i]);
    atrous.push_back(
        register_module("branch" + std::to_string(i + 1),
                        std::make_shared<SeparableConv2d>(in, c, 3, rng, bn, 1, rates[i], true)));
  }
  pool = register_module("pool", std::make_shared<ConvBn>(in, c, 1, rng, bn));
  project =
      register_module("project", std::make_shared<ConvBn>(c * int64_t(rates.size() + 2), c, 1, rng, bn));
}

Tensor ASPP::forward(const Tensor& x) const {
  std::vector<Tensor> parts{branch0->forward(x)};
  for (const auto& a : atrous) parts.push_back(a->forward(x));
  Tensor p = pool->forward(global_avg_pool(x));
  parts.push_back(resize_bilinear(p, x.size(2), x.size(3), true));
  return project->forward(concat(parts, 1));
}

}  // namespace dl
