// Training targets from panoptic ground truth (DESIGN.md section 5, exact rules in docs/LOSSES.md).
// Two stages: one pass over the label map gives the semantic maps, a per-pixel instance index and
// every instance's statistics (area, mean and extreme coordinates); then the dense instance targets
// are filled by visiting only each keypoint disk's bounding square (CPU) or by one thread per pixel
// (CUDA, cuda/targets.cu). Disk membership and distances are computed in double, where
// (float keypoint - integer pixel)^2 sums are exact, so both fills agree bit for bit.
#include "parser/targets.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "core/error.h"
#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/targets.h"
#endif

namespace dl {

ClassMap::ClassMap(const std::vector<Category>& categories) : classes(categories) {
  std::sort(classes.begin(), classes.end(), [](const Category& a, const Category& b) { return a.id < b.id; });
  for (size_t i = 0; i < classes.size(); ++i) {
    DL_CHECK(train_id.emplace(classes[i].id, int32_t(i)).second,
             "ClassMap: category id " << classes[i].id << " appears twice (" << classes[i].name << ")");
  }
}

int32_t ClassMap::to_train_id(int32_t category_id) const {
  auto it = train_id.find(category_id);
  DL_CHECK(it != train_id.end(),
           "ClassMap: unknown category id " << category_id << " (" << classes.size() << " categories known)");
  return it->second;
}

namespace {

// The targets of a 1441x1441 image are ~450 MB of fresh memory per image; with 4 KB pages the
// first-touch page faults cost more than filling it. Ask for transparent huge pages on large
// fresh buffers (a no-op where THP is off or the memory is already mapped).
void advise_huge_pages(const Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (t.device() != Device::CPU || t.nbytes() < 2 * kHuge) return;
  const uintptr_t b = reinterpret_cast<uintptr_t>(t.raw_data()), e = b + t.nbytes();
  const uintptr_t hb = (b + kHuge - 1) & ~(kHuge - 1), he = e & ~(kHuge - 1);
  if (he > hb) madvise(reinterpret_cast<void*>(hb), he - hb, MADV_HUGEPAGE);
#endif
}

Tensor empty_huge(const Shape& s, DType dt, Device d) {
  Tensor t = Tensor::empty(s, dt, d);
  advise_huge_pages(t);
  return t;
}

constexpr int32_t kNoInstance = -1;
constexpr int32_t kCrowd = -2;

// The result of the pixel pass: everything except the dense instance targets.
struct PixelPass {
  int64_t h = 0, w = 0;
  Tensor semantic, semantic_weight, heatmap_weight;
  std::vector<int32_t> inst;  // per pixel: instance index, kNoInstance or kCrowd
  std::vector<GtInstance> instances;
};

PixelPass pixel_pass(const PanopticMap& gt, const ClassMap& classes, const TargetConfig& cfg,
                     const std::string& source) {
  const char* src = source.empty() ? "<panoptic map>" : source.c_str();
  DL_CHECK(gt.height > 0 && gt.width > 0,
           "build_targets: " << src << ": empty label map " << gt.height << "x" << gt.width);
  DL_CHECK(int64_t(gt.ids.size()) == gt.height * gt.width, "build_targets: " << src << ": " << gt.ids.size()
                                                                             << " ids for a " << gt.height
                                                                             << "x" << gt.width << " map");
  DL_CHECK(cfg.radius > 0 && std::isfinite(cfg.radius),
           "build_targets: radius must be positive, got " << cfg.radius);
  DL_CHECK(cfg.small_area >= 0 && cfg.small_weight >= 0, "build_targets: small_area "
                                                             << cfg.small_area << " and small_weight "
                                                             << cfg.small_weight << " must be non-negative");
  const int64_t h = gt.height, w = gt.width, hw = h * w;
  const size_t ns = gt.segments.size();

  // Segment table: id -> index; train id and kind per segment.
  std::unordered_map<int32_t, int32_t> index;
  std::vector<int32_t> seg_train(ns);
  std::vector<char> seg_thing(ns), seg_crowd(ns);
  for (size_t s = 0; s < ns; ++s) {
    const SegmentInfo& si = gt.segments[s];
    DL_CHECK(si.id != 0, "build_targets: " << src << ": segments_info lists id 0 (reserved for void)");
    DL_CHECK(index.emplace(si.id, int32_t(s)).second,
             "build_targets: " << src << ": segment id " << si.id << " listed twice in segments_info");
    auto it = classes.train_id.find(si.category_id);
    DL_CHECK(it != classes.train_id.end(), "build_targets: " << src << ": segment " << si.id
                                                             << " has unknown category id "
                                                             << si.category_id);
    seg_train[s] = it->second;
    seg_thing[s] = classes.isthing(it->second);
    seg_crowd[s] = si.iscrowd;
  }

  // Pass 1: segment index per pixel and per-segment statistics.
  struct Stats {
    int64_t count = 0;
    double sy = 0, sx = 0;
    int64_t y0 = std::numeric_limits<int64_t>::max(), y1 = -1, x0 = std::numeric_limits<int64_t>::max(),
            x1 = -1;
  };
  std::vector<Stats> stats(ns);
  std::vector<int32_t> seg(hw);
  {
    int32_t last_id = 0, last_s = -1;  // label maps come in long runs: cache the last lookup
    for (int64_t y = 0; y < h; ++y) {
      const int32_t* row = gt.ids.data() + y * w;
      int32_t* srow = seg.data() + y * w;
      for (int64_t x = 0; x < w; ++x) {
        const int32_t id = row[x];
        int32_t s;
        if (id == 0) {
          s = -1;
        } else if (id == last_id && last_s >= 0) {
          s = last_s;
        } else {
          auto it = index.find(id);
          DL_CHECK(it != index.end(), "build_targets: " << src << ": segment id " << id << " at pixel (y "
                                                        << y << ", x " << x
                                                        << ") is missing from segments_info");
          s = it->second;
          last_id = id;
          last_s = s;
        }
        srow[x] = s;
        if (s >= 0) {
          Stats& st = stats[s];
          st.count++;
          st.sy += double(y);
          st.sx += double(x);
          st.y0 = std::min(st.y0, y);
          st.y1 = std::max(st.y1, y);
          st.x0 = std::min(st.x0, x);
          st.x1 = std::max(st.x1, x);
        }
      }
    }
  }

  PixelPass out;
  out.h = h;
  out.w = w;
  // Instances: non-crowd thing segments that have pixels, in segments_info order.
  std::vector<int32_t> seg_inst(ns, kNoInstance);
  for (size_t s = 0; s < ns; ++s) {
    if (seg_crowd[s]) seg_inst[s] = kCrowd;  // crowd (thing or stuff) is excluded from instance targets
    if (!seg_thing[s] || seg_crowd[s] || stats[s].count == 0) continue;
    const Stats& st = stats[s];
    GtInstance g;
    g.segment_id = gt.segments[s].id;
    g.train_id = seg_train[s];
    g.area = st.count;
    g.keypoints[0] = {float(st.sy / double(st.count)), float(st.sx / double(st.count))};
    g.keypoints[1] = {float(st.y0), float(st.x0)};
    g.keypoints[2] = {float(st.y0), float(st.x1)};
    g.keypoints[3] = {float(st.y1), float(st.x0)};
    g.keypoints[4] = {float(st.y1), float(st.x1)};
    seg_inst[s] = int32_t(out.instances.size());
    out.instances.push_back(g);
  }
  std::vector<float> seg_weight(ns, 1.0f);
  for (size_t s = 0; s < ns; ++s)
    if (seg_inst[s] >= 0 && stats[s].count < cfg.small_area) seg_weight[s] = float(cfg.small_weight);

  // Pass 2: semantic label, semantic weight, heatmap weight, instance index per pixel.
  out.semantic = empty_huge({1, h, w}, DType::I32, Device::CPU);
  out.semantic_weight = empty_huge({1, h, w}, DType::F32, Device::CPU);
  out.heatmap_weight = empty_huge({1, 1, h, w}, DType::F32, Device::CPU);
  out.inst = std::move(seg);  // converted in place: segment index -> instance index
  int32_t* sem = out.semantic.data<int32_t>();
  float* semw = out.semantic_weight.data<float>();
  float* hmw = out.heatmap_weight.data<float>();
  for (int64_t p = 0; p < hw; ++p) {
    const int32_t s = out.inst[p];
    if (s < 0) {
      sem[p] = -1;
      semw[p] = 0.0f;
      hmw[p] = 0.0f;
      out.inst[p] = kNoInstance;
    } else {
      sem[p] = seg_train[s];
      semw[p] = seg_weight[s];
      const int32_t j = seg_inst[s];
      hmw[p] = j == kCrowd ? 0.0f : 1.0f;
      out.inst[p] = j;
    }
  }
  return out;
}

// The edges leaving keypoint k.
int edges_from(int k, int* edges) {
  int n = 0;
  for (int e = 0; e < kNumEdges; ++e)
    if (kEdgeFrom[e] == k) edges[n++] = e;
  return n;
}

void fill_instances_cpu(const PixelPass& pp, double radius, float* heat, float* short_off, float* mid_off,
                        float* mid_mask, float* long_off, float* long_w) {
  const int64_t h = pp.h, w = pp.w, hw = h * w;
  const auto& inst = pp.instances;
  const int64_t nj = int64_t(inst.size());
  std::memset(heat, 0, sizeof(float) * kNumKeypoints * hw);
  std::memset(short_off, 0, sizeof(float) * 2 * kNumKeypoints * hw);
  std::memset(mid_off, 0, sizeof(float) * 2 * kNumEdges * hw);
  std::memset(mid_mask, 0, sizeof(float) * kNumEdges * hw);

  // Long-range: every instance pixel points to its own instance's keypoints.
  std::vector<float> inv_sqrt(nj);
  for (int64_t j = 0; j < nj; ++j) inv_sqrt[j] = float(1.0 / std::sqrt(double(inst[j].area)));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      const int32_t j = pp.inst[p];
      if (j >= 0) {
        long_w[p] = inv_sqrt[j];
        for (int k = 0; k < kNumKeypoints; ++k) {
          long_off[(2 * k) * hw + p] = inst[j].keypoints[k][0] - float(y);
          long_off[(2 * k + 1) * hw + p] = inst[j].keypoints[k][1] - float(x);
        }
      } else {
        long_w[p] = 0.0f;
        for (int c = 0; c < 2 * kNumKeypoints; ++c) long_off[c * hw + p] = 0.0f;
      }
    }
  }
  if (nj == 0) return;

