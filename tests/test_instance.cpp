// Instance prediction and fusion: every stage on hand-built tiny cases, decoding of perfect head
// outputs back to the ground truth (touching, overlapping boxes, nested instances, random scenes),
// robustness to perturbed offsets, fast vs brute-force pixel assignment, thread-count
// independence, and bad input.
#include <omp.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "metrics/panoptic_eval.h"
#include "parser/instance.h"
#include "parser/panoptic_output.h"
#include "tests/fusion_scenes.h"
#include "tests/testing.h"

using namespace dl;
using namespace dl::testing;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Panoptic quality of `pred` against `gt` (no void, no crowd in these scenes): segments of the
// same category match at IoU > 0.5; PQ averaged over the categories present in either.
double simple_pq(const PanopticMap& gt, const PanopticMap& pred) {
  std::map<std::pair<int32_t, int32_t>, int64_t> inter;
  for (size_t i = 0; i < gt.ids.size(); ++i) ++inter[{gt.ids[i], pred.ids[i]}];
  std::map<int32_t, double> iou_sum, tp, fp, fn;
  std::set<int32_t> matched_gt, matched_pred;
  for (const auto& [key, n] : inter) {
    const SegmentInfo* g = gt.find(key.first);
    const SegmentInfo* p = pred.find(key.second);
    if (!g || !p || g->category_id != p->category_id) continue;
    const double iou = double(n) / double(g->area + p->area - n);
    if (iou > 0.5) {
      iou_sum[g->category_id] += iou;
      tp[g->category_id] += 1;
      matched_gt.insert(g->id);
      matched_pred.insert(p->id);
    }
  }
  std::set<int32_t> cats;
  for (const auto& s : gt.segments) {
    cats.insert(s.category_id);
    if (!matched_gt.count(s.id)) fn[s.category_id] += 1;
  }
  for (const auto& s : pred.segments) {
    cats.insert(s.category_id);
    if (!matched_pred.count(s.id)) fp[s.category_id] += 1;
  }
  double pq = 0;
  for (int32_t c : cats) pq += iou_sum[c] / (tp[c] + 0.5 * fp[c] + 0.5 * fn[c]);
  return pq / double(cats.size());
}

// PQ of the metrics library (panopticapi definition), checked against the simple one above.
double metrics_pq(const PanopticMap& gt, const PanopticMap& pred) {
  PanopticEvaluator ev(fusion_categories());
  ev.add(gt, pred, "scene");
  const double pq = ev.result().all.pq;
  REQUIRE(pq == Approx(simple_pq(gt, pred)).margin(1e-12));
  return pq;
}

// Segment-for-segment equality up to id relabelling: same pixel sets, categories, areas, boxes.
void require_same_panoptic(const PanopticMap& gt, const PanopticMap& pred) {
  REQUIRE(pred.height == gt.height);
  REQUIRE(pred.width == gt.width);
  REQUIRE(pred.segments.size() == gt.segments.size());
  std::map<int32_t, int32_t> g2p, p2g;
  for (size_t i = 0; i < gt.ids.size(); ++i) {
    const int32_t g = gt.ids[i], p = pred.ids[i];
    auto a = g2p.emplace(g, p);
    auto b = p2g.emplace(p, g);
    if (a.first->second != p || b.first->second != g) {
      INFO("pixel (" << i / gt.width << ", " << i % gt.width << "): gt id " << g << " predicted id " << p
                     << ", but gt " << g << " earlier mapped to " << a.first->second << " and predicted " << p
                     << " to " << b.first->second);
      REQUIRE(false);
    }
  }
  for (const auto& s : gt.segments) {
    const SegmentInfo* p = pred.find(g2p.at(s.id));
    REQUIRE(p != nullptr);
    INFO("gt segment " << s.id << " category " << s.category_id);
    REQUIRE(p->category_id == s.category_id);
    REQUIRE(p->area == s.area);
    REQUIRE(p->bbox == s.bbox);
  }
}

InferenceConfig small_cfg(double radius) {
  InferenceConfig cfg;
  cfg.radius = radius;
  return cfg;
}

PanopticMap decode_gt(const FusionScene& s, double radius, InferenceConfig cfg) {
  ClassMap cm(fusion_categories());
  TargetConfig tc;
  tc.radius = radius;
  Targets t = build_targets(s.map, cm, tc, "scene");
  return predict_panoptic(perfect_outputs(t, cm), cm, cfg);
}

