// Training targets on hand-built scenes with known answers, a brute-force per-pixel reference on a
// random scene, stacking, and bad-input errors.
#include <cmath>

#include "tests/target_scenes.h"
#include "parser/targets.h"
#include "tests/testing.h"

using namespace dl;

namespace {

// Categories: 1 "road" (stuff), 7 "car" (thing), 3 "person" (thing). Train ids by ascending id:
// 1 -> 0, 3 -> 1, 7 -> 2.
std::vector<Category> categories() { return dl::testing::scene_categories(); }

struct Scene {
  PanopticMap map;
  Scene(int64_t h, int64_t w, int32_t fill_id = 0) {
    map.height = h;
    map.width = w;
    map.ids.assign(h * w, fill_id);
  }
  void rect(int32_t id, int64_t y0, int64_t x0, int64_t y1, int64_t x1) {  // inclusive
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) map.ids[y * map.width + x] = id;
  }
  void seg(int32_t id, int32_t cat, bool crowd = false) {
    SegmentInfo s;
    s.id = id;
    s.category_id = cat;
    s.iscrowd = crowd;
    map.segments.push_back(s);
  }
};

float at(const Tensor& t, int64_t c, int64_t y, int64_t x) {
  const int64_t h = t.size(-2), w = t.size(-1);
  return t.data<float>()[(c * h + y) * w + x];
}
int32_t label(const Tensor& t, int64_t y, int64_t x) {
  return t.data<int32_t>()[y * t.size(-1) + x];
}

double sum_channel(const Tensor& t, int64_t c) {
  const int64_t hw = t.size(-2) * t.size(-1);
  double s = 0;
  for (int64_t i = 0; i < hw; ++i) s += t.data<float>()[c * hw + i];
  return s;
}

}  // namespace

TEST_CASE("ClassMap sorts categories by id and rejects unknown ids", "[targets]") {
  ClassMap cm(categories());
  REQUIRE(cm.num_classes() == 3);
  REQUIRE(cm.to_train_id(1) == 0);
  REQUIRE(cm.to_train_id(3) == 1);
  REQUIRE(cm.to_train_id(7) == 2);
  REQUIRE(cm.classes[2].name == "car");
  REQUIRE(cm.isthing(2));
  REQUIRE(!cm.isthing(0));
  REQUIRE_THROWS_WITH(cm.to_train_id(5), Catch::Contains("unknown category id 5"));
  auto dup = categories();
  dup.push_back({7, "again", true, {}});
  REQUIRE_THROWS_WITH(ClassMap(dup), Catch::Contains("category id 7 appears twice"));
}