  // Short/mid: per keypoint k, each pixel of the union of k-disks belongs to the instance whose
  // keypoint k is nearest (ties to the lower index). Only disk bounding squares are visited.
  const double r2 = radius * radius;
  std::vector<int32_t> owner(hw, -1);
  auto square = [&](const std::array<float, 2>& kp, int64_t& ya, int64_t& yb, int64_t& xa, int64_t& xb) {
    // One pixel of slack against rounding at the rim; membership is decided by dist2 <= r2.
    ya = std::max<int64_t>(0, int64_t(std::floor(double(kp[0]) - radius)));
    yb = std::min<int64_t>(h - 1, int64_t(std::ceil(double(kp[0]) + radius)));
    xa = std::max<int64_t>(0, int64_t(std::floor(double(kp[1]) - radius)));
    xb = std::min<int64_t>(w - 1, int64_t(std::ceil(double(kp[1]) + radius)));
  };
  auto dist2 = [](const std::array<float, 2>& kp, int64_t y, int64_t x) {
    const double dy = double(kp[0]) - double(y), dx = double(kp[1]) - double(x);
    return dy * dy + dx * dx;
  };
  for (int k = 0; k < kNumKeypoints; ++k) {
    for (int64_t j = 0; j < nj; ++j) {
      const auto& kp = inst[j].keypoints[k];
      int64_t ya, yb, xa, xb;
      square(kp, ya, yb, xa, xb);
      for (int64_t y = ya; y <= yb; ++y)
        for (int64_t x = xa; x <= xb; ++x) {
          const int64_t p = y * w + x;
          if (pp.inst[p] == kCrowd) continue;
          const double d2 = dist2(kp, y, x);
          if (d2 > r2) continue;
          const int32_t o = owner[p];
          if (o < 0 || d2 < dist2(inst[o].keypoints[k], y, x)) owner[p] = int32_t(j);
        }
    }
    int edges[kNumEdges];
    const int ne = edges_from(k, edges);
    for (int64_t j = 0; j < nj; ++j) {
      const auto& kp = inst[j].keypoints[k];
      int64_t ya, yb, xa, xb;
      square(kp, ya, yb, xa, xb);
      for (int64_t y = ya; y <= yb; ++y)
        for (int64_t x = xa; x <= xb; ++x) {
          const int64_t p = y * w + x;
          if (owner[p] != j) continue;
          owner[p] = -1;            // written once; also resets the buffer for the next keypoint
          heat[k * hw + p] = 1.0f;  // also the short-range mask (same tensor)
          short_off[(2 * k) * hw + p] = kp[0] - float(y);
          short_off[(2 * k + 1) * hw + p] = kp[1] - float(x);
          for (int i = 0; i < ne; ++i) {
            const int e = edges[i];
            const auto& to = inst[j].keypoints[kEdgeTo[e]];
            mid_mask[e * hw + p] = 1.0f;
            mid_off[(2 * e) * hw + p] = to[0] - float(y);
            mid_off[(2 * e + 1) * hw + p] = to[1] - float(x);
          }
        }
    }
  }
}

