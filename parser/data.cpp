// Dataset reading, augmentation and the prefetching loader (see data.h for the determinism rule).
#include "parser/data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "core/error.h"

namespace dl {
namespace fs = std::filesystem;

uint64_t derive_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t z = 0x243f6a8885a308d3ULL;
  for (uint64_t v : {a, b, c, d}) {
    z ^= v + 0x9e3779b97f4a7c15ULL + (z << 6) + (z >> 2);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  }
  return z;
}

// ---------------------------------------------------------------- layouts

static bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
static bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

DatasetPaths resolve_dataset(const std::string& root_s, const std::string& split, const std::string& layout) {
  const fs::path root(root_s);
  DL_CHECK(is_dir(root), "dataset: " << root_s << " is not a folder");
  std::vector<DatasetPaths> cands;
  auto want = [&](const char* l) { return layout == "auto" || layout == l; };
  if (want("synth"))
    cands.push_back({"synth", (root / (split + ".json")).string(), (root / split).string(),
                     (root / "images" / split).string(), false});
  if (want("coco")) {
    bool has_year = split.size() > 4 && std::all_of(split.end() - 4, split.end(), ::isdigit);
    std::string s = has_year ? split : split + "2017";
    cands.push_back({"coco", (root / "annotations" / ("panoptic_" + s + ".json")).string(),
                     (root / "annotations" / ("panoptic_" + s)).string(), (root / s).string(), false});
  }
  if (want("cityscapes"))
    cands.push_back({"cityscapes", (root / "gtFine" / ("cityscapes_panoptic_" + split + ".json")).string(),
                     (root / "gtFine" / ("cityscapes_panoptic_" + split)).string(),
                     (root / "leftImg8bit" / split).string(), true});
  if (want("vistas")) {
    std::string s = split == "train" ? "training" : split == "val" ? "validation" : split;
    for (const fs::path& base : {root / s, root}) {
      cands.push_back({"vistas", (base / "v2.0" / "panoptic" / "panoptic_2020.json").string(),
                       (base / "v2.0" / "panoptic").string(), (base / "images").string(), false});
    }
  }
  DL_CHECK(!cands.empty(),
           "dataset: unknown layout '" << layout << "' (expected auto, synth, coco, cityscapes or vistas)");
  std::ostringstream tried;
  for (const auto& c : cands) {
    if (is_file(c.json) && is_dir(c.panoptic_dir) && is_dir(c.image_dir)) return c;
    tried << "\n  " << c.layout << ": " << c.json << " + " << c.panoptic_dir << "/ + " << c.image_dir << "/";
  }
  DL_FAIL("dataset: no split '" << split << "' found below " << root_s << "; looked for:" << tried.str());
}

// ---------------------------------------------------------------- dataset

PanopticDataset::PanopticDataset(const DatasetPaths& paths) : paths_(paths) {
  json_ = read_panoptic_json(paths.json);
  for (size_t a = 0; a < json_.annotations.size(); ++a) {
    const auto& ann = json_.annotations[a];
    DL_CHECK(json_.image(ann.image_id), paths.json << ": annotation " << a << " (" << ann.file_name
                                                   << ") names image id " << ann.image_id
                                                   << " which is not in images[]");
    ann_by_image_[ann.image_id] = a;
  }
  if (paths.recursive_images) {
    // Cityscapes keeps images in per-city folders while images[].file_name is a base name: index once.
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(paths.image_dir, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file()) image_index_.emplace(it->path().filename().string(), it->path().string());
    DL_CHECK(!ec, "dataset: cannot list " << paths.image_dir << ": " << ec.message());
  }
}

const PanopticAnnotation* PanopticDataset::annotation(int64_t i) const {
  DL_CHECK(i >= 0 && i < size(), "dataset: image index " << i << " out of range [0, " << size() << ")");
  auto it = ann_by_image_.find(json_.images[i].id);
  return it == ann_by_image_.end() ? nullptr : &json_.annotations[it->second];
}

