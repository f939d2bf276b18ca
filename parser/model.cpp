// DeeperLab assembly. Construction order fixes the initialisation: one Rng seeded by
// model.init_seed is consumed by backbone, ASPP, decoder and heads in that order.
#include "parser/model.h"

#include "core/rng.h"
#include "layers/mobilenet_v2.h"
#include "layers/xception.h"

namespace dl {

DeeperLabHeads::DeeperLabHeads(int64_t in, const ModelConfig& c, Rng& rng, const BatchNormOptions& bn) {
  const int64_t k = c.head_kernel_size, wi = c.instance_head_width;
  semantic = register_module(
      "semantic", std::make_shared<PredictionHead>(in, c.semantic_head_width, c.num_classes, k, rng, bn));
  heatmap = register_module("heatmap", std::make_shared<PredictionHead>(in, wi, kNumKeypoints, k, rng, bn));
  long_offsets = register_module("long_offsets",
                                 std::make_shared<PredictionHead>(in, wi, 2 * kNumKeypoints, k, rng, bn));
  short_offsets = register_module("short_offsets",
                                  std::make_shared<PredictionHead>(in, wi, 2 * kNumKeypoints, k, rng, bn));
  mid_offsets =
      register_module("mid_offsets", std::make_shared<PredictionHead>(in, wi, 2 * kNumEdges, k, rng, bn));
}

HeadOutputs DeeperLabHeads::forward(const Tensor& x) const {
  HeadOutputs h;
  h.semantic = semantic->forward(x);
  h.heatmap = heatmap->forward(x);
  h.long_offsets = long_offsets->forward(x);
  h.short_offsets = short_offsets->forward(x);
  h.mid_offsets = mid_offsets->forward(x);
  return h;
}

NamedTensors named_heads(const HeadOutputs& h, const std::string& p) {
  return {{p + "semantic", h.semantic},
          {p + "heatmap", h.heatmap},
          {p + "long_offsets", h.long_offsets},
          {p + "short_offsets", h.short_offsets},
          {p + "mid_offsets", h.mid_offsets}};
}

NamedTensors DeeperLabFeatures::named() const {
  NamedTensors out{{"features.low_level", low_level},
                   {"features.high_level", high_level},
                   {"features.aspp", aspp},
                   {"features.decoder", decoder}};
  for (auto& p : named_heads(heads, "heads_stride4.")) out.push_back(p);
  return out;
}

DeeperLab::DeeperLab(const ModelConfig& c) : cfg_(c) {
  Rng rng(uint64_t(c.init_seed));
  BatchNormOptions bn;
  bn.eps = c.bn_eps;
  bn.momentum = c.bn_momentum;
  bn.track_num_batches = c.bn_track_num_batches;
  if (c.backbone == "xception71") {
    XceptionOptions o;
    o.width_multiplier = c.width_multiplier;
    o.output_stride = c.output_stride;
    o.middle_units = c.xception_middle_units;
    o.bn = bn;
    backbone = register_module("backbone", std::make_shared<Xception71>(o, rng));
  } else if (c.backbone == "mobilenet_v2") {
    MobileNetV2Options o;
    o.width_multiplier = c.width_multiplier;
    o.kernel_size = c.backbone_kernel_size;
    o.output_stride = c.output_stride;
    o.bn = bn;
    backbone = register_module("backbone", std::make_shared<MobileNetV2>(o, rng));
  } else {
    DL_FAIL("DeeperLab: unknown backbone \"" << c.backbone << "\" (xception71 | mobilenet_v2)");
  }
  aspp = register_module(
      "aspp", std::make_shared<ASPP>(backbone->high_level_channels, c.aspp_channels, c.aspp_rates, rng, bn));
  decoder = register_module(
      "decoder",
      std::make_shared<Decoder>(backbone->low_level_channels, c.low_level_channels, c.aspp_channels,
                                c.decoder_widths, c.decoder_kernel_size, c.output_stride / 4, rng, bn));
  heads = register_module("heads", std::make_shared<DeeperLabHeads>(decoder->out_channels(), c, rng, bn));
}

DeeperLabFeatures DeeperLab::forward_features(const Tensor& x) const {
  DL_CHECK(x.dim() == 4 && x.size(1) == 3, "DeeperLab: expected an (N, 3, H, W) image, got " << x.desc());
  DL_CHECK(x.size(2) >= 16 && x.size(3) >= 16,
           "DeeperLab: image " << x.shape_str() << " is smaller than 16x16");
  DeeperLabFeatures f;
  BackboneFeatures b = backbone->forward(x);
  f.low_level = b.low_level;
  f.high_level = b.high_level;
  f.aspp = aspp->forward(b.high_level);
  f.decoder = decoder->forward(b.low_level, f.aspp);
  f.heads = heads->forward(f.decoder);
  return f;
}

HeadOutputs resize_heads(const HeadOutputs& s, int64_t h, int64_t w) {
  HeadOutputs o;
  o.semantic = resize_bilinear(s.semantic, h, w, true);
  o.heatmap = resize_bilinear(s.heatmap, h, w, true);
  o.long_offsets = resize_bilinear(s.long_offsets, h, w, true);
  o.short_offsets = resize_bilinear(s.short_offsets, h, w, true);
  o.mid_offsets = resize_bilinear(s.mid_offsets, h, w, true);
  return o;
}

HeadOutputs DeeperLab::forward(const Tensor& x) const {
  return resize_heads(forward_features(x).heads, x.size(2), x.size(3));
}

Tensor normalize_image(const Tensor& img) {
  DL_CHECK(img.dtype() == DType::U8 && img.dim() == 4 && img.size(1) == 3,
           "normalize_image: expected a U8 (N, 3, H, W) image, got " << img.desc());
  Tensor h = img.to(Device::CPU);
  Tensor out = Tensor::empty(img.shape(), DType::F32);
  const uint8_t* p = h.data<uint8_t>();
  float* q = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) q[i] = float(p[i]) * (2.0f / 255.0f) - 1.0f;
  return out;
}

double count_macs(const DeeperLab& model, int64_t h, int64_t w) {
  NoGradGuard ng;
  MacCounter mc(true);
  const bool was_training = model.is_training();
  // Eval mode: no running-statistics update on the placeholder activations.
  const_cast<DeeperLab&>(model).eval();
  model.forward(Tensor::zeros({1, 3, h, w}, DType::F32, model.heads->semantic->conv->weight.device()));
  const_cast<DeeperLab&>(model).train(was_training);
  return mc.macs;
}

NamedTensors dump_features(const DeeperLab& model, const Tensor& x) {
  NoGradGuard ng;
  DeeperLabFeatures f = model.forward_features(x);
  NamedTensors named = f.named();
  for (auto& kv : named_heads(resize_heads(f.heads, x.size(2), x.size(3)), "heads.")) named.push_back(kv);
  return named;
}

}  // namespace dl
