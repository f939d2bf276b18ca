// The five head outputs of the network (DESIGN.md section 4), upsampled to input resolution.
#pragma once
#include "core/tensor.h"

namespace dl {

// Keypoints per instance: centre of mass, top-left, top-right, bottom-left, bottom-right.
constexpr int kNumKeypoints = 5;
// Directed edges of the star graph: centre -> each corner, each corner -> centre.
constexpr int kNumEdges = 8;

struct HeadOutputs {
  Tensor semantic;       // [N, K, H, W] logits
  Tensor heatmap;        // [N, P, H, W] logits (sigmoid at inference)
  Tensor long_offsets;   // [N, 2P, H, W] (dy, dx) per keypoint, pixels
  Tensor short_offsets;  // [N, 2P, H, W]
  Tensor mid_offsets;    // [N, 2E, H, W]
};

}  // namespace dl
