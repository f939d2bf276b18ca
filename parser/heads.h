// The five head outputs of the network (DESIGN.md section 4), upsampled to input resolution.
#pragma once
#include "core/tensor.h"

namespace dl {

struct HeadOutputs {
  Tensor semantic;       // [N, K, H, W] logits
  Tensor heatmap;        // [N, P, H, W] logits (sigmoid at inference)
  Tensor long_offsets;   // [N, 2P, H, W] (dy, dx) per keypoint, pixels
  Tensor short_offsets;  // [N, 2P, H, W]
  Tensor mid_offsets;    // [N, 2E, H, W]
};

}  // namespace dl