// A scene with touching instances, overlapping boxes and a small instance nested inside a big
// L-shaped one's box.
FusionScene hand_scene() {
  FusionScene s(120, 160);
  s.rect(10, 50, 10, 89, 39);  // two cars touching along x = 39 | 40
  s.seg(10, 10);
  s.rect(11, 55, 40, 84, 64);
  s.seg(11, 10);
  // Overlapping boxes: a person ellipse whose box overlaps the second car's box (IoU < 0.5).
  s.ellipse(12, 95, 70, 14, 10);
  s.seg(12, 11);
  // An L-shaped car with a small person inside its box.
  s.rect(13, 10, 90, 69, 104);
  s.rect(13, 55, 105, 69, 150);
  s.seg(13, 10);
  s.rect(14, 20, 120, 34, 134);
  s.seg(14, 11);
  s.finish();
  return s;
}

// Head outputs of size h x w filled with `v` (semantic with K channels).
HeadOutputs filled_outputs(int64_t K, int64_t h, int64_t w, float v = 0.0f) {
  HeadOutputs o;
  o.semantic = Tensor::full({1, K, h, w}, v);
  o.heatmap = Tensor::full({1, 5, h, w}, v);
  o.long_offsets = Tensor::full({1, 10, h, w}, v);
  o.short_offsets = Tensor::full({1, 10, h, w}, v);
  o.mid_offsets = Tensor::full({1, 16, h, w}, v);
  return o;
}

float& px(const Tensor& t, int64_t c, int64_t y, int64_t x) {
  return t.data<float>()[(c * t.size(2) + y) * t.size(3) + x];
}

}  // namespace

// ---- the stages on tiny hand-built cases ----

TEST_CASE("semantic_argmax 2x3 K=3: first maximum wins ties", "[instance]") {
  Tensor s = Tensor::from_vector<float>({1, 5, 2, 0, 0, 1,  /**/ 3, 5, 2, 0, 0, 0,  /**/ 2, 0, 7, 0, -1, 1}, {1, 3, 2, 3});
  auto l = semantic_argmax(s);
  REQUIRE(l == std::vector<int32_t>{1, 0, 2, 0, 0, 0});
}

TEST_CASE("refine_offsets 6x7 steps=0,1,2: constant and linear short offsets", "[instance]") {
  const int64_t h = 6, w = 7;
  Tensor m = Tensor::zeros({1, 2, h, w});
  Tensor s = Tensor::zeros({1, 10, h, w});
  // Target keypoint 2: short offsets (dy, dx) = (0.5, -0.25) everywhere.
  for (int64_t i = 0; i < h * w; ++i) {
    s.data<float>()[4 * h * w + i] = 0.5f;
    s.data<float>()[5 * h * w + i] = -0.25f;
  }
  px(m, 0, 2, 3) = 1.0f;
  for (int steps : {0, 1, 2}) {
    Tensor r = refine_offsets(m, s, {2}, steps);
    REQUIRE(px(r, 0, 2, 3) == 1.0f + 0.5f * steps);
    REQUIRE(px(r, 1, 2, 3) == -0.25f * steps);
    REQUIRE(px(r, 0, 0, 0) == 0.5f * steps);
  }
  // Linear field: S_dx(y, x) = x at keypoint 0; from (1, 1) with m = (0, 0.5): sample at x = 1.5 -> 1.5,
  // then at x = 1 + 2.0 = 3 -> m = 2.0 + 3 = 5.0.
  Tensor s2 = Tensor::zeros({1, 10, h, w});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) px(s2, 1, y, x) = float(x);
  Tensor m2 = Tensor::zeros({1, 2, h, w});
  px(m2, 1, 1, 1) = 0.5f;
  Tensor r2 = refine_offsets(m2, s2, {0}, 2);
  REQUIRE(px(r2, 1, 1, 1) == 5.0f);
  // Sampling positions are clamped to the image: from (1, 5) with m = 0: 5 -> 5 + 5 = 10 -> clamped x = 6.
  Tensor r3 = refine_offsets(Tensor::zeros({1, 2, h, w}), s2, {0}, 2);
  REQUIRE(px(r3, 1, 1, 5) == 11.0f);
}