TEST_CASE("targets of one rectangle 20x30 R=3: keypoints, disks, offsets", "[targets]") {
  Scene s(20, 30, 1);
  s.seg(1, 1);              // road everywhere else
  s.rect(2, 5, 10, 9, 17);  // car rows 5..9, cols 10..17: 5 x 8 = 40 px
  s.seg(2, 7);
  TargetConfig cfg;
  cfg.radius = 3;
  Targets t = build_targets(s.map, ClassMap(categories()), cfg, "rect.png");

  REQUIRE(t.semantic.shape() == Shape{1, 20, 30});
  REQUIRE(t.heatmap.shape() == Shape{1, 5, 20, 30});
  REQUIRE(t.short_offsets.shape() == Shape{1, 10, 20, 30});
  REQUIRE(t.mid_offsets.shape() == Shape{1, 16, 20, 30});
  REQUIRE(t.mid_mask.shape() == Shape{1, 8, 20, 30});
  REQUIRE(t.long_weight.shape() == Shape{1, 1, 20, 30});
  REQUIRE(t.instances.size() == 1);
  REQUIRE(t.instances[0].size() == 1);
  REQUIRE(t.short_mask.same(t.heatmap));
  const GtInstance& g = t.instances[0][0];
  REQUIRE(g.segment_id == 2);
  REQUIRE(g.train_id == 2);
  REQUIRE(g.area == 40);
  const float want[5][2] = {{7.0f, 13.5f}, {5, 10}, {5, 17}, {9, 10}, {9, 17}};
  for (int k = 0; k < 5; ++k) {
    REQUIRE(g.keypoints[k][0] == want[k][0]);
    REQUIRE(g.keypoints[k][1] == want[k][1]);
  }

  // Semantic: road 0, car 2; small instance weight 3 (area 40 < 4096), stuff weight 1.
  REQUIRE(label(t.semantic, 0, 0) == 0);
  REQUIRE(label(t.semantic, 7, 12) == 2);
  REQUIRE(at(t.semantic_weight, 0, 7, 12) == 3.0f);
  REQUIRE(at(t.semantic_weight, 0, 0, 0) == 1.0f);
  REQUIRE(sum_channel(t.heatmap_weight, 0) == 600.0);

  // Disk of the top-left corner (5, 10), R = 3, fully inside: 29 lattice points with d^2 <= 9.
  REQUIRE(sum_channel(t.heatmap, 1) == 29.0);
  REQUIRE(sum_channel(t.short_mask, 1) == 29.0);
  REQUIRE(at(t.heatmap, 1, 8, 10) == 1.0f);  // d^2 = 9, on the rim
  REQUIRE(at(t.heatmap, 1, 7, 12) == 1.0f);  // d^2 = 8
  REQUIRE(at(t.heatmap, 1, 8, 11) == 0.0f);  // d^2 = 10
  // Centre (7, 13.5): lattice points with (y-7)^2 + (x-13.5)^2 <= 9: 26.
  REQUIRE(sum_channel(t.heatmap, 0) == 26.0);

  // Short offsets at (6, 12) for the top-left corner: (5 - 6, 10 - 12).
  REQUIRE(at(t.short_offsets, 2, 6, 12) == -1.0f);
  REQUIRE(at(t.short_offsets, 3, 6, 12) == -2.0f);
  REQUIRE(at(t.short_offsets, 2, 0, 0) == 0.0f);  // outside every disk
  // Mid offsets at (6, 12): edge 4 = top-left -> centre: (7 - 6, 13.5 - 12); active.
  REQUIRE(at(t.mid_mask, 4, 6, 12) == 1.0f);
  REQUIRE(at(t.mid_offsets, 8, 6, 12) == 1.0f);
  REQUIRE(at(t.mid_offsets, 9, 6, 12) == 1.5f);
  // Edge 3 = centre -> bottom-right at (7, 14), in the centre's disk: (9 - 7, 17 - 14).
  REQUIRE(at(t.mid_mask, 3, 7, 14) == 1.0f);
  REQUIRE(at(t.mid_offsets, 6, 7, 14) == 2.0f);
  REQUIRE(at(t.mid_offsets, 7, 7, 14) == 3.0f);
  // Edge masks equal the from-keypoint's short mask.
  for (int e = 0; e < kNumEdges; ++e)
    REQUIRE(sum_channel(t.mid_mask, e) == sum_channel(t.short_mask, kEdgeFrom[e]));

  // Long offsets: at (9, 17) to the centre (7 - 9, 13.5 - 17); weight 1 / sqrt(40) on the car only.
  REQUIRE(at(t.long_offsets, 0, 9, 17) == -2.0f);
  REQUIRE(at(t.long_offsets, 1, 9, 17) == -3.5f);
  REQUIRE(at(t.long_offsets, 8, 5, 10) == 4.0f);  // to bottom-right (9, 17) from (5, 10)
  REQUIRE(at(t.long_offsets, 9, 5, 10) == 7.0f);
  REQUIRE(at(t.long_weight, 0, 7, 12) == Approx(1.0 / std::sqrt(40.0)));
  REQUIRE(at(t.long_weight, 0, 0, 0) == 0.0f);
  REQUIRE(at(t.long_offsets, 0, 0, 0) == 0.0f);
  REQUIRE(sum_channel(t.long_weight, 0) == Approx(40.0 / std::sqrt(40.0)));
}

