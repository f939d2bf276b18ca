// DeeperLab: backbone -> ASPP -> space-to-depth decoder -> five prediction heads
// (DESIGN.md section 4), built from the model section of a config.
//
// Output geometry: the heads run at stride 4 (size h4 x w4 with h4 = ceil(ceil(H/2)/2)); forward()
// resizes them bilinearly with align_corners=true from (h4, w4) straight to the input size (H, W).
// For H, W of the form 4k+1 (hence every 16k+1 size such as 513) this is exactly the x4
// upsampling (feature pixel i sits on input pixel 4i); other sizes get the corner-aligned resize.
#pragma once
#include <memory>

#include "layers/aspp.h"
#include "layers/backbone.h"
#include "layers/decoder.h"
#include "parser/config.h"
#include "parser/heads.h"

namespace dl {

class DeeperLabHeads : public Module {
 public:
  DeeperLabHeads(int64_t in, const ModelConfig& c, Rng& rng, const BatchNormOptions& bn);
  HeadOutputs forward(const Tensor& x) const;  // at the decoder's resolution
  std::shared_ptr<PredictionHead> semantic, heatmap, long_offsets, short_offsets, mid_offsets;
};

struct DeeperLabFeatures {
  Tensor low_level;            // backbone, stride 4
  Tensor high_level;           // backbone, stride 16
  Tensor aspp;                 // stride 16
  Tensor decoder;              // stride 4
  HeadOutputs heads;           // raw head outputs at stride 4 (before the resize to the input size)
  NamedTensors named() const;  // "features.low_level", ..., "heads_stride4.semantic", ...
};

class DeeperLab : public Module {
 public:
  explicit DeeperLab(const ModelConfig& c);
  // image_normalized: (N, 3, H, W) in [-1, 1]. Head outputs at (H, W).
  HeadOutputs forward(const Tensor& image_normalized) const;
  DeeperLabFeatures forward_features(const Tensor& image_normalized) const;
  const ModelConfig& config() const { return cfg_; }

  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<ASPP> aspp;
  std::shared_ptr<Decoder> decoder;
  std::shared_ptr<DeeperLabHeads> heads;

 private:
  ModelConfig cfg_;
};

// Resizes every head output to (h, w) (align_corners = true; see the file comment).
HeadOutputs resize_heads(const HeadOutputs& s4, int64_t h, int64_t w);
NamedTensors named_heads(const HeadOutputs& h, const std::string& prefix = "heads.");
// The named intermediate features, the raw stride-4 head outputs and the heads at the input size
// ("heads.*") for one input, without autograd (`deeperlab infer --dump`).
NamedTensors dump_features(const DeeperLab& model, const Tensor& image_normalized);

// uint8 (N, 3, H, W) RGB -> F32 x * 2/255 - 1 on the CPU (move it to the device afterwards).
Tensor normalize_image(const Tensor& image_u8);

// Multiply-adds of the convolutions of one forward pass at (h, w), batch 1, counted without
// running them (MacCounter with skip_compute).
double count_macs(const DeeperLab& model, int64_t h, int64_t w);

}  // namespace dl