TEST_CASE("vote_scores 8x9 R=1: one heatmap vote and one long vote, bilinear shares", "[instance]") {
  ClassMap cm(fusion_categories());
  HeadOutputs o = filled_outputs(4, 8, 9, 0.0f);
  o.heatmap.fill_(-20.0f);  // below min_vote_weight: no short votes ...
  // Sky everywhere except one car pixel.
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 9; ++x) px(o.semantic, 0, y, x) = 1.0f;
  px(o.semantic, 2, 4, 4) = 5.0f;
  // ... except at (1, 1) for keypoint 3: logit 16 (sigmoid table max), vote at (1 + 1.5, 1 + 2.25).
  px(o.heatmap, 3, 1, 1) = 16.0f;
  px(o.short_offsets, 6, 1, 1) = 1.5f;
  px(o.short_offsets, 7, 1, 1) = 2.25f;
  // The car pixel (4, 4) votes for keypoint 0 at (4 - 1.25, 4 + 0.5).
  px(o.long_offsets, 0, 4, 4) = -1.25f;
  px(o.long_offsets, 1, 4, 4) = 0.5f;
  InferenceConfig cfg = small_cfg(1.0);
  cfg.refine_steps = 0;
  auto labels = semantic_argmax(o.semantic);
  const double sig = 1.0 / (1.0 + std::exp(-16.0));
  const double norm = 1.0 / kPi;
  VoteMaps sv = vote_scores(o, labels, cm, cfg, 1.0, 0.0);
  REQUIRE(sv.score(3, 2, 3) == Approx(sig * 0.5 * 0.75 * norm).epsilon(1e-6));
  REQUIRE(sv.score(3, 2, 4) == Approx(sig * 0.5 * 0.25 * norm).epsilon(1e-6));
  REQUIRE(sv.score(3, 3, 3) == Approx(sig * 0.5 * 0.75 * norm).epsilon(1e-6));
  REQUIRE(sv.score(3, 3, 4) == Approx(sig * 0.5 * 0.25 * norm).epsilon(1e-6));
  REQUIRE(sv.score(0, 2, 4) == 0.0);
  VoteMaps lv = vote_scores(o, labels, cm, cfg, 0.0, 1.0);
  REQUIRE(lv.score(0, 2, 4) == Approx(0.25 * 0.5 * norm).epsilon(1e-6));
  REQUIRE(lv.score(0, 3, 4) == Approx(0.75 * 0.5 * norm).epsilon(1e-6));
  REQUIRE(lv.score(0, 3, 5) == Approx(0.75 * 0.5 * norm).epsilon(1e-6));
  REQUIRE(lv.score(3, 2, 3) == 0.0);
  // Fused 1:2 = short + 2 long, summed exactly in fixed point.
  VoteMaps fv = vote_scores(o, labels, cm, cfg, 1.0, 2.0);
  for (size_t i = 0; i < fv.acc.size(); ++i) REQUIRE(fv.acc[i] == sv.acc[i] + 2 * lv.acc[i]);
  // min_vote_weight 0 lets every pixel vote, even at logit -20 (clamped to -16 by the table).
  cfg.min_vote_weight = 0;
  VoteMaps all = vote_scores(o, labels, cm, cfg, 1.0, 0.0);
  int nonzero = 0;
  for (int64_t i = 0; i < 72; ++i) nonzero += all.acc[72 + i] > 0;
  REQUIRE(nonzero == 72);
}

TEST_CASE("find_candidates 6x6: 3x3 maxima above threshold, plateaus, best first", "[instance]") {
  VoteMaps v;
  v.height = 6;
  v.width = 6;
  v.scale = 0.01;
  v.acc.assign(5 * 36, 0);
  auto at = [&](int k, int y, int x) -> unsigned long long& { return v.acc[(k * 6 + y) * 6 + x]; };
  at(0, 1, 1) = 50;
  at(0, 1, 2) = 40;  // not a maximum
  at(0, 4, 4) = 80;
  at(2, 0, 5) = 80;  // same score as (0, 4, 4): keypoint order decides
  at(1, 3, 0) = 30;
  at(1, 3, 1) = 30;  // a plateau: both are maxima (>= all neighbours)
  at(4, 5, 5) = 1;   // below threshold 0.015
  auto c = find_candidates(v, 0.015);
  REQUIRE(c.size() == 5);
  REQUIRE((c[0].keypoint == 0 && c[0].y == 4 && c[0].x == 4));
  REQUIRE((c[1].keypoint == 2 && c[1].y == 0 && c[1].x == 5));
  REQUIRE((c[2].keypoint == 0 && c[2].y == 1 && c[2].x == 1 && c[2].score == Approx(0.5)));
  REQUIRE((c[3].keypoint == 1 && c[3].x == 0));
  REQUIRE((c[4].keypoint == 1 && c[4].x == 1));
}

