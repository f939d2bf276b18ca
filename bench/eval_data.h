// Random ground-truth / prediction pairs for evaluation tests and benchmarks: stuff bands,
// thing rectangles and ellipses of several classes (some crowd), void patches, and a prediction
// made from the ground truth by jittering, relabelling, dropping and adding shapes. Shared by
// bench_eval and the eval tests (header-only; writing uses the library's COCO panoptic I/O).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "parser/panoptic.h"

namespace dl::evaldata {

// 6 thing and 4 stuff classes with non-contiguous ids, as COCO has.
inline std::vector<Category> categories() {
  std::vector<Category> c;
  const char* things[] = {"person", "car", "bicycle", "dog", "bus", "chair"};
  const char* stuff[] = {"sky", "road", "grass", "wall"};
  for (int i = 0; i < 6; ++i) c.push_back({1 + 2 * i, things[i], true, {uint8_t(40 * i), 200, 30}});
  for (int i = 0; i < 4; ++i) c.push_back({100 + 3 * i, stuff[i], false, {30, uint8_t(50 * i), 200}});
  return c;
}

struct Shape {
  enum Kind { Band, Rect, Ellipse } kind = Rect;
  int32_t category_id = 0;  // 0: void
  bool crowd = false;
  double y0 = 0, x0 = 0, y1 = 0, x1 = 0;  // bounding box in pixels (band: rows y0..y1, full width)
};

// Paints shapes in order (later ones on top) with one fresh random 24-bit id per shape and
// returns the map with segments_info (area, bbox) of the shapes that kept at least one pixel.
inline PanopticMap paint(const std::vector<Shape>& shapes, int64_t h, int64_t w, std::mt19937_64& rng) {
  PanopticMap m;
  m.height = h;
  m.width = w;
  m.ids.assign(static_cast<size_t>(h * w), 0);
  std::vector<int32_t> shape_id(shapes.size(), 0);
  std::unordered_map<int32_t, size_t> used;
  for (size_t s = 0; s < shapes.size(); ++s) {
    if (shapes[s].category_id == 0) continue;
    int32_t id;
    do id = 1 + static_cast<int32_t>(rng() % ((1u << 24) - 1));
    while (used.count(id));
    used[id] = s;
    shape_id[s] = id;
  }
  for (size_t s = 0; s < shapes.size(); ++s) {
    const Shape& sh = shapes[s];
    const int32_t id = shape_id[s];
    const int64_t ya = std::max<int64_t>(0, std::lround(sh.y0)),
                  yb = std::min<int64_t>(h, std::lround(sh.y1));
    for (int64_t y = ya; y < yb; ++y) {
      int64_t xa = 0, xb = w;
      if (sh.kind == Shape::Rect) {
        xa = std::lround(sh.x0);
        xb = std::lround(sh.x1);
      } else if (sh.kind == Shape::Ellipse) {
        const double cy = 0.5 * (sh.y0 + sh.y1), cx = 0.5 * (sh.x0 + sh.x1);
        const double ry = 0.5 * (sh.y1 - sh.y0), rx = 0.5 * (sh.x1 - sh.x0);
        const double t = (y + 0.5 - cy) / ry;
        if (t * t >= 1) continue;
        const double half = rx * std::sqrt(1 - t * t);
        xa = std::lround(cx - half);
        xb = std::lround(cx + half);
      }
      xa = std::max<int64_t>(0, xa);
      xb = std::min<int64_t>(w, xb);
      if (xa < xb) std::fill(m.ids.begin() + y * w + xa, m.ids.begin() + y * w + xb, id);
    }
  }
  struct Box {
    int64_t area = 0, y0 = INT64_MAX, x0 = INT64_MAX, y1 = -1, x1 = -1;
  };
  std::unordered_map<int32_t, Box> boxes;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w;) {  // one lookup per run of equal ids
      const int32_t id = m.ids[static_cast<size_t>(y * w + x)];
      int64_t e = x + 1;
      while (e < w && m.ids[static_cast<size_t>(y * w + e)] == id) ++e;
      if (id) {
        Box& b = boxes[id];
        b.area += e - x;
        b.y0 = std::min(b.y0, y);
        b.x0 = std::min(b.x0, x);
        b.y1 = std::max(b.y1, y);
        b.x1 = std::max(b.x1, e - 1);
      }
      x = e;
    }
  for (size_t s = 0; s < shapes.size(); ++s) {
    auto it = boxes.find(shape_id[s]);
    if (!shape_id[s] || it == boxes.end()) continue;
    const Box& b = it->second;
    SegmentInfo si;
    si.id = shape_id[s];
    si.category_id = shapes[s].category_id;
    si.iscrowd = shapes[s].crowd;
    si.area = b.area;
    si.bbox = {b.x0, b.y0, b.x1 - b.x0 + 1, b.y1 - b.y0 + 1};
    m.segments.push_back(si);
  }
  return m;
}

struct Pair {
  PanopticMap gt, pred;
};