std::string PanopticDataset::image_path(int64_t i) const {
  DL_CHECK(i >= 0 && i < size(), "dataset: image index " << i << " out of range [0, " << size() << ")");
  const std::string& name = json_.images[i].file_name;
  if (paths_.recursive_images) {
    fs::path direct = fs::path(paths_.image_dir) / name;
    if (is_file(direct)) return direct.string();
    auto it = image_index_.find(fs::path(name).filename().string());
    DL_CHECK(it != image_index_.end(), paths_.json << ": image '" << name << "' (id " << json_.images[i].id
                                                   << ") not found anywhere below " << paths_.image_dir);
    return it->second;
  }
  fs::path p = fs::path(paths_.image_dir) / name;
  DL_CHECK(is_file(p), paths_.json << ": image '" << name << "' (id " << json_.images[i].id
                                   << ") is missing: " << p.string());
  return p.string();
}

std::string PanopticDataset::panoptic_path(int64_t i) const {
  const PanopticAnnotation* a = annotation(i);
  DL_CHECK(a, paths_.json << ": image '" << json_.images[i].file_name << "' has no annotation");
  fs::path p = fs::path(paths_.panoptic_dir) / a->file_name;
  DL_CHECK(is_file(p), paths_.json << ": annotation of image id " << a->image_id << " names panoptic PNG '"
                                   << a->file_name << "', which is missing: " << p.string());
  return p.string();
}

std::vector<float> normalise_image(const std::vector<uint8_t>& rgb, int64_t h, int64_t w) {
  std::vector<float> out(3 * h * w);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t p = 0; p < h * w; ++p) out[c * h * w + p] = rgb[p * 3 + c] * (2.0f / 255.0f) - 1.0f;
  return out;
}

Sample PanopticDataset::load(int64_t i, bool with_gt) const {
  Sample s;
  const ImageInfo& info = json_.images.at(i);
  s.image_id = info.id;
  s.name = info.file_name;
  const std::string ip = image_path(i);
  std::vector<uint8_t> rgb = read_rgb(ip, s.height, s.width);
  s.image = normalise_image(rgb, s.height, s.width);
  if (with_gt) {
    const PanopticAnnotation* a = annotation(i);
    DL_CHECK(a, paths_.json << ": image '" << info.file_name << "' has no annotation");
    const std::string pp = panoptic_path(i);
    s.gt = load_panoptic(pp, *a, json_.categories);
    DL_CHECK(s.gt.height == s.height && s.gt.width == s.width,
             "dataset: panoptic PNG " << pp << " is " << s.gt.height << "x" << s.gt.width << " but image "
                                      << ip << " is " << s.height << "x" << s.width);
  }
  return s;
}

// ---------------------------------------------------------------- augmentation

static void recompute_segments(PanopticMap& m) {
  std::map<int32_t, std::array<int64_t, 5>> st;  // id -> area, y0, x0, y1, x1
  for (int64_t y = 0; y < m.height; ++y)
    for (int64_t x = 0; x < m.width; ++x) {
      int32_t id = m.ids[y * m.width + x];
      if (!id) continue;
      auto it = st.find(id);
      if (it == st.end()) it = st.emplace(id, std::array<int64_t, 5>{0, y, x, y, x}).first;
      auto& a = it->second;
      ++a[0];
      a[1] = std::min(a[1], y), a[2] = std::min(a[2], x), a[3] = std::max(a[3], y), a[4] = std::max(a[4], x);
    }
  std::vector<SegmentInfo> kept;
  for (auto sg : m.segments) {
    auto it = st.find(sg.id);
    if (it == st.end()) continue;
    const auto& a = it->second;
    sg.area = a[0];
    sg.bbox = {a[2], a[1], a[4] - a[2] + 1, a[3] - a[1] + 1};
    kept.push_back(sg);
  }
  m.segments = std::move(kept);
}