TEST_CASE("group_instances 20x20: star graph from a centre and from a corner, r rejection", "[instance]") {
  const int64_t h = 20, w = 20;
  HeadOutputs o = filled_outputs(4, h, w, 0.0f);
  InferenceConfig cfg = small_cfg(2.0);
  cfg.refine_steps = 1;
  // Centre at (10, 10); corners at (5, 6), (5, 14), (15, 6), (15, 14): edges 0..3 from the centre.
  const float corner[4][2] = {{5, 6}, {5, 14}, {15, 6}, {15, 14}};
  for (int e = 0; e < 4; ++e) {
    px(o.mid_offsets, 2 * e, 10, 10) = corner[e][0] - 10 - 0.25f;  // off by 0.25, fixed by refinement
    px(o.mid_offsets, 2 * e + 1, 10, 10) = corner[e][1] - 10;
  }
  // Short offsets of keypoints 1..4 at the landing rows (corner y - 0.25 interpolates rows y-1, y).
  for (int e = 0; e < 4; ++e)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) px(o.short_offsets, 2 * (e + 1), y, x) = corner[e][0] - float(y);
  // Corner 2 -> centre along edge 5, read at (5, 14): lands at (10, 10).
  px(o.mid_offsets, 2 * 5, 5, 14) = 5.0f;
  px(o.mid_offsets, 2 * 5 + 1, 5, 14) = -4.0f;
  VoteMaps v;
  v.height = h;
  v.width = w;
  v.scale = 0.001;
  v.acc.assign(5 * h * w, 0);
  v.acc[(0 * h + 10) * w + 10] = 900;
  for (int e = 0; e < 4; ++e) v.acc[((e + 1) * h + int64_t(corner[e][0])) * w + int64_t(corner[e][1])] = 100 * (e + 1);

  SECTION("from the centre; the corner candidates of the same instance are rejected") {
    std::vector<KeypointCandidate> c = {{0, 10, 10, 900, 0.9}, {4, 15, 14, 400, 0.4}, {2, 5, 14, 200, 0.2}};
    auto inst = group_instances(c, v, o, cfg);
    REQUIRE(inst.size() == 1);
    REQUIRE(inst[0].seed_keypoint == 0);
    for (int e = 0; e < 4; ++e) {
      REQUIRE(inst[0].keypoints[e + 1][0] == corner[e][0]);
      REQUIRE(inst[0].keypoints[e + 1][1] == corner[e][1]);
    }
    REQUIRE(inst[0].score == Approx((900 + 100 + 200 + 300 + 400) * 0.001 / 5));
  }
  SECTION("from corner 2: to the centre along edge 5, then to the other corners") {
    std::vector<KeypointCandidate> c = {{2, 5, 14, 200, 0.2}};
    auto inst = group_instances(c, v, o, cfg);
    REQUIRE(inst.size() == 1);
    REQUIRE(inst[0].seed_keypoint == 2);
    REQUIRE(inst[0].keypoints[0] == std::array<float, 2>{10, 10});
    REQUIRE(inst[0].keypoints[2] == std::array<float, 2>{5, 14});
    REQUIRE(inst[0].keypoints[3] == std::array<float, 2>{15, 6});
  }
  SECTION("a second centre within r = 10 is rejected, one beyond it is kept") {
    cfg.nms_radius = 3;
    std::vector<KeypointCandidate> c = {{0, 10, 10, 900, 0.9}, {0, 12, 12, 800, 0.8}, {0, 14, 10, 700, 0.7}};
    cfg.box_nms_iou = 1.0;  // keep the (identical-box) instances to see the rejection alone
    auto inst = group_instances(c, v, o, cfg);
    REQUIRE(inst.size() == 2);
    REQUIRE(inst[1].seed_keypoint == 0);
    REQUIRE(inst[1].keypoints[0] == std::array<float, 2>{14, 10});
  }
}

