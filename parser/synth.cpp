// Synthetic scene generator (see synth.h). The class of a thing is carried by its colour family
// (shape is random), so a small network can learn the semantics from colour alone and the
// instance heads have to do the separating; stuff classes differ in colour and texture.
#include "parser/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/rng.h"

namespace dl {
namespace fs = std::filesystem;

namespace {

constexpr int32_t kThingIds[3] = {1, 2, 3};
constexpr int32_t kSky = 7, kWall = 8, kGround = 9;
// Base colours of the thing classes: red, green, violet (far from the stuff colours below).
constexpr int kThingColour[3][3] = {{215, 45, 40}, {40, 190, 70}, {150, 60, 215}};

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9e3779b97f4a7c15ULL + b + 0x632be59bd9b4e019ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint8_t clamp8(double v) {
  return static_cast<uint8_t>(std::min(255.0, std::max(0.0, std::round(v))));
}

struct Shape2 {
  int kind = 0;                           // 0 disc, 1 rectangle, 2 triangle
  double cy = 0, cx = 0, r = 0;           // disc
  double y0 = 0, x0 = 0, y1 = 0, x1 = 0;  // rectangle
  double ty[3]{}, tx[3]{};                // triangle
  bool contains(double y, double x) const {
    if (kind == 0) return (y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r;
    if (kind == 1) return y >= y0 && y <= y1 && x >= x0 && x <= x1;
    double d0 = (tx[1] - tx[0]) * (y - ty[0]) - (ty[1] - ty[0]) * (x - tx[0]);
    double d1 = (tx[2] - tx[1]) * (y - ty[1]) - (ty[2] - ty[1]) * (x - tx[1]);
    double d2 = (tx[0] - tx[2]) * (y - ty[2]) - (ty[0] - ty[2]) * (x - tx[2]);
    bool neg = d0 < 0 || d1 < 0 || d2<0, pos = d0> 0 || d1 > 0 || d2 > 0;
    return !(neg && pos);
  }
};

Shape2 random_shape(Rng& rng, double size, double cy, double cx) {
  Shape2 s;
  s.kind = static_cast<int>(rng.randint(0, 3));
  if (s.kind == 0) {
    s.cy = cy, s.cx = cx, s.r = size / 2;
  } else if (s.kind == 1) {
    double h = size * rng.uniform(0.6, 1.2), w = size * rng.uniform(0.6, 1.2);
    s.y0 = cy - h / 2, s.y1 = cy + h / 2, s.x0 = cx - w / 2, s.x1 = cx + w / 2;
  } else {
    double a0 = rng.uniform(0, 6.283185307179586);
    for (int k = 0; k < 3; ++k) {
      double a = a0 + k * 2.0943951023931957 + rng.uniform(-0.3, 0.3);
      s.ty[k] = cy + 0.6 * size * std::sin(a);
      s.tx[k] = cx + 0.6 * size * std::cos(a);
    }
  }
  return s;
}

}  // namespace

SynthOptions SynthOptions::preset(const std::string& name) {
  SynthOptions o;
  if (name == "full") return o;
  DL_CHECK(name == "easy", "synth: unknown preset '" << name << "' (expected easy or full)");
  o.min_things = 1;
  o.max_things = 3;
  o.min_size = 14;
  o.max_size = 30;
  o.overlap = 0.0;
  o.crowd_prob = 0.0;
  o.void_prob = 0.1;
  o.noise = 8;
  return o;
}

std::vector<Category> synth_categories() {
  std::vector<Category> c;
  const char* thing_names[3] = {"red_thing", "green_thing", "violet_thing"};
  for (int k = 0; k < 3; ++k)
    c.push_back({kThingIds[k],
                 thing_names[k],
                 true,
                 {uint8_t(kThingColour[k][0]), uint8_t(kThingColour[k][1]), uint8_t(kThingColour[k][2])}});
  c.push_back({kSky, "sky", false, {100, 150, 235}});
  c.push_back({kWall, "wall", false, {150, 150, 155}});
  c.push_back({kGround, "ground", false, {120, 85, 45}});
  return c;
}

SynthScene synth_scene(const SynthOptions& opt, int split_tag, int64_t index) {
  DL_CHECK(opt.height >= 8 && opt.width >= 8,
           "synth: image size " << opt.height << "x" << opt.width << " is too small (need >= 8x8)");
  DL_CHECK(opt.min_size > 0 && opt.max_size >= opt.min_size,
           "synth: bad thing size range " << opt.min_size << ".." << opt.max_size);
  Rng rng(mix(mix(opt.seed, static_cast<uint64_t>(split_tag)), static_cast<uint64_t>(index)));
  const int64_t H = opt.height, W = opt.width;
  SynthScene s;
  s.rgb.assign(H * W * 3, 0);
  auto& ids = s.panoptic.ids;
  ids.assign(H * W, 0);
  s.panoptic.height = H;
  s.panoptic.width = W;
  auto put = [&](int64_t y, int64_t x, double r, double g, double b) {
    uint8_t* p = &s.rgb[(y * W + x) * 3];
    p[0] = clamp8(r), p[1] = clamp8(g), p[2] = clamp8(b);
  };
  auto noise = [&](double amp) { return amp * (2 * rng.uniform() - 1); };

  // ---- stuff: sky above a sloped horizon, ground below, optionally a wall block on the horizon ----
  const double horizon = H * rng.uniform(0.3, 0.6), slope = rng.uniform(-0.25, 0.25);
  const bool has_wall = rng.bernoulli(0.5);
  double wx0 = 0, wx1 = 0, wy0 = 0;
  if (has_wall) {
    wx0 = W * rng.uniform(-0.2, 0.5);
    wx1 = wx0 + W * rng.uniform(0.3, 0.7);
    wy0 = horizon * rng.uniform(0.1, 0.6);
  }
  const double stripe = rng.uniform(3, 6), phase = rng.uniform(0, 6.28);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const double hy = horizon + slope * (x - W / 2.0);
      const double n = noise(opt.noise);
      if (y >= hy) {
        ids[y * W + x] = kGround * 1000;
        double st = 18 * std::sin(y * 6.283185307179586 / stripe + phase);
        put(y, x, 120 + st + n, 85 + st + n, 45 + 0.5 * st + n);
      } else if (has_wall && x >= wx0 && x <= wx1 && y >= wy0) {
        ids[y * W + x] = kWall * 1000;
        bool mortar = (y % 6 == 0) || ((x + ((y / 6) % 2) * 5) % 10 == 0);
        double v = mortar ? 110 : 155;
        put(y, x, v + n, v + n, v + 5 + n);
      } else {
        ids[y * W + x] = kSky * 1000;
        double g = 30.0 * y / H;
        put(y, x, 100 + g + n, 150 + g + n, 235 + n);
      }
    }