TEST_CASE("targets: overlapping disks go to the nearest instance, ties to the first", "[targets]") {
  Scene s(11, 15, 0);
  s.rect(5, 5, 5, 5, 5);  // one-pixel person at (5, 5)
  s.rect(6, 5, 9, 5, 9);  // one-pixel person at (5, 9)
  s.seg(5, 3);
  s.seg(6, 3);
  TargetConfig cfg;
  cfg.radius = 4;
  Targets t = build_targets(s.map, ClassMap(categories()), cfg);
  REQUIRE(t.instances[0].size() == 2);
  for (int k = 0; k < 5; ++k) {
    INFO("keypoint " << k);
    REQUIRE(at(t.short_offsets, 2 * k + 1, 5, 6) == -1.0f);  // nearer to (5, 5)
    REQUIRE(at(t.short_offsets, 2 * k + 1, 5, 8) == 1.0f);   // nearer to (5, 9)
    REQUIRE(at(t.short_offsets, 2 * k + 1, 5, 7) == -2.0f);  // tie: the first instance
    REQUIRE(at(t.short_offsets, 2 * k, 2, 8) == 3.0f);
    REQUIRE(at(t.short_offsets, 2 * k + 1, 2, 8) == 1.0f);
  }
  // Mid offsets follow the same instance: edge 0 (centre -> top-left) at (5, 8) points to (5, 9).
  REQUIRE(at(t.mid_offsets, 1, 5, 8) == 1.0f);
  // Void pixels: ignored by the semantic and heatmap losses, offsets still defined inside disks.
  REQUIRE(label(t.semantic, 5, 7) == -1);
  REQUIRE(at(t.semantic_weight, 0, 5, 7) == 0.0f);
  REQUIRE(at(t.heatmap_weight, 0, 5, 7) == 0.0f);
  REQUIRE(at(t.heatmap_weight, 0, 5, 5) == 1.0f);
  REQUIRE(at(t.heatmap, 0, 5, 7) == 1.0f);
  REQUIRE(at(t.short_mask, 0, 5, 7) == 1.0f);
  REQUIRE(at(t.long_weight, 0, 5, 7) == 0.0f);
  REQUIRE(at(t.long_weight, 0, 5, 9) == 1.0f);
}

TEST_CASE("targets: a crowd region is excluded from every instance target", "[targets]") {
  Scene s(12, 12, 1);
  s.seg(1, 1);
  s.rect(2, 2, 2, 4, 4);  // car 3x3, centre (3, 3)
  s.seg(2, 7);
  s.rect(3, 2, 6, 6, 9);  // crowd of cars next to it
  s.seg(3, 7, true);
  TargetConfig cfg;
  cfg.radius = 4;
  Targets t = build_targets(s.map, ClassMap(categories()), cfg);
  REQUIRE(t.instances[0].size() == 1);              // the crowd is no instance
  REQUIRE(label(t.semantic, 3, 7) == 2);            // keeps its label
  REQUIRE(at(t.semantic_weight, 0, 3, 7) == 1.0f);  // not a small instance
  REQUIRE(at(t.semantic_weight, 0, 3, 3) == 3.0f);
  REQUIRE(at(t.heatmap_weight, 0, 3, 7) == 0.0f);
  REQUIRE(at(t.heatmap_weight, 0, 3, 5) == 1.0f);
  // (3, 6) is crowd and inside the centre's disk (d = 3): no target; (3, 5) is road: target.
  for (int k = 0; k < 5; ++k) REQUIRE(at(t.heatmap, k, 3, 6) == 0.0f);
  REQUIRE(at(t.short_mask, 0, 3, 6) == 0.0f);
  REQUIRE(at(t.short_offsets, 1, 3, 6) == 0.0f);
  REQUIRE(at(t.mid_mask, 0, 3, 6) == 0.0f);
  REQUIRE(at(t.short_mask, 0, 3, 5) == 1.0f);
  REQUIRE(at(t.short_offsets, 1, 3, 5) == -2.0f);
  REQUIRE(at(t.long_weight, 0, 3, 7) == 0.0f);
}