TEST_CASE("box_nms IoU 0.5: suppresses IoU 0.6, keeps IoU 0.4, by score", "[instance]") {
  auto box = [](float y0, float x0, float y1, float x1, double score) {
    DetectedInstance d;
    d.keypoints = {{{(y0 + y1) / 2, (x0 + x1) / 2}, {y0, x0}, {y0, x1}, {y1, x0}, {y1, x1}}};
    d.score = score;
    return d;
  };
  // 10x10 boxes (pixel extents): shifted by 2.5 columns -> IoU 75/125 = 0.6; by 4.29 -> ~0.4.
  std::vector<DetectedInstance> in = {box(0, 0, 9, 9, 0.5), box(0, 2.5f, 9, 11.5f, 0.9), box(0, 30, 9, 39, 0.1),
                                      box(0, 6.75f, 9, 15.75f, 0.3)};
  auto out = box_nms(in, 0.5);
  REQUIRE(out.size() == 3);
  REQUIRE(out[0].score == 0.9);
  REQUIRE(out[1].score == 0.3);  // IoU with the first: 5.75*10 / (200 - 57.5) = 0.40
  REQUIRE(out[2].score == 0.1);
}

TEST_CASE("fuse_panoptic 3x4: stuff segments, majority class, void, min_area", "[instance]") {
  ClassMap cm(fusion_categories());
  // Train ids: 0 sky, 1 road (stuff), 2 car, 3 person.
  std::vector<int32_t> labels = {0, 0, 2, 2,  /**/ 1, 3, 2, 2,  /**/ 1, 1, 3, 3};
  std::vector<int32_t> assign = {-1, -1, 1, 1,  /**/ -1, 0, 1, 1,  /**/ -1, -1, 0, -1};
  InferenceConfig cfg;
  PanopticMap pm = fuse_panoptic(labels, assign, 2, cm, cfg, 3, 4);
  REQUIRE(pm.segments.size() == 4);
  REQUIRE((pm.segments[0].category_id == 1 && pm.segments[0].area == 2));
  REQUIRE((pm.segments[1].category_id == 2 && pm.segments[1].area == 3));
  REQUIRE((pm.segments[2].category_id == 11 && pm.segments[2].area == 2));  // instance 0: two person votes
  REQUIRE((pm.segments[3].category_id == 10 && pm.segments[3].area == 4));  // instance 1: four car votes
  REQUIRE(pm.segments[3].bbox == std::array<int64_t, 4>{2, 0, 2, 2});
  REQUIRE(pm.segments[1].bbox == std::array<int64_t, 4>{0, 1, 2, 2});
  REQUIRE(pm.ids == std::vector<int32_t>{1, 1, 4, 4, 2, 3, 4, 4, 2, 2, 3, 0});
  cfg.min_area = 3;
  PanopticMap pm2 = fuse_panoptic(labels, assign, 2, cm, cfg, 3, 4);
  REQUIRE(pm2.segments.size() == 2);
  REQUIRE(pm2.ids == std::vector<int32_t>{0, 0, 2, 2, 1, 0, 2, 2, 1, 1, 0, 0});
}

TEST_CASE("assign_pixels equals brute force: 37 instances, random offsets 61x83, ties", "[instance]") {
  ClassMap cm(fusion_categories());
  const int64_t h = 61, w = 83, hw = h * w;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> cls(0, 3);
  std::uniform_real_distribution<float> u(-40.0f, 40.0f);
  std::vector<int32_t> labels(hw);
  for (auto& l : labels) l = cls(rng);
  std::vector<float> refined(10 * hw);
  for (auto& v : refined) v = std::round(u(rng)) * 0.5f;  // half-pixel grid: many exact ties
  std::vector<DetectedInstance> inst(37);
  std::uniform_int_distribution<int> py(0, int(h) - 1), pxd(0, int(w) - 1);
  for (size_t j = 0; j < inst.size(); ++j)
    for (int k = 0; k < 5; ++k) inst[j].keypoints[k] = {float(py(rng)), float(pxd(rng))};
  inst[7] = inst[3];  // a duplicate instance: ties go to the lower index
  // Predictions at the float range's end: costs overflow to inf, ties again.
  for (int c = 0; c < 10; ++c) refined[c * hw + 5] = (c % 2 ? -3e38f : 3e38f);
  labels[5] = 2;
  auto fast = assign_pixels(labels, refined, inst, cm, h, w);
  auto slow = assign_pixels_bruteforce(labels, refined, inst, cm, h, w);
  int64_t bad = -1;
  for (int64_t i = 0; i < hw && bad < 0; ++i)
    if (fast[i] != slow[i]) bad = i;
  INFO("first difference at pixel " << bad);
  REQUIRE(bad < 0);
  for (int64_t i = 0; i < hw; ++i) REQUIRE(fast[i] != 7);
  REQUIRE(assign_pixels(labels, refined, {}, cm, h, w) == std::vector<int32_t>(hw, -1));
}