  // ---- things, in depth order (later ones occlude earlier ones) ----
  std::vector<SegmentInfo> segs;
  std::vector<uint8_t> occupied(H * W, 0);
  const int n_things = static_cast<int>(rng.randint(opt.min_things, opt.max_things + 1));
  int next_instance[3] = {1, 1, 1};
  for (int t = 0; t < n_things; ++t) {
    const int cls = static_cast<int>(rng.randint(0, 3));
    const double size = std::exp(rng.uniform(std::log(opt.min_size), std::log(opt.max_size)));
    const bool may_overlap = rng.bernoulli(opt.overlap);
    Shape2 shape;
    bool placed = false;
    for (int attempt = 0; attempt < 30 && !placed; ++attempt) {
      const double cy = rng.uniform(size / 4, H - size / 4), cx = rng.uniform(size / 4, W - size / 4);
      shape = random_shape(rng, size, cy, cx);
      placed = true;
      if (may_overlap) break;
      for (int64_t y = 0; y < H && placed; ++y)
        for (int64_t x = 0; x < W; ++x)
          if (occupied[y * W + x] && shape.contains(y, x)) {
            placed = false;
            break;
          }
    }
    if (!placed) continue;
    const int32_t id = kThingIds[cls] * 1000 + next_instance[cls]++;
    const double jr = noise(20), jg = noise(20), jb = noise(20);
    const double shade = rng.uniform(-0.15, 0.15);  // a light gradient so things are not flat
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        if (!shape.contains(y, x)) continue;
        ids[y * W + x] = id;
        occupied[y * W + x] = 1;
        const double n = noise(opt.noise), f = 1 + shade * (y - H / 2.0) / H;
        put(y, x, (kThingColour[cls][0] + jr) * f + n, (kThingColour[cls][1] + jg) * f + n,
            (kThingColour[cls][2] + jb) * f + n);
      }
    segs.push_back({id, kThingIds[cls], false, 0, {0, 0, 0, 0}});
  }