TEST_CASE("targets: small_area and small_weight decide the semantic weight", "[targets]") {
  Scene s(8, 8, 0);
  s.rect(4, 0, 0, 3, 3);  // 16 px person
  s.seg(4, 3);
  s.rect(5, 5, 5, 6, 6);  // 4 px car
  s.seg(5, 7);
  TargetConfig cfg;
  cfg.radius = 2;
  cfg.small_area = 16;  // strictly below 16 is small
  cfg.small_weight = 2.5;
  Targets t = build_targets(s.map, ClassMap(categories()), cfg);
  REQUIRE(at(t.semantic_weight, 0, 1, 1) == 1.0f);
  REQUIRE(at(t.semantic_weight, 0, 5, 5) == 2.5f);
  REQUIRE(at(t.semantic_weight, 0, 7, 0) == 0.0f);  // void
}

namespace {
// Per-pixel reference: scans every instance for every pixel (the definition, O(HW J)).
void brute_force_check(const PanopticMap& m, const Targets& t, double radius) {
  const int64_t h = m.height, w = m.width, hw = h * w;
  const auto& inst = t.instances[0];
  std::map<int32_t, int> seg_of;
  std::map<int32_t, bool> crowd;
  for (size_t j = 0; j < inst.size(); ++j) seg_of[inst[j].segment_id] = int(j);
  for (const auto& s : m.segments) crowd[s.id] = s.iscrowd;
  int64_t mismatches = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      const int32_t id = m.ids[p];
      const bool is_crowd = id != 0 && crowd[id];
      const int jh = seg_of.count(id) ? seg_of[id] : -1;
      for (int k = 0; k < 5; ++k) {
        int best = -1;
        double bd = 0;
        for (size_t j = 0; j < inst.size() && !is_crowd; ++j) {
          const double dy = inst[j].keypoints[k][0] - double(y), dx = inst[j].keypoints[k][1] - double(x);
          const double d2 = dy * dy + dx * dx;
          if (d2 <= radius * radius && (best < 0 || d2 < bd)) best = int(j), bd = d2;
        }
        const float m_ = best >= 0 ? 1.0f : 0.0f;
        const float oy = best >= 0 ? inst[best].keypoints[k][0] - float(y) : 0.0f;
        const float ox = best >= 0 ? inst[best].keypoints[k][1] - float(x) : 0.0f;
        mismatches += t.heatmap.data<float>()[k * hw + p] != m_;
        mismatches += t.short_mask.data<float>()[k * hw + p] != m_;
        mismatches += t.short_offsets.data<float>()[2 * k * hw + p] != oy;
        mismatches += t.short_offsets.data<float>()[(2 * k + 1) * hw + p] != ox;
        for (int e = 0; e < kNumEdges; ++e) {
          if (kEdgeFrom[e] != k) continue;
          const int l = kEdgeTo[e];
          mismatches += t.mid_mask.data<float>()[e * hw + p] != m_;
          mismatches += t.mid_offsets.data<float>()[2 * e * hw + p] !=
                        (best >= 0 ? inst[best].keypoints[l][0] - float(y) : 0.0f);
          mismatches += t.mid_offsets.data<float>()[(2 * e + 1) * hw + p] !=
                        (best >= 0 ? inst[best].keypoints[l][1] - float(x) : 0.0f);
        }
        mismatches += t.long_offsets.data<float>()[2 * k * hw + p] !=
                      (jh >= 0 ? inst[jh].keypoints[k][0] - float(y) : 0.0f);
        mismatches += t.long_offsets.data<float>()[(2 * k + 1) * hw + p] !=
                      (jh >= 0 ? inst[jh].keypoints[k][1] - float(x) : 0.0f);
      }
      const float lw = jh >= 0 ? float(1.0 / std::sqrt(double(inst[jh].area))) : 0.0f;
      mismatches += t.long_weight.data<float>()[p] != lw;
      if (mismatches) {
        INFO("first mismatch at pixel (" << y << ", " << x << ")");
        REQUIRE(mismatches == 0);
      }
    }
}
}  // namespace

