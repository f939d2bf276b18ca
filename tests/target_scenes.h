// Generated panoptic scenes for the target and loss tests: overlapping ellipses (things, some
// crowd) on two stuff regions with void gaps, and the categories they use.
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "parser/panoptic.h"

namespace dl::testing {

// Categories of the generated scenes: 7 car (thing), 1 road (stuff), 3 person (thing).
inline std::vector<Category> scene_categories() {
  return {{7, "car", true, {0, 0, 255}}, {1, "road", false, {128, 64, 128}}, {3, "person", true, {220, 20, 60}}};
}

// A random scene of overlapping ellipses (things, some crowd) on stuff, with void gaps.
inline PanopticMap random_scene(int64_t h, int64_t w, int n, uint64_t seed) {
  Rng rng(seed);
  PanopticMap m;
  m.height = h;
  m.width = w;
  m.ids.assign(h * w, 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) m.ids[y * w + x] = (y < h / 2) ? 1 : ((x % 13) == 0 ? 0 : 2);
  m.segments.push_back({1, 1, false, 0, {}});
  m.segments.push_back({2, 1, false, 0, {}});
  for (int i = 0; i < n; ++i) {
    const int32_t id = 1000 + i * 37;  // ids need not be contiguous
    const double cy = rng.uniform(0, double(h)), cx = rng.uniform(0, double(w));
    const double ry = rng.uniform(1, double(h) / 4), rx = rng.uniform(1, double(w) / 4);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const double u = (y - cy) / ry, v = (x - cx) / rx;
        if (u * u + v * v <= 1) m.ids[y * w + x] = id;
      }
    m.segments.push_back({id, i % 2 ? 3 : 7, i % 5 == 4, 0, {}});
  }
  return m;
}

}  // namespace dl::testing