  // ---- a crowd region: a cluster of small things of one class labelled as one segment ----
  if (rng.bernoulli(opt.crowd_prob)) {
    const int cls = static_cast<int>(rng.randint(0, 3));
    const int32_t id = kThingIds[cls] * 1000 + 500;
    const double cy = rng.uniform(0.2 * H, 0.8 * H), cx = rng.uniform(0.2 * W, 0.8 * W);
    const int n = static_cast<int>(rng.randint(4, 9));
    for (int k = 0; k < n; ++k) {
      Shape2 d;
      d.kind = 0;
      d.cy = cy + rng.uniform(-0.1, 0.1) * H, d.cx = cx + rng.uniform(-0.1, 0.1) * W;
      d.r = rng.uniform(1.5, 3.5);
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          if (d.contains(y, x)) {
            ids[y * W + x] = id;
            const double nn = noise(opt.noise);
            put(y, x, kThingColour[cls][0] + nn, kThingColour[cls][1] + nn, kThingColour[cls][2] + nn);
          }
    }
    segs.push_back({id, kThingIds[cls], true, 0, {0, 0, 0, 0}});
  }

  // ---- void scribbles: dark thick line segments labelled 0 ----
  if (rng.bernoulli(opt.void_prob)) {
    const int n = static_cast<int>(rng.randint(1, 3));
    for (int k = 0; k < n; ++k) {
      const double y0 = rng.uniform(0, H), x0 = rng.uniform(0, W);
      const double a = rng.uniform(0, 6.283185307179586), len = rng.uniform(0.1, 0.3) * std::max(H, W);
      const double th = rng.uniform(1.0, 2.0);
      const double dy = std::sin(a), dx = std::cos(a);
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const double t = (y - y0) * dy + (x - x0) * dx;
          const double d = std::abs((y - y0) * dx - (x - x0) * dy);
          if (t >= 0 && t <= len && d <= th) {
            ids[y * W + x] = 0;
            const double nn = noise(opt.noise);
            put(y, x, 35 + nn, 35 + nn, 35 + nn);
          }
        }
    }
  }

  // ---- segments_info from the final id map (areas and boxes after occlusion) ----
  for (int32_t st : {kSky, kWall, kGround}) segs.push_back({st * 1000, st, false, 0, {0, 0, 0, 0}});
  for (auto& sg : segs) {
    int64_t y0 = H, x0 = W, y1 = -1, x1 = -1, area = 0;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        if (ids[y * W + x] == sg.id) {
          ++area;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
        }
    sg.area = area;
    if (area) sg.bbox = {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
  }
  for (const auto& sg : segs)
    if (sg.area > 0) s.panoptic.segments.push_back(sg);
  return s;
}

void write_synth_dataset(const std::string& dir, const SynthOptions& opt,
                         const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t total = opt.num_train + opt.num_val;
  DL_CHECK(
      opt.num_train >= 0 && opt.num_val >= 0 && total > 0,
      "synth: need a positive number of images (train " << opt.num_train << ", val " << opt.num_val << ")");
  int64_t done = 0;
  const char* splits[2] = {"train", "val"};
  for (int tag = 0; tag < 2; ++tag) {
    const int64_t n = tag == 0 ? opt.num_train : opt.num_val;
    const std::string split = splits[tag];
    const fs::path png_dir = fs::path(dir) / split, img_dir = fs::path(dir) / "images" / split;
    std::error_code ec;
    fs::create_directories(png_dir, ec);
    DL_CHECK(!ec, "synth: cannot create " << png_dir.string() << ": " << ec.message());
    fs::create_directories(img_dir, ec);
    DL_CHECK(!ec, "synth: cannot create " << img_dir.string() << ": " << ec.message());
    PanopticJson json;
    json.categories = synth_categories();
    json.images.resize(n);
    json.annotations.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      SynthScene sc = synth_scene(opt, tag, i);
      char name[64];
      std::snprintf(name, sizeof name, "%s_%06lld.png", split.c_str(), static_cast<long long>(i));
      write_rgb_png((img_dir / name).string(), sc.rgb, opt.height, opt.width);
      write_panoptic_png((png_dir / name).string(), sc.panoptic.ids, opt.height, opt.width);
      json.images[i] = {i + 1, name, opt.width, opt.height};
      json.annotations[i] = {i + 1, name, sc.panoptic.segments};
      if (progress) progress(++done, total);
    }
    write_panoptic_json((fs::path(dir) / (split + ".json")).string(), json);
  }
}

}  // namespace dl