// Bilinear resize of a CHW float image, half-pixel centres (align_corners false), as the
// augmentation of the reference implementations.
static std::vector<float> resize_image(const std::vector<float>& in, int64_t h, int64_t w, int64_t oh,
                                       int64_t ow) {
  std::vector<float> out(3 * oh * ow);
  const double sy = double(h) / oh, sx = double(w) / ow;
  for (int64_t y = 0; y < oh; ++y) {
    double fy = std::max(0.0, (y + 0.5) * sy - 0.5);
    int64_t y0 = std::min<int64_t>(static_cast<int64_t>(fy), h - 1), y1 = std::min<int64_t>(y0 + 1, h - 1);
    float ly = static_cast<float>(fy - y0);
    for (int64_t x = 0; x < ow; ++x) {
      double fx = std::max(0.0, (x + 0.5) * sx - 0.5);
      int64_t x0 = std::min<int64_t>(static_cast<int64_t>(fx), w - 1), x1 = std::min<int64_t>(x0 + 1, w - 1);
      float lx = static_cast<float>(fx - x0);
      for (int64_t c = 0; c < 3; ++c) {
        const float* p = &in[c * h * w];
        float v = (1 - ly) * ((1 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
                  ly * ((1 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1]);
        out[c * oh * ow + y * ow + x] = v;
      }
    }
  }
  return out;
}

static std::vector<int32_t> resize_labels(const std::vector<int32_t>& in, int64_t h, int64_t w, int64_t oh,
                                          int64_t ow) {
  std::vector<int32_t> out(oh * ow);
  for (int64_t y = 0; y < oh; ++y) {
    int64_t sy = std::min<int64_t>(static_cast<int64_t>((y + 0.5) * h / oh), h - 1);
    for (int64_t x = 0; x < ow; ++x) {
      int64_t sx = std::min<int64_t>(static_cast<int64_t>((x + 0.5) * w / ow), w - 1);
      out[y * ow + x] = in[sy * w + sx];
    }
  }
  return out;
}

// Places the window [top, top+oh) x [left, left+ow) of s (which may extend past the image: padding).
static Sample window(const Sample& s, int64_t top, int64_t left, int64_t oh, int64_t ow, bool flip) {
  Sample o;
  o.image_id = s.image_id;
  o.name = s.name;
  o.height = oh, o.width = ow;
  o.image.assign(3 * oh * ow, 0.0f);
  const bool gt = !s.gt.ids.empty();
  if (gt) {
    o.gt.height = oh, o.gt.width = ow;
    o.gt.ids.assign(oh * ow, 0);
    o.gt.segments = s.gt.segments;
  }
  for (int64_t y = 0; y < oh; ++y) {
    int64_t sy = y + top;
    if (sy < 0 || sy >= s.height) continue;
    for (int64_t x = 0; x < ow; ++x) {
      int64_t sx = (flip ? ow - 1 - x : x) + left;
      if (sx < 0 || sx >= s.width) continue;
      for (int64_t c = 0; c < 3; ++c)
        o.image[c * oh * ow + y * ow + x] = s.image[c * s.height * s.width + sy * s.width + sx];
      if (gt) o.gt.ids[y * ow + x] = s.gt.ids[sy * s.width + sx];
    }
  }
  if (gt) recompute_segments(o.gt);
  return o;
}

Sample augment(const Sample& s, const AugmentOptions& opt, Rng& rng) {
  if (!opt.enabled) return opt.crop_height > 0 ? fit_to_size(s, opt.crop_height, opt.crop_width) : s;
  DL_CHECK(opt.min_scale > 0 && opt.max_scale >= opt.min_scale,
           "augment: bad scale range " << opt.min_scale << ".." << opt.max_scale);
  // Draw every random number up front, in a fixed order, so the stream does not depend on sizes.
  const double u = rng.uniform();
  double scale = opt.min_scale + u * (opt.max_scale - opt.min_scale);
  if (opt.scale_step > 0) {
    const int64_t n =
        static_cast<int64_t>(std::floor((opt.max_scale - opt.min_scale) / opt.scale_step + 1e-9)) + 1;
    scale = opt.min_scale + opt.scale_step * std::min<int64_t>(n - 1, static_cast<int64_t>(u * n));
  }
  const double ry = rng.uniform(), rx = rng.uniform();
  const bool flip = opt.flip && rng.bernoulli(0.5);
  Sample sc = s;
  const int64_t nh = std::max<int64_t>(1, std::llround(s.height * scale));
  const int64_t nw = std::max<int64_t>(1, std::llround(s.width * scale));
  if (nh != s.height || nw != s.width) {
    sc.image = resize_image(s.image, s.height, s.width, nh, nw);
    if (!s.gt.ids.empty()) {
      sc.gt.ids = resize_labels(s.gt.ids, s.height, s.width, nh, nw);
      sc.gt.height = nh, sc.gt.width = nw;
    }
    sc.height = nh, sc.width = nw;
  }
  const int64_t oh = opt.crop_height > 0 ? opt.crop_height : nh,
                ow = opt.crop_width > 0 ? opt.crop_width : nw;
  // A crop window inside the image when it is larger, else the image at a random place in the padded window.
  const int64_t top =
      nh >= oh ? static_cast<int64_t>(ry * (nh - oh + 1)) : -static_cast<int64_t>(ry * (oh - nh + 1));
  const int64_t left =
      nw >= ow ? static_cast<int64_t>(rx * (nw - ow + 1)) : -static_cast<int64_t>(rx * (ow - nw + 1));
  // With a flip, output column x reads source column left + (ow-1-x).
  return window(sc, std::min(top, nh - 1), std::min(left, nw - 1), oh, ow, flip);
}

Sample fit_to_size(const Sample& s, int64_t height, int64_t width) {
  if (height == s.height && width == s.width) return s;
  return window(s, 0, 0, height, width, false);
}

// ---------------------------------------------------------------- loader

Loader::Loader(const PanopticDataset& data, const ClassMap& classes, const TargetConfig& target_cfg,
               const LoaderOptions& opt, int64_t first_step)
    : data_(data),
      classes_(classes),
      target_cfg_(target_cfg),
      opt_(opt),
      next_step_(first_step),
      next_to_build_(first_step) {
  DL_CHECK(data.size() > 0, "loader: dataset " << data.paths().json << " has no images");
  DL_CHECK(opt.batch_size > 0, "loader: batch size must be positive, got " << opt.batch_size);
  for (int t = 0; t < opt_.threads; ++t) workers_.emplace_back([this] { worker(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(data_.size());
  std::iota(order.begin(), order.end(), 0);
  if (opt_.shuffle) {
    Rng rng(derive_seed(opt_.seed, 0x0de5, static_cast<uint64_t>(epoch)));
    for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i)
      std::swap(order[i], order[rng.randint(0, i + 1)]);
  }
  return order;
}

Batch Loader::make_batch(int64_t step) const {
  const int64_t n = opt_.batch_size, size = data_.size();
  Batch b;
  b.step = step;
  std::vector<Targets> targets;
  std::vector<Sample> samples;
  int64_t cached_epoch = -1;
  std::vector<int64_t> order;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t k = step * n + j, epoch = k / size, pos = k % size;
    if (epoch != cached_epoch) order = epoch_order(epoch), cached_epoch = epoch;
    const int64_t idx = order[pos];
    Rng rng(derive_seed(opt_.seed, 0xa116, static_cast<uint64_t>(epoch), static_cast<uint64_t>(pos)));
    Sample s = augment(data_.load(idx, true), opt_.augment, rng);
    if (!samples.empty())
      DL_CHECK(s.height == samples[0].height && s.width == samples[0].width,
               "loader: images of different sizes in one batch ("
                   << samples[0].name << " " << samples[0].height << "x" << samples[0].width << ", " << s.name
                   << " " << s.height << "x" << s.width << "); set data.crop_size");
    targets.push_back(build_targets(s.gt, classes_, target_cfg_, s.name));
    b.indices.push_back(idx);
    samples.push_back(std::move(s));
  }
  const int64_t h = samples[0].height, w = samples[0].width;
  b.images = Tensor::empty({n, 3, h, w});
  float* dst = b.images.data<float>();
  for (int64_t j = 0; j < n; ++j)
    std::memcpy(dst + j * 3 * h * w, samples[j].image.data(), 3 * h * w * sizeof(float));
  b.targets = stack_targets(targets);
  return b;
}

void Loader::worker() {
  for (;;) {
    int64_t step;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || next_to_build_ < next_step_ + opt_.queue_capacity; });
      if (stop_) return;
      step = next_to_build_++;
    }
    std::shared_ptr<Batch> b;
    std::exception_ptr err;
    try {
      b = std::make_shared<Batch>(make_batch(step));
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      ready_[step] = {std::move(b), err};
    }
    cv_.notify_all();
  }
}

Batch Loader::next() {
  if (workers_.empty()) return make_batch(next_step_++);
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return ready_.count(next_step_) > 0; });
  auto item = std::move(ready_[next_step_]);
  ready_.erase(next_step_);
  ++next_step_;
  lk.unlock();
  cv_.notify_all();
  if (item.second) std::rethrow_exception(item.second);
  return std::move(*item.first);
}

}  // namespace dl
