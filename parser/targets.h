// Training targets built from panoptic ground truth (DESIGN.md section 5), as batched tensors
// (N = 1 from build_targets; stack_targets concatenates images).
//
// Keypoints (P = 5): 0 centre of mass, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right of the
// instance's tight box (pixel coordinates, y then x; corners are the extreme pixel centres).
// Edges (E = 8), directed: e = 0..3 centre -> keypoint e+1; e = 4..7 keypoint e-3 -> centre.
// Offsets are in input-pixel units, channel 2k = dy and 2k+1 = dx (keypoint or edge k).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "core/tensor.h"
#include "parser/panoptic.h"

namespace dl {

constexpr int kNumKeypoints = 5;
constexpr int kNumEdges = 8;
// Edge e goes from keypoint kEdgeFrom[e] to keypoint kEdgeTo[e].
constexpr std::array<int, kNumEdges> kEdgeFrom{0, 0, 0, 0, 1, 2, 3, 4};
constexpr std::array<int, kNumEdges> kEdgeTo{1, 2, 3, 4, 0, 0, 0, 0};

// Dataset categories -> contiguous train ids 0..K-1 in ascending category id order.
struct ClassMap {
  std::vector<Category> classes;               // by train id
  std::map<int32_t, int32_t> train_id;         // category id -> train id
  explicit ClassMap(const std::vector<Category>& categories = {});
  int32_t num_classes() const { return static_cast<int32_t>(classes.size()); }
  bool isthing(int32_t train_id) const { return classes.at(train_id).isthing; }
  int32_t to_train_id(int32_t category_id) const;  // throws dl::Error on an unknown id
};

struct TargetConfig {
  double radius = 25.0;         // keypoint disk radius R in pixels
  int64_t small_area = 4096;    // thing instances below this many pixels ...
  double small_weight = 3.0;    // ... get this semantic weight
};

// One ground-truth instance (a non-crowd thing segment).
struct GtInstance {
  int32_t segment_id = 0;
  int32_t train_id = 0;
  int64_t area = 0;
  std::array<std::array<float, 2>, kNumKeypoints> keypoints{};  // (y, x)
};

struct Targets {
  Tensor semantic;         // I32 [N, H, W]: train id, -1 = void (ignored)
  Tensor semantic_weight;  // F32 [N, H, W]: small_weight on small thing instances, 1 elsewhere, 0 on void
  Tensor heatmap;          // F32 [N, P, H, W]: 1 inside any instance's keypoint disk
  Tensor heatmap_weight;   // F32 [N, 1, H, W]: 0 on void and crowd pixels, 1 elsewhere
  Tensor short_offsets;    // F32 [N, 2P, H, W]: to keypoint k of the nearest instance whose k-disk holds the pixel
  Tensor short_mask;       // F32 [N, P, H, W]: 1 inside keypoint k's disk (shares the heatmap's storage)
  Tensor mid_offsets;      // F32 [N, 2E, H, W]: at a pixel of keypoint from(e)'s disk of instance j, to keypoint to(e) of j
  Tensor mid_mask;         // F32 [N, E, H, W]
  Tensor long_offsets;     // F32 [N, 2P, H, W]: from a pixel of instance j to each of j's keypoints
  Tensor long_weight;      // F32 [N, 1, H, W]: 1 / sqrt(area of j) on instance pixels, 0 elsewhere
  std::vector<std::vector<GtInstance>> instances;  // per image
  Targets to(Device d) const;
};

// Builds the targets of one image (N = 1). Unknown categories and ids missing from segments_info
// raise dl::Error naming `source` (usually the PNG file).
Targets build_targets(const PanopticMap& gt, const ClassMap& classes, const TargetConfig& cfg,
                      const std::string& source = "");
Targets stack_targets(const std::vector<Targets>& per_image);

// The same targets with the dense instance part (heatmap, offsets, masks, long weight) filled on
// `device`: per-instance statistics and keypoints come from one CPU pass over the label map, the
// per-pixel fill runs as a CUDA kernel when `device` is CUDA (Device::CPU gives build_targets).
// Bit-identical to build_targets.
Targets build_targets_on(const PanopticMap& gt, const ClassMap& classes, const TargetConfig& cfg, Device device,
                         const std::string& source = "");

}  // namespace dl
