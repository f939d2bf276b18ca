// DeeperLab's training losses (DESIGN.md section 6; exact definitions in docs/LOSSES.md) as
// autograd ops, CPU (F32/F64) and CUDA (F32), and the weighted total of the five terms.
// Gradients flow to the predictions only (labels, targets, weights and masks are constants).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "parser/heads.h"
#include "parser/targets.h"

namespace dl {

// Weighted softmax cross-entropy with hard-pixel mining. logits (N, K, H, W); labels I32 (N, H, W)
// with -1 = ignore; weights (N, H, W), same dtype as logits. Per image the K' = max(1,
// round(keep_fraction * H * W)) pixels with the largest weighted loss are kept (exactly K', ties
// broken by pixel index); loss = mean over images of (sum of kept losses) / K'.
Tensor bootstrapped_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                  double keep_fraction);

// Sigmoid cross-entropy averaged over the (pixel, channel) elements with weight > 0:
// sum w * bce(x, t) / #{w > 0}; 0 when nothing is active. logits/targets (N, P, H, W);
// weight (N, 1, H, W) broadcast over P, or (N, P, H, W).
Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& weight);

// L1 on (dy, dx) pairs: sum over active (mask > 0) (image, pair, pixel) of
// (|dy - dy*| + |dx - dx*|) * mask / scale, divided by the number of active entries (0 when none).
// pred/target (N, 2C, H, W); mask (N, C, H, W) or (N, 1, H, W) broadcast over the C pairs.
Tensor offset_l1(const Tensor& pred, const Tensor& target, const Tensor& mask, double scale);

struct LossConfig {
  double semantic_weight = 1.0;
  double heatmap_weight = 1.0;
  double short_weight = 1.0;
  double mid_weight = 1.0;
  double long_weight = 1.0;
  double keep_fraction = 0.15;  // hard-pixel mining of the semantic loss
  int64_t warmup_steps = 0;     // > 0: kept fraction anneals linearly from 1.0 to keep_fraction
  double radius = 25.0;         // short/mid offsets are divided by this (the target disk radius)
  // The kept fraction used at `step`.
  double keep_fraction_at(int64_t step) const;
};

struct LossTerms {
  Tensor semantic, heatmap, short_offsets, mid_offsets, long_offsets, total;  // scalars
};

// The five terms and their weighted total. Targets must be on the outputs' device; F32 targets
// are converted when the outputs are F64 (CPU gradient checks).
LossTerms deeperlab_loss(const HeadOutputs& out, const Targets& t, const LossConfig& cfg, int64_t step);

// True when every defined term is finite (reads the scalars back from the device).
bool all_finite(const LossTerms& terms);

}  // namespace dl