Targets assemble(const PixelPass& pp, Device device) {
  const int64_t h = pp.h, w = pp.w;
  Targets t;
  t.semantic = pp.semantic.to(device);
  t.semantic_weight = pp.semantic_weight.to(device);
  t.heatmap_weight = pp.heatmap_weight.to(device);
  t.heatmap = empty_huge({1, kNumKeypoints, h, w}, DType::F32, device);
  t.short_offsets = empty_huge({1, 2 * kNumKeypoints, h, w}, DType::F32, device);
  t.short_mask = t.heatmap;  // identical by definition (disk union minus crowd): shared, not copied
  t.mid_offsets = empty_huge({1, 2 * kNumEdges, h, w}, DType::F32, device);
  t.mid_mask = empty_huge({1, kNumEdges, h, w}, DType::F32, device);
  t.long_offsets = empty_huge({1, 2 * kNumKeypoints, h, w}, DType::F32, device);
  t.long_weight = empty_huge({1, 1, h, w}, DType::F32, device);
  return t;
}

}  // namespace

Targets build_targets(const PanopticMap& gt, const ClassMap& classes, const TargetConfig& cfg,
                      const std::string& source) {
  PixelPass pp = pixel_pass(gt, classes, cfg, source);
  Targets t = assemble(pp, Device::CPU);
  fill_instances_cpu(pp, cfg.radius, t.heatmap.data<float>(), t.short_offsets.data<float>(),
                     t.mid_offsets.data<float>(), t.mid_mask.data<float>(), t.long_offsets.data<float>(),
                     t.long_weight.data<float>());
  t.instances.push_back(std::move(pp.instances));
  return t;
}

