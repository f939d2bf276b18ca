// DeeperLab's decoder (space-to-depth instead of upsampling) and the prediction heads.
#pragma once
#include "layers/backbone.h"

namespace dl {

// low-level (stride 4) -> 1x1 conv (+BN+ReLU) -> zero-pad bottom/right to exactly b times the ASPP
// size -> space_to_depth(b); concat [aspp, s2d]; SeparableConv k x k (x2, widths from config);
// depth_to_space(b); crop back to the low-level size. b = output_stride / 4 (4 at output stride 16,
// as DESIGN.md). Children: low_level (ConvBn), sep1, sep2.
class Decoder : public Module {
 public:
  Decoder(int64_t low_level_in, int64_t low_level_channels, int64_t aspp_channels,
          std::vector<int64_t> widths, int64_t kernel, int64_t block, Rng& rng, const BatchNormOptions& bn);
  Tensor forward(const Tensor& low_level, const Tensor& aspp) const;
  int64_t out_channels() const { return widths.back() / (block * block); }
  std::shared_ptr<ConvBn> low_level;
  std::vector<std::shared_ptr<SeparableConv2d>> seps;  // registered as sep1, sep2, ...
  std::vector<int64_t> widths;
  int64_t block;
};

// SeparableConv k x k (in -> width, +BN+ReLU) then a 1x1 conv with bias -> outputs.
// Children: sep, conv.
class PredictionHead : public Module {
 public:
  PredictionHead(int64_t in, int64_t width, int64_t outputs, int64_t kernel, Rng& rng,
                 const BatchNormOptions& bn);
  Tensor forward(const Tensor& x) const { return conv->forward(sep->forward(x)); }
  std::shared_ptr<SeparableConv2d> sep;
  std::shared_ptr<Conv2d> conv;
};

}  // namespace dl