// ---- decoding perfect outputs ----

TEST_CASE("perfect outputs decode to the ground truth: touching, overlapping boxes, nested 120x160 R=10",
          "[instance]") {
  FusionScene s = hand_scene();
  REQUIRE(s.map.segments.size() == 7);
  // Cars 10 and 11 touch; the person's box overlaps car 11's box; the small person lies inside the L's box.
  auto box_of = [&](int32_t id) { return s.map.find(id)->bbox; };
  auto overlap = [](std::array<int64_t, 4> a, std::array<int64_t, 4> b) {
    return std::min(a[0] + a[2], b[0] + b[2]) > std::max(a[0], b[0]) &&
           std::min(a[1] + a[3], b[1] + b[3]) > std::max(a[1], b[1]);
  };
  REQUIRE(overlap(box_of(11), box_of(12)));
  REQUIRE(overlap(box_of(13), box_of(14)));
  PanopticMap pred = decode_gt(s, 10, small_cfg(10));
  require_same_panoptic(s.map, pred);
  REQUIRE(metrics_pq(s.map, pred) == 1.0);
}

TEST_CASE("perfect outputs decode to the ground truth: default config R=25 on 120x160", "[instance]") {
  FusionScene s = hand_scene();
  require_same_panoptic(s.map, decode_gt(s, 25, InferenceConfig()));
}

TEST_CASE("perfect outputs of random scenes 150x190 with 14 instances decode exactly (seeds 1..4)", "[instance]") {
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    INFO("seed " << seed);
    FusionScene s = random_fusion_scene(150, 190, 14, seed);
    PanopticMap pred = decode_gt(s, 10, small_cfg(10));
    require_same_panoptic(s.map, pred);
    REQUIRE(metrics_pq(s.map, pred) == 1.0);
  }
}

TEST_CASE("offsets perturbed by up to 2 px keep PQ >= 0.9 (150x190, 14 instances)", "[instance]") {
  ClassMap cm(fusion_categories());
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    FusionScene s = random_fusion_scene(150, 190, 14, seed);
    TargetConfig tc;
    tc.radius = 10;
    HeadOutputs o = perfect_outputs(build_targets(s.map, cm, tc), cm);
    for (Tensor* t : {&o.short_offsets, &o.mid_offsets, &o.long_offsets}) {
      float* p = t->data<float>();
      for (int64_t i = 0; i < t->numel(); ++i) p[i] += u(rng);
    }
    const double pq = metrics_pq(s.map, predict_panoptic(o, cm, small_cfg(10)));
    INFO("seed " << seed << " PQ " << pq);
    REQUIRE(pq >= 0.9);
  }
}

TEST_CASE("the result does not depend on the thread count (1 vs 2 threads, noisy outputs)", "[instance]") {
  ClassMap cm(fusion_categories());
  FusionScene s = random_fusion_scene(130, 170, 12, 9);
  TargetConfig tc;
  tc.radius = 10;
  HeadOutputs o = perfect_outputs(build_targets(s.map, cm, tc), cm);
  Rng rng(3);
  o.heatmap = add(o.heatmap, Tensor::randn(o.heatmap.shape(), rng, 3.0));
  o.short_offsets = add(o.short_offsets, Tensor::randn(o.short_offsets.shape(), rng, 2.0));
  o.long_offsets = add(o.long_offsets, Tensor::randn(o.long_offsets.shape(), rng, 2.0));
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  PanopticMap a = predict_panoptic(o, cm, small_cfg(10));
  omp_set_num_threads(2);
  PanopticMap b = predict_panoptic(o, cm, small_cfg(10));
  omp_set_num_threads(before);
  REQUIRE(a.ids == b.ids);
  REQUIRE(a.segments.size() == b.segments.size());
}

// ---- bad input ----

