// Generated panoptic scenes and the "perfect" head outputs a network would predict for them,
// shared by the decoding tests and bench/bench_fusion.cpp.
//
// Perfect outputs: semantic logits +10 on the ground-truth class, 0 elsewhere (void pixels take
// the first stuff class: the scenes here have none); heatmap logits +10 inside keypoint disks and
// -10 outside; offsets equal to the targets inside their masks. Outside its mask an offset has no
// training signal; a perfect network's value there never matters to the decoder, because short
// offsets outside the disks vote with weight sigmoid(-10) < min_vote_weight and are otherwise only
// sampled at keypoints (inside disks), middle offsets are only read at keypoints, and long offsets
// only at thing pixels. We write 0 there.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "parser/heads.h"
#include "parser/targets.h"

namespace dl::testing {

// 1 "sky", 2 "road" (stuff); 10 "car", 11 "person" (things). Train ids 0, 1, 2, 3.
inline std::vector<Category> fusion_categories() {
  return {{1, "sky", false, {70, 130, 180}},
          {2, "road", false, {128, 64, 128}},
          {10, "car", true, {0, 0, 142}},
          {11, "person", true, {220, 20, 60}}};
}

struct FusionScene {
  PanopticMap map;
  FusionScene(int64_t h, int64_t w) {
    map.height = h;
    map.width = w;
    map.ids.assign(h * w, 1);
    // Stuff: sky over the top 40 %, road below.
    for (int64_t y = h * 2 / 5; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) map.ids[y * w + x] = 2;
    seg(1, 1);
    seg(2, 2);
  }
  void seg(int32_t id, int32_t cat) {
    SegmentInfo s;
    s.id = id;
    s.category_id = cat;
    map.segments.push_back(s);
  }
  void rect(int32_t id, int64_t y0, int64_t x0, int64_t y1, int64_t x1) {  // inclusive
    for (int64_t y = std::max<int64_t>(0, y0); y <= std::min(map.height - 1, y1); ++y)
      for (int64_t x = std::max<int64_t>(0, x0); x <= std::min(map.width - 1, x1); ++x) map.ids[y * map.width + x] = id;
  }
  void ellipse(int32_t id, double cy, double cx, double ry, double rx) {
    for (int64_t y = std::max<int64_t>(0, int64_t(cy - ry)); y <= std::min(map.height - 1, int64_t(cy + ry) + 1); ++y)
      for (int64_t x = std::max<int64_t>(0, int64_t(cx - rx)); x <= std::min(map.width - 1, int64_t(cx + rx) + 1);
           ++x) {
        const double dy = (y - cy) / ry, dx = (x - cx) / rx;
        if (dy * dy + dx * dx <= 1.0) map.ids[y * map.width + x] = id;
      }
  }
  // Recomputes areas and boxes from the pixels and drops segments that lost all of them.
  void finish() {
    std::vector<SegmentInfo> kept;
    for (auto s : map.segments) {
      int64_t area = 0, y0 = map.height, x0 = map.width, y1 = -1, x1 = -1;
      for (int64_t y = 0; y < map.height; ++y)
        for (int64_t x = 0; x < map.width; ++x)
          if (map.ids[y * map.width + x] == s.id) {
            ++area;
            y0 = std::min(y0, y);
            y1 = std::max(y1, y);
            x0 = std::min(x0, x);
            x1 = std::max(x1, x);
          }
      if (area == 0) continue;
      s.area = area;
      s.bbox = {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
      kept.push_back(s);
    }
    map.segments = kept;
  }
};

// About `n` instances (cars and persons, rectangles and ellipses) on a jittered grid; neighbours
// may touch but do not overlap, so every instance keeps its shape.
inline FusionScene random_fusion_scene(int64_t h, int64_t w, int n, uint32_t seed) {
  FusionScene s(h, w);
  std::mt19937 rng(seed);
  const int rows = std::max(1, int(std::round(std::sqrt(n * double(h) / w))));
  const int cols = (n + rows - 1) / rows;
  const double ch = double(h) / rows, cw = double(w) / cols;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int32_t id = 100;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols && id - 100 < n; ++c) {
      const double sy = ch * (0.3 + 0.2 * u(rng)), sx = cw * (0.3 + 0.2 * u(rng));  // half sizes
      const double cy = ch * (r + 0.5) + (ch / 2 - sy) * (2 * u(rng) - 1);
      const double cx = cw * (c + 0.5) + (cw / 2 - sx) * (2 * u(rng) - 1);
      if (u(rng) < 0.5)
        s.rect(id, int64_t(cy - sy + 0.5), int64_t(cx - sx + 0.5), int64_t(cy + sy - 0.5), int64_t(cx + sx - 0.5));
      else
        s.ellipse(id, cy, cx, sy, sx);
      s.seg(id, u(rng) < 0.5 ? 10 : 11);
      ++id;
    }
  s.finish();
  return s;
}

// The perfect head outputs for `t` (see the file comment).
inline HeadOutputs perfect_outputs(const Targets& t, const ClassMap& classes) {
  const int64_t h = t.semantic.size(-2), w = t.semantic.size(-1), hw = h * w;
  const int64_t K = classes.num_classes();
  int32_t void_class = 0;
  for (int32_t c = 0; c < K; ++c)
    if (!classes.isthing(c)) {
      void_class = c;
      break;
    }
  HeadOutputs o;
  o.semantic = Tensor::zeros({1, K, h, w});
  const int32_t* lab = t.semantic.data<int32_t>();
  float* sem = o.semantic.data<float>();
  for (int64_t i = 0; i < hw; ++i) sem[(lab[i] < 0 ? void_class : lab[i]) * hw + i] = 10.0f;
  o.heatmap = Tensor::empty({1, kNumKeypoints, h, w});
  const float* hm = t.heatmap.data<float>();
  float* oh = o.heatmap.data<float>();
  for (int64_t i = 0; i < kNumKeypoints * hw; ++i) oh[i] = hm[i] > 0.5f ? 10.0f : -10.0f;
  auto masked = [&](const Tensor& off, const Tensor& mask, int64_t pairs) {
    Tensor r = Tensor::zeros({1, 2 * pairs, h, w});
    const float* src = off.data<float>();
    const float* m = mask.data<float>();
    const int64_t mask_channels = mask.size(1);
    float* dst = r.data<float>();
    for (int64_t c = 0; c < pairs; ++c)
      for (int64_t i = 0; i < hw; ++i)
        if (m[(mask_channels == 1 ? 0 : c) * hw + i] > 0) {
          dst[(2 * c) * hw + i] = src[(2 * c) * hw + i];
          dst[(2 * c + 1) * hw + i] = src[(2 * c + 1) * hw + i];
        }
    return r;
  };
  o.short_offsets = masked(t.short_offsets, t.short_mask, kNumKeypoints);
  o.mid_offsets = masked(t.mid_offsets, t.mid_mask, kNumEdges);
  o.long_offsets = masked(t.long_offsets, t.long_weight, kNumKeypoints);
  return o;
}

}  // namespace dl::testing
