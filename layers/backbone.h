// The backbone interface shared by Xception-71 and MobileNetV2, a list container for numbered
// children ("middle.0"), and torchvision's channel rounding.
#pragma once
#include <memory>
#include <string>

#include "layers/conv.h"

namespace dl {

struct BackboneFeatures {
  Tensor low_level;   // stride 4 (DESIGN.md section 4 says which tensor)
  Tensor high_level;  // stride = output_stride
};

class Backbone : public Module {
 public:
  virtual BackboneFeatures forward(const Tensor& x) const = 0;
  int64_t low_level_channels = 0, high_level_channels = 0;
};

// Children named "0", "1", ... (PyTorch's nn.ModuleList naming).
template <class M>
class ModuleList : public Module {
 public:
  std::shared_ptr<M> append(std::shared_ptr<M> m) {
    items.push_back(register_module(std::to_string(items.size()), std::move(m)));
    return items.back();
  }
  std::vector<std::shared_ptr<M>> items;
};

// torchvision's _make_divisible: round to the nearest multiple of `divisor` (at least `divisor`),
// never more than 10% below v.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t n = std::max<int64_t>(divisor, int64_t(v + divisor / 2.0) / divisor * divisor);
  if (double(n) < 0.9 * v) n += divisor;
  return n;
}

// Output-stride bookkeeping shared by both backbones (DeepLab's / timm's rule): a unit whose stride
// would take the running stride past `output_stride` runs with stride 1 at the current dilation,
// and every unit after it with the dilation multiplied by that stride.
struct StrideTracker {
  int64_t output_stride, current = 1, dilation = 1;
  // Returns {stride, dilation} for a unit asking for `stride`.
  std::pair<int64_t, int64_t> next(int64_t stride) {
    if (current * stride > output_stride) {
      const int64_t d = dilation;
      dilation *= stride;
      return {1, d};
    }
    current *= stride;
    return {stride, dilation};
  }
};

}  // namespace dl