Targets build_targets_on(const PanopticMap& gt, const ClassMap& classes, const TargetConfig& cfg,
                         Device device, const std::string& source) {
  if (device == Device::CPU) return build_targets(gt, classes, cfg, source);
#ifdef DEEPERLAB_WITH_CUDA
  PixelPass pp = pixel_pass(gt, classes, cfg, source);
  Targets t = assemble(pp, device);
  const int64_t nj = int64_t(pp.instances.size());
  std::vector<float> kps(std::max<int64_t>(1, nj) * kNumKeypoints * 2, 0.0f),
      inv_sqrt(std::max<int64_t>(1, nj), 0.0f);
  for (int64_t j = 0; j < nj; ++j) {
    for (int k = 0; k < kNumKeypoints; ++k) {
      kps[(j * kNumKeypoints + k) * 2] = pp.instances[j].keypoints[k][0];
      kps[(j * kNumKeypoints + k) * 2 + 1] = pp.instances[j].keypoints[k][1];
    }
    inv_sqrt[j] = float(1.0 / std::sqrt(double(pp.instances[j].area)));
  }
  Tensor d_inst = Tensor::from_vector(pp.inst, {pp.h, pp.w}, device);
  Tensor d_kps = Tensor::from_vector(kps, {int64_t(kps.size())}, device);
  Tensor d_inv = Tensor::from_vector(inv_sqrt, {int64_t(inv_sqrt.size())}, device);
  cuda::instance_targets_fwd(t.heatmap.data<float>(), t.short_offsets.data<float>(),
                             t.mid_offsets.data<float>(), t.mid_mask.data<float>(),
                             t.long_offsets.data<float>(), t.long_weight.data<float>(),
                             d_inst.data<int32_t>(), d_kps.data<float>(), d_inv.data<float>(), nj, pp.h, pp.w,
                             cfg.radius, cuda::stream());
  cuda::check_after_op("build_targets_on");
  t.instances.push_back(std::move(pp.instances));
  return t;
#else
  DL_FAIL("build_targets_on: CUDA device requested in a build without the CUDA backend");
#endif
}

