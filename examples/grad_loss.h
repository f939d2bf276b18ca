// The loss side of `deeperlab grad` behind plain parameters: parser/losses.h and parser/targets.h
// declare names (LossConfig, kNumKeypoints) that parser/config.h and parser/model.h declare too,
// so the two sides of the command live in separate translation units.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "parser/heads.h"
#include "parser/panoptic.h"

namespace dl::cli {

struct GradLossParams {
  double semantic_weight = 1, heatmap_weight = 1, short_weight = 1, mid_weight = 1, long_weight = 1;
  double keep_fraction = 0.15;
  int64_t warmup_steps = 0;
  double radius = 25;
  int64_t small_area = 4096;
  double small_weight = 3;
};

struct GradLoss {
  Tensor total;                                       // differentiable scalar
  std::vector<std::pair<std::string, Tensor>> terms;  // "loss.semantic", ..., "loss.total" (detached)
  int64_t num_instances = 0;
  bool finite = true;
};

// Targets of `gt` on the outputs' device, then the five loss terms and their total.
GradLoss grad_loss(const HeadOutputs& out, const PanopticMap& gt, const std::vector<Category>& categories,
                   const GradLossParams& p, int64_t step, const std::string& source);

}  // namespace dl::cli