TEST_CASE("bad head outputs: NaN/Inf, channel counts, K, batch, dtype, config", "[instance]") {
  ClassMap cm(fusion_categories());
  InferenceConfig cfg;
  {
    HeadOutputs o = filled_outputs(4, 5, 6);
    px(o.heatmap, 2, 3, 4) = std::nanf("");
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg),
                        Catch::Contains("'heatmap'") && Catch::Contains("non-finite") && Catch::Contains("[0, 2, 3, 4]"));
    o = filled_outputs(4, 5, 6);
    px(o.mid_offsets, 15, 4, 5) = INFINITY;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'mid_offsets'") && Catch::Contains("inf"));
    o = filled_outputs(4, 5, 6);
    px(o.semantic, 3, 0, 5) = -INFINITY;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'semantic'") && Catch::Contains("[0, 3, 0, 5]"));
    o = filled_outputs(4, 5, 6);
    px(o.heatmap, 4, 4, 0) = std::nanf("");
    InferenceConfig long_only;
    long_only.short_weight = 0;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, long_only), Catch::Contains("'heatmap'") && Catch::Contains("[0, 4, 4, 0]"));
    o = filled_outputs(4, 5, 19);  // wide enough for the vectorised heatmap scan
    px(o.heatmap, 1, 2, 3) = -INFINITY;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'heatmap'") && Catch::Contains("[0, 1, 2, 3]"));
    o = filled_outputs(4, 5, 6);
    px(o.long_offsets, 9, 2, 2) = std::nanf("");
    REQUIRE_THROWS_WITH(check_head_outputs(o, cm, cfg), Catch::Contains("'long_offsets'"));
  }
  {
    HeadOutputs o = filled_outputs(4, 5, 6);
    o.short_offsets = Tensor::zeros({1, 8, 5, 6});
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'short_offsets' must be [1, 10, 5, 6]"));
    o = filled_outputs(3, 5, 6);
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'semantic' must be [1, 4, 5, 6]"));
    o = filled_outputs(4, 5, 6);
    o.heatmap = Tensor::zeros({1, 5, 5, 7});
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'heatmap' must be [1, 5, 5, 6]"));
    o = filled_outputs(4, 5, 6);
    o.semantic = Tensor::zeros({2, 4, 5, 6});
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("one image"));
    o = filled_outputs(4, 5, 6);
    o.long_offsets = Tensor::zeros({1, 10, 5, 6}, DType::F64);
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'long_offsets' must be F32"));
    o = filled_outputs(4, 5, 6);
    o.mid_offsets = Tensor();
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, cfg), Catch::Contains("'mid_offsets' is undefined"));
  }
  {
    HeadOutputs o = filled_outputs(4, 5, 6);
    InferenceConfig bad;
    bad.radius = 0;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, bad), Catch::Contains("radius"));
    bad = InferenceConfig();
    bad.box_nms_iou = 1.5;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, bad), Catch::Contains("box_nms_iou"));
    bad = InferenceConfig();
    bad.short_weight = bad.long_weight = 0;
    REQUIRE_THROWS_WITH(predict_panoptic(o, cm, bad), Catch::Contains("score weights"));
    REQUIRE_THROWS_WITH(predict_panoptic(o, ClassMap(), cfg), Catch::Contains("class map is empty"));
  }
  {
    // All-zero outputs are valid: everything is sky (first class), one stuff segment.
    HeadOutputs o = filled_outputs(4, 5, 6);
    PanopticMap pm = predict_panoptic(o, cm, cfg);
    REQUIRE(pm.segments.size() == 1);
    REQUIRE(pm.segments[0].category_id == 1);
    REQUIRE(pm.segments[0].area == 30);
  }
}

// ---- the output writer ----