// One random scene of h x w and its imperfect prediction.
inline Pair random_pair(int64_t h, int64_t w, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uni = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  const auto cats = categories();
  std::vector<int32_t> things, stuff;
  for (const auto& c : cats) (c.isthing ? things : stuff).push_back(c.id);
  std::vector<Shape> gt;
  // Stuff: 2-4 horizontal bands covering the image.
  const int bands = 2 + static_cast<int>(rng() % 3);
  std::vector<double> cuts = {0, static_cast<double>(h)};
  for (int b = 1; b < bands; ++b) cuts.push_back(uni(0.1, 0.9) * h);
  std::sort(cuts.begin(), cuts.end());
  for (int b = 0; b < bands; ++b) {
    Shape s;
    s.kind = Shape::Band;
    s.category_id = stuff[rng() % stuff.size()];
    s.y0 = cuts[b];
    s.y1 = cuts[b + 1];
    gt.push_back(s);
  }
  // Things: 8-24 instances, about one in ten a crowd region.
  const int n_things = 8 + static_cast<int>(rng() % 17);
  for (int k = 0; k < n_things; ++k) {
    Shape s;
    s.kind = rng() % 2 ? Shape::Rect : Shape::Ellipse;
    s.category_id = things[rng() % things.size()];
    s.crowd = rng() % 10 == 0;
    const double sh = uni(0.04, 0.3) * h, sw = uni(0.03, 0.25) * w;
    s.y0 = uni(-0.1 * h, h - 0.5 * sh);
    s.x0 = uni(-0.1 * w, w - 0.5 * sw);
    s.y1 = s.y0 + sh;
    s.x1 = s.x0 + sw;
    gt.push_back(s);
  }
  // Void: a few patches and a border strip.
  const int n_void = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < n_void; ++k) {
    Shape s;
    s.kind = rng() % 2 ? Shape::Rect : Shape::Ellipse;
    const double sh = uni(0.02, 0.12) * h, sw = uni(0.02, 0.12) * w;
    s.y0 = uni(0, h - sh);
    s.x0 = uni(0, w - sw);
    s.y1 = s.y0 + sh;
    s.x1 = s.x0 + sw;
    gt.push_back(s);
  }
  Shape border;
  border.kind = Shape::Rect;
  border.y0 = h - std::max(1.0, 0.02 * h);
  border.y1 = h;
  border.x0 = 0;
  border.x1 = w;
  gt.push_back(border);

  // Prediction: jittered shapes, some relabelled or dropped, some extra, no crowd.
  std::vector<Shape> pred;
  for (const Shape& g : gt) {
    if (g.category_id == 0) {
      if (rng() % 2) continue;  // void predicted as whatever is below, or as void
    } else if (g.kind != Shape::Band && rng() % 8 == 0) {
      continue;  // missed
    }
    Shape p = g;
    p.crowd = false;
    const double jy = 0.15 * (g.y1 - g.y0), jx = g.kind == Shape::Band ? 0 : 0.15 * (g.x1 - g.x0);
    p.y0 += uni(-jy, jy);
    p.y1 += uni(-jy, jy);
    p.x0 += uni(-jx, jx);
    p.x1 += uni(-jx, jx);
    if (p.category_id && rng() % 10 == 0) {
      const auto& pool = g.kind == Shape::Band ? stuff : things;
      p.category_id = pool[rng() % pool.size()];
    }
    pred.push_back(p);
  }
  const int n_extra = static_cast<int>(rng() % 5);
  for (int k = 0; k < n_extra; ++k) {
    Shape s;
    s.kind = Shape::Ellipse;
    s.category_id = things[rng() % things.size()];
    const double sh = uni(0.03, 0.15) * h, sw = uni(0.03, 0.15) * w;
    s.y0 = uni(0, h - sh);
    s.x0 = uni(0, w - sw);
    s.y1 = s.y0 + sh;
    s.x1 = s.x0 + sw;
    pred.push_back(s);
  }
  Pair out;
  out.gt = paint(gt, h, w, rng);
  out.pred = paint(pred, h, w, rng);
  return out;
}

// Writes one pair as <root>/gt/<name>.png and <root>/pred/<name>.png.
inline void write_pair(const std::string& root, const std::string& name, const Pair& p) {
  write_panoptic_png(root + "/gt/" + name + ".png", p.gt.ids, p.gt.height, p.gt.width);
  write_panoptic_png(root + "/pred/" + name + ".png", p.pred.ids, p.pred.height, p.pred.width);
}

// The two JSONs (<root>/gt.json, <root>/pred.json) for pairs written with write_pair; image i has
// image_id 1000 + i and file name img<i>.
inline void write_jsons(const std::string& root, const std::vector<std::vector<SegmentInfo>>& gt_segments,
                        const std::vector<std::vector<SegmentInfo>>& pred_segments, int64_t h, int64_t w) {
  PanopticJson g, p;
  g.categories = categories();
  for (size_t i = 0; i < gt_segments.size(); ++i) {
    const std::string name = "img" + std::to_string(i);
    g.images.push_back({static_cast<int64_t>(1000 + i), name + ".jpg", w, h});
    g.annotations.push_back({static_cast<int64_t>(1000 + i), name + ".png", gt_segments[i]});
    p.annotations.push_back({static_cast<int64_t>(1000 + i), name + ".png", pred_segments[i]});
  }
  write_panoptic_json(root + "/gt.json", g);
  write_panoptic_json(root + "/pred.json", p);
}

}  // namespace dl::evaldata