namespace {
template <class F>
void for_each_tensor(Targets& t, F f) {
  for (Tensor* p : {&t.semantic, &t.semantic_weight, &t.heatmap, &t.heatmap_weight, &t.short_offsets,
                    &t.short_mask, &t.mid_offsets, &t.mid_mask, &t.long_offsets, &t.long_weight})
    f(*p);
}
}  // namespace

Targets Targets::to(Device d) const {
  Targets out = *this;
  const bool shared = short_mask.defined() && short_mask.same(heatmap);
  if (shared) out.short_mask = Tensor();
  for_each_tensor(out, [d](Tensor& x) {
    if (x.defined()) x = x.to(d);
  });
  if (shared) out.short_mask = out.heatmap;  // keep the heatmap / short mask sharing
  return out;
}

Targets stack_targets(const std::vector<Targets>& per_image) {
  DL_CHECK(!per_image.empty(), "stack_targets: no images");
  if (per_image.size() == 1) return per_image[0];
  // Collect the tensors field by field (same order as for_each_tensor).
  const size_t nf = 10;
  std::vector<std::vector<Tensor>> fields(nf);
  for (const Targets& t : per_image) {
    Targets c = t;
    size_t f = 0;
    for_each_tensor(c, [&](Tensor& x) { fields[f++].push_back(x); });
  }
  bool shared = true;  // heatmap and short mask share storage: stack once
  for (const Targets& t : per_image) shared = shared && t.short_mask.same(t.heatmap);
  const size_t short_mask_field = 5;
  Targets out;
  std::vector<Tensor> stacked;
  for (size_t f = 0; f < nf; ++f) {
    if (shared && f == short_mask_field) {
      stacked.emplace_back();
      continue;
    }
    const Tensor& first = fields[f][0];
    DL_CHECK(first.defined(), "stack_targets: image 0 has an undefined target tensor");
    Shape s = first.shape();
    int64_t n = 0;
    for (size_t i = 0; i < fields[f].size(); ++i) {
      const Tensor& x = fields[f][i];
      DL_CHECK(x.defined() && x.dim() == first.dim() && x.dtype() == first.dtype() &&
                   x.device() == first.device() && std::equal(s.begin() + 1, s.end(), x.shape().begin() + 1),
               "stack_targets: image " << i << " has target " << x.desc() << ", image 0 has " << first.desc()
                                       << " (all images must have the same size and device)");
      n += x.size(0);
    }
    s[0] = n;
    Tensor o = Tensor::empty(s, first.dtype(), first.device());
    int64_t at = 0;
    for (const Tensor& x : fields[f])
      for (int64_t b = 0; b < x.size(0); ++b) o.select0(at++).copy_(x.select0(b));
    stacked.push_back(o);
  }
  size_t f = 0;
  for_each_tensor(out, [&](Tensor& x) { x = stacked[f++]; });
  if (shared) out.short_mask = out.heatmap;
  for (const Targets& t : per_image)
    for (const auto& v : t.instances) out.instances.push_back(v);
  return out;
}

}  // namespace dl