using dl::testing::random_scene;

TEST_CASE("targets match a per-pixel brute force on random scenes 37x53 and 64x48", "[targets]") {
  for (auto [h, w, n, r] : {std::tuple<int64_t, int64_t, int, double>{37, 53, 9, 5.0}, {64, 48, 12, 7.5}}) {
    DYNAMIC_SECTION("scene " << h << "x" << w << " instances " << n << " R=" << r) {
      PanopticMap m = random_scene(h, w, n, 11 + uint64_t(h));
      TargetConfig cfg;
      cfg.radius = r;
      Targets t = build_targets(m, ClassMap(categories()), cfg);
      REQUIRE(!t.instances[0].empty());
      brute_force_check(m, t, r);
    }
  }
}

TEST_CASE("stack_targets concatenates along N and to(CPU) keeps values", "[targets]") {
  ClassMap cm(categories());
  TargetConfig cfg;
  cfg.radius = 3;
  Targets a = build_targets(random_scene(9, 11, 3, 1), cm, cfg);
  Targets b = build_targets(random_scene(9, 11, 2, 2), cm, cfg);
  Targets s = stack_targets({a, b});
  REQUIRE(s.semantic.shape() == Shape{2, 9, 11});
  REQUIRE(s.mid_offsets.shape() == Shape{2, 16, 9, 11});
  REQUIRE(s.instances.size() == 2);
  REQUIRE(s.semantic.select0(1).to_vector<int32_t>() == b.semantic.select0(0).to_vector<int32_t>());
  REQUIRE(s.long_offsets.select0(0).to_vector<float>() == a.long_offsets.select0(0).to_vector<float>());
  REQUIRE(s.short_mask.same(s.heatmap));  // equal by definition, stored once
  Targets c = s.to(Device::CPU);
  REQUIRE(c.heatmap.to_vector<float>() == s.heatmap.to_vector<float>());
  Targets other = build_targets(random_scene(10, 11, 2, 2), cm, cfg);
  REQUIRE_THROWS_WITH(stack_targets({a, other}), Catch::Contains("same size"));
  REQUIRE_THROWS(stack_targets({}));
}

TEST_CASE("targets: bad input names the source and the offending id", "[targets][errors]") {
  ClassMap cm(categories());
  Scene s(4, 4, 1);
  s.seg(1, 1);
  s.rect(9, 0, 0, 1, 1);
  REQUIRE_THROWS_WITH(build_targets(s.map, cm, {}, "a.png"),
                      Catch::Contains("a.png") && Catch::Contains("segment id 9") &&
                          Catch::Contains("missing from segments_info"));
  s.seg(9, 42);
  REQUIRE_THROWS_WITH(build_targets(s.map, cm, {}, "b.png"),
                      Catch::Contains("b.png") && Catch::Contains("unknown category id 42"));
  Scene d(4, 4, 1);
  d.seg(1, 1);
  d.seg(1, 3);
  REQUIRE_THROWS_WITH(build_targets(d.map, cm, {}, "c.png"), Catch::Contains("listed twice"));
  Scene e(4, 4, 1);
  e.seg(1, 1);
  e.map.ids.pop_back();
  REQUIRE_THROWS_WITH(build_targets(e.map, cm, {}, "d.png"), Catch::Contains("15 ids for a 4x4 map"));
  Scene f(4, 4, 1);
  f.seg(1, 1);
  TargetConfig bad;
  bad.radius = 0;
  REQUIRE_THROWS_WITH(build_targets(f.map, cm, bad), Catch::Contains("radius"));
}
