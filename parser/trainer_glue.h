// Narrow wrappers around the network, the losses and the panoptic fusion for the trainer and the
// CLI. Each wrapper lives in its own translation unit (parser/trainer_{model,loss,fusion}.cpp)
// because the headers behind them declare same-named types (config sections vs. the loss and
// fusion option structs, keypoint constants) that cannot meet in one translation unit.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "parser/heads.h"
#include "parser/panoptic.h"
#include "weights/named_tensors.h"

namespace dl {

struct ModelConfig;
struct Targets;
struct ClassMap;

// DeeperLab (parser/model.h) behind a pointer.
class Net {
 public:
  explicit Net(const ModelConfig& c);
  ~Net();
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;
  HeadOutputs forward(const Tensor& image_normalised) const;  // heads at the input size
  NamedTensors state_dict() const;
  NamedTensors named_parameters() const;
  NamedTensors backbone_state_dict() const;
  void train(bool on = true);
  void eval() { train(false); }
  void to(Device d);
  void zero_grad();
  // The named intermediate features, the raw stride-4 head outputs and the heads at the input
  // size ("heads.*") for one input (no autograd).
  NamedTensors dump(const Tensor& image_normalised) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct LossParams {
  double semantic_weight = 1, heatmap_weight = 1, short_weight = 1, mid_weight = 1, long_weight = 1;
  double keep_fraction = 0.15;
  int64_t warmup_steps = 0;
  double radius = 25;
};
struct LossValues {
  Tensor total;  // scalar, differentiable
  std::map<std::string, double>
      terms;  // "loss", "semantic", "heatmap", "short_offsets", "mid_offsets", "long_offsets"
};
LossValues compute_loss(const HeadOutputs& out, const Targets& t, const LossParams& p, int64_t step);

struct FusionParams {
  double radius = 25;
  int64_t refine_iterations = 2;
  double short_weight = 1, long_weight = 1, keypoint_threshold = 0.01, nms_radius = 10, box_nms_iou = 0.5;
  int64_t min_area = 0;
};
PanopticMap fuse_panoptic_outputs(const HeadOutputs& out, const ClassMap& classes, const FusionParams& p);

}  // namespace dl
