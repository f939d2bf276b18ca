// CUDA fill of the dense instance targets (heatmap, short/mid/long offsets, masks, long weight) from
// a per-pixel instance map and the per-instance keypoints computed on the host (parser/targets.cpp).
// One thread per pixel scans every instance's keypoints, so the result does not depend on the
// order of writes and matches the CPU fill bit for bit (nearest instance, ties to the lower index).
#pragma once
#include <cstdint>

#include "cuda/runtime.h"

namespace dl::cuda {

// inst: (h*w) instance index per pixel, -1 none, -2 crowd. keypoints: (num_inst, 5, 2) (y, x).
// inv_sqrt_area: (num_inst). Outputs (one image): heatmap (5,h,w, also the short-range mask), short_off
// (10,h,w), mid_off (16,h,w), mid_mask (8,h,w), long_off (10,h,w), long_weight (h,w); every element is
// written.
void instance_targets_fwd(float* heatmap, float* short_off, float* mid_off, float* mid_mask, float* long_off,
                          float* long_weight, const int32_t* inst, const float* keypoints,
                          const float* inv_sqrt_area, int64_t num_inst, int64_t h, int64_t w, double radius,
                          cudaStream_t s);

}  // namespace dl::cuda