TEST_CASE("prediction writer: PNG + JSON round trip, overlay 4x5 blend, white instance boundaries", "[instance]") {
  ClassMap cm(fusion_categories());
  PanopticMap pm;
  pm.height = 4;
  pm.width = 5;
  // sky (1) on top, two touching cars (3, 4) and void below.
  pm.ids = {1, 1, 1, 1, 1,  /**/ 3, 3, 4, 4, 0,  /**/ 3, 3, 4, 4, 0,  /**/ 3, 3, 4, 4, 0};
  pm.segments = {{1, 1, false, 5, {0, 0, 5, 1}}, {3, 10, false, 6, {0, 1, 2, 3}}, {4, 10, false, 6, {2, 1, 2, 3}}};
  const std::string dir = "/tmp/dl_test_instance_writer";
  REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
  PanopticAnnotation a = write_panoptic_prediction(dir + "/img7.png", pm, 7);
  REQUIRE(a.file_name == "img7.png");
  REQUIRE(a.image_id == 7);
  int64_t h = 0, w = 0;
  REQUIRE(read_panoptic_png(dir + "/img7.png", h, w) == pm.ids);
  write_predictions_json(dir + "/pred.json", {a}, fusion_categories());
  PanopticJson j = read_panoptic_json(dir + "/pred.json");
  REQUIRE(j.annotations.size() == 1);
  REQUIRE(j.annotations[0].segments.size() == 3);
  REQUIRE(j.annotations[0].segments[1].bbox == std::array<int64_t, 4>{0, 1, 2, 3});
  REQUIRE(j.categories.size() == 4);

  std::vector<uint8_t> rgb(4 * 5 * 3, 100);
  auto ov = panoptic_overlay(rgb, pm, fusion_categories());
  auto pix = [&](int y, int x) { return std::array<int, 3>{ov[(y * 5 + x) * 3], ov[(y * 5 + x) * 3 + 1], ov[(y * 5 + x) * 3 + 2]}; };
  REQUIRE(pix(0, 0) == std::array<int, 3>{85, 115, 140});  // (100 + sky (70, 130, 180) + 1) / 2
  REQUIRE(pix(1, 4) == std::array<int, 3>{100, 100, 100});  // void: untouched
  REQUIRE(pix(2, 1) == std::array<int, 3>{255, 255, 255});  // car 3 next to car 4: boundary
  REQUIRE(pix(1, 0) == std::array<int, 3>{255, 255, 255});  // car 3 below sky: boundary
  // Interior pixels don't exist in 2-wide cars; check the jittered colour on a bigger instance.
  PanopticMap big = pm;
  big.height = 5;
  big.width = 5;
  big.ids.assign(25, 3);
  big.segments = {{3, 10, false, 25, {0, 0, 5, 5}}};
  auto ov2 = panoptic_overlay(std::vector<uint8_t>(75, 0), big, fusion_categories());
  for (int c = 0; c < 3; ++c) {
    const int col = 2 * ov2[(2 * 5 + 2) * 3 + c];  // (0 + colour + 1) / 2, so colour in [2v - 1, 2v]
    REQUIRE(std::abs(col - int(fusion_categories()[2].color[c])) <= 41);
  }
  REQUIRE(panoptic_overlay(std::vector<uint8_t>(75, 0), big, fusion_categories()) == ov2);
  write_panoptic_overlay(dir + "/overlay.png", rgb, pm, fusion_categories());
  int64_t oh = 0, ow = 0;
  REQUIRE(read_rgb(dir + "/overlay.png", oh, ow) == ov);
  REQUIRE_THROWS_WITH(panoptic_overlay(rgb, pm, {fusion_categories()[0]}), Catch::Contains("unknown category id 10"));
  REQUIRE_THROWS_WITH(panoptic_overlay(std::vector<uint8_t>(7), pm, fusion_categories()),
                      Catch::Contains("image has 7 bytes"));
  PanopticMap bad = pm;
  bad.ids[0] = 9;
  REQUIRE_THROWS_WITH(write_panoptic_prediction(dir + "/bad.png", bad, 1), Catch::Contains("id 9"));
}

TEST_CASE("refined long offsets of vote_scores (vectorised) == refine_offsets (scalar), 37x53 random, steps 0..3",
          "[instance]") {
  ClassMap cm(fusion_categories());
  const int64_t h = 37, w = 53;
  Rng rng(17);
  HeadOutputs o;
  o.semantic = Tensor::randn({1, 4, h, w}, rng, 2.0);  // about half the pixels are things
  o.heatmap = Tensor::randn({1, 5, h, w}, rng, 3.0);
  o.long_offsets = Tensor::randn({1, 10, h, w}, rng, 30.0);
  o.short_offsets = Tensor::randn({1, 10, h, w}, rng, 8.0);
  o.mid_offsets = Tensor::randn({1, 16, h, w}, rng, 8.0);
  const auto labels = semantic_argmax(o.semantic);
  for (int steps = 0; steps <= 3; ++steps) {
    InferenceConfig cfg;
    cfg.refine_steps = steps;
    std::vector<float> refined;
    vote_scores(o, labels, cm, cfg, 1.0, 1.0, &refined);
    Tensor want = refine_offsets(o.long_offsets, o.short_offsets, {0, 1, 2, 3, 4}, steps);
    int64_t things = 0, bad = -1;
    for (int64_t i = 0; i < h * w; ++i) {
      if (!cm.isthing(labels[i])) continue;
      ++things;
      for (int c = 0; c < 10; ++c)
        if (refined[c * h * w + i] != want.data<float>()[c * h * w + i]) bad = c * h * w + i;
    }
    INFO("steps " << steps << ": " << things << " thing pixels, a difference at " << bad);
    REQUIRE(things > 500);
    REQUIRE(bad < 0);
  }
}
