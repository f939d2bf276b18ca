// Instance prediction and panoptic fusion (DESIGN.md section 7, docs/INFERENCE.md): the bottom-up
// decoder that turns the five head outputs into a panoptic segmentation, on the CPU or (when the
// head outputs live there) on the GPU, with bit-identical results.
//
// Every stage is a separate function on plain host data so it can be tested on hand-built cases;
// predict_panoptic chains them. Votes are 64-bit fixed-point integers (VoteMaps), which is what
// makes the result independent of thread count and of the order of atomic additions.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "cuda/fusion.h"
#include "parser/heads.h"
#include "parser/panoptic.h"
#include "parser/targets.h"

namespace dl {

struct InferenceConfig {
  double radius = 25.0;              // R: votes are normalised by pi R^2
  int refine_steps = 2;              // M(x) <- M(x) + S_l(x + M(x)), this many times
  double short_weight = 1.0;         // fused score = short_weight * short + long_weight * long
  double long_weight = 1.0;
  double keypoint_threshold = 0.01;  // candidates: 3x3 local maxima with fused score above this
  double nms_radius = 10.0;          // r: a candidate within r of the same keypoint of a detected instance is rejected
  double box_nms_iou = 0.5;          // instances whose keypoint box overlaps a better one's by IoU > this are dropped
  int64_t min_area = 0;              // segments smaller than this become void (0 = off)
  double min_vote_weight = 0.01;     // short-range votes with sigmoid(heatmap) below this are skipped (0 = all vote)
  bool check_finite = true;          // scan every head output for NaN/Inf first
};

// Accumulated keypoint votes: acc[k * H * W + y * W + x], fixed point; score = acc * scale.
struct VoteMaps {
  int64_t height = 0, width = 0;
  double scale = 0;  // 1 / (2^24 * pi R^2)
  std::vector<unsigned long long> acc;
  double score(int k, int64_t y, int64_t x) const { return double(acc[(k * height + y) * width + x]) * scale; }
};

struct KeypointCandidate {
  int32_t keypoint = 0;
  int32_t y = 0, x = 0;
  unsigned long long acc = 0;
  double score = 0;
};

struct DetectedInstance {
  std::array<std::array<float, 2>, kNumKeypoints> keypoints{};  // (y, x), inside the image
  double score = 0;     // mean fused score at the keypoints
  int32_t seed_keypoint = 0;  // the candidate keypoint it grew from
};

// Per-stage wall times of the last predict_panoptic call, in milliseconds.
struct InferenceTimings {
  double check = 0, argmax = 0, refine_vote = 0, candidates = 0, grouping = 0, assign = 0, fusion = 0, total = 0;
};

// ---- the pipeline ----
// N = 1 head outputs at input resolution (F32, all on the CPU or all on CUDA). Segments: stuff
// classes first (ascending train id), then instances by score; ids 1, 2, ... in that order.
// The CPU path keeps its per-pixel buffers (about 100 bytes per pixel) in a per-thread workspace
// reused by the next call; release_inference_workspace() frees the calling thread's.
PanopticMap predict_panoptic(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg,
                             InferenceTimings* timings = nullptr);
void release_inference_workspace();

// ---- the stages (CPU tensors; N = 1) ----
// Checks shapes, dtypes and devices against `classes` (and, with cfg.check_finite, NaN/Inf).
void check_head_outputs(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg);
// Semantic argmax (first maximum wins) as train ids, H * W.
std::vector<int32_t> semantic_argmax(const Tensor& semantic);
// (1) refinement of a [1, 2C, H, W] offset map whose channel pair c points at keypoint target[c].
Tensor refine_offsets(const Tensor& offsets, const Tensor& short_offsets, const std::vector<int>& target, int steps);
// (2) score maps: short (heatmap-weighted votes at x + S_k(x)), long (votes of thing pixels at
// x + refined L_k(x)) and their weighted sum, as fixed-point VoteMaps. `labels` = semantic argmax.
VoteMaps vote_scores(const HeadOutputs& out, const std::vector<int32_t>& labels, const ClassMap& classes,
                     const InferenceConfig& cfg, double short_weight, double long_weight);
// Same as vote_scores but also returns the refined long-range offsets at thing pixels
// (2P planes of H * W; other pixels hold 0).
VoteMaps vote_scores(const HeadOutputs& out, const std::vector<int32_t>& labels, const ClassMap& classes,
                     const InferenceConfig& cfg, double short_weight, double long_weight,
                     std::vector<float>* refined_long);
// (3) 3x3 local maxima (>= all eight neighbours) above the threshold, best first
// (score descending, then keypoint, then y, then x).
std::vector<KeypointCandidate> find_candidates(const VoteMaps& votes, double threshold);
// (4) grouping along the star graph with rejection within nms_radius, then box NMS.
std::vector<DetectedInstance> group_instances(const std::vector<KeypointCandidate>& candidates, const VoteMaps& votes,
                                              const HeadOutputs& out, const InferenceConfig& cfg);
// Box NMS over keypoint boxes; returns the kept instances by score (stable).
std::vector<DetectedInstance> box_nms(std::vector<DetectedInstance> instances, double iou_threshold);
// (5) pixel assignment: instance index per pixel for thing pixels (-1 elsewhere or when there are
// no instances). `refined_long` as returned by vote_scores. The fast version prunes with an exact
// lower bound and equals the brute-force one.
std::vector<int32_t> assign_pixels(const std::vector<int32_t>& labels, const std::vector<float>& refined_long,
                                   const std::vector<DetectedInstance>& instances, const ClassMap& classes,
                                   int64_t height, int64_t width);
std::vector<int32_t> assign_pixels_bruteforce(const std::vector<int32_t>& labels, const std::vector<float>& refined_long,
                                              const std::vector<DetectedInstance>& instances, const ClassMap& classes,
                                              int64_t height, int64_t width);
// (6) fusion into segments (see predict_panoptic for the id order).
PanopticMap fuse_panoptic(const std::vector<int32_t>& labels, const std::vector<int32_t>& assignment,
                          size_t num_instances, const ClassMap& classes, const InferenceConfig& cfg, int64_t height,
                          int64_t width);

// ---- pieces shared with the CUDA path (cuda/fusion.cu) ----
namespace inst {
// Sigmoid lookup table indexed by sigmoid_lut_index (parser/instance_kernels.h).
const std::vector<float>& sigmoid_lut();
void check_config(const InferenceConfig& cfg);
double vote_scale(const InferenceConfig& cfg);
unsigned long long threshold_acc(const InferenceConfig& cfg);  // acc > this <=> score > threshold
bool candidate_before(const KeypointCandidate& a, const KeypointCandidate& b);
// Grouping given a way to expand candidate i (of `sorted`, best first) into its proposal.
std::vector<DetectedInstance> group_sorted(const std::vector<KeypointCandidate>& sorted, const InferenceConfig& cfg,
                                           double scale, const std::function<void(size_t, Proposal&)>& expand);
// Per-owner statistics -> segment table and owner -> id table. owner = -1 void, c < K stuff class
// c, K + j instance j.
struct FusionStats {
  std::vector<int64_t> area;                 // per owner (K + n)
  std::vector<int32_t> y0, x0, y1, x1;       // per owner, inclusive
  std::vector<int64_t> class_votes;          // n * K
  // Empty statistics: zero areas and votes, boxes that any pixel widens.
  void reset(size_t owners, size_t votes) {
    area.assign(owners, 0);
    y0.assign(owners, INT32_MAX);
    x0.assign(owners, INT32_MAX);
    y1.assign(owners, -1);
    x1.assign(owners, -1);
    class_votes.assign(votes, 0);
  }
};
PanopticMap build_segments(const FusionStats& stats, size_t num_instances, const ClassMap& classes,
                           const InferenceConfig& cfg, int64_t height, int64_t width, std::vector<int32_t>& owner_to_id);
}  // namespace inst

}  // namespace dl
