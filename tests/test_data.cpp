// Dataset reader on the COCO, Cityscapes and Mapillary Vistas layouts (tiny fake datasets in a temp
// folder), its error messages, augmentation invariants (labels move with the image under scale,
// crop, pad and flip) and the loader's determinism by seed whatever its thread count.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"
#include "parser/data.h"
#include "parser/synth.h"

namespace fs = std::filesystem;
using namespace dl;

namespace {
using dl::testing::TempDir;

SynthOptions small_opt() {
  SynthOptions o;
  o.height = 21, o.width = 26, o.min_size = 4, o.max_size = 10;
  return o;
}

// Writes 3 scenes as `layout` below root; image files are named like the real datasets'.
void write_layout(const fs::path& root, const std::string& layout) {
  SynthOptions o = small_opt();
  fs::path json, pan, img;
  if (layout == "coco") {
    json = root / "annotations" / "panoptic_val2017.json", pan = root / "annotations" / "panoptic_val2017";
    img = root / "val2017";
  } else if (layout == "cityscapes") {
    json = root / "gtFine" / "cityscapes_panoptic_val.json",
    pan = root / "gtFine" / "cityscapes_panoptic_val";
    img = root / "leftImg8bit" / "val";
  } else {
    json = root / "validation" / "v2.0" / "panoptic" / "panoptic_2020.json";
    pan = root / "validation" / "v2.0" / "panoptic", img = root / "validation" / "images";
  }
  fs::create_directories(pan);
  fs::create_directories(img);
  PanopticJson pj;
  pj.categories = synth_categories();
  for (int i = 0; i < 3; ++i) {
    SynthScene s = synth_scene(o, 1, i);
    std::string base = "img" + std::to_string(i), image_name, png_name = base + ".png";
    fs::path image_path;
    if (layout == "cityscapes") {
      const char* city = i < 2 ? "frankfurt" : "lindau";
      base = std::string(city) + "_00000" + std::to_string(i) + "_000019";
      image_name = base + "_leftImg8bit.png", png_name = base + "_gtFine_panoptic.png";
      fs::create_directories(img / city);
      image_path = img / city / image_name;
    } else {
      image_name = base + (layout == "coco" ? ".jpg" : ".png");  // stb reads by content, not by name
      image_path = img / image_name;
    }
    write_rgb_png(image_path.string(), s.rgb, o.height, o.width);
    write_panoptic_png((pan / png_name).string(), s.panoptic.ids, o.height, o.width);
    pj.images.push_back({i + 10, image_name, o.width, o.height});
    pj.annotations.push_back({i + 10, png_name, s.panoptic.segments});
  }
  write_panoptic_json(json.string(), pj);
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

// An image whose channel 0 encodes the segment id at each pixel, so label/image alignment can be checked.
Sample coded_sample(int64_t h, int64_t w) {
  SynthOptions o = small_opt();
  o.height = h, o.width = w;
  SynthScene s = synth_scene(o, 0, 5);
  Sample smp;
  smp.height = h, smp.width = w, smp.name = "coded";
  smp.gt = s.panoptic;
  smp.image.assign(3 * h * w, 0.f);
  for (int64_t p = 0; p < h * w; ++p) {
    smp.image[p] = smp.gt.ids[p] == 0 ? 0.f : float(smp.gt.ids[p] % 997) / 997.f + 0.01f;
    smp.image[h * w + p] = float(p % w);  // column index, to detect flips
    smp.image[2 * h * w + p] = float(p / w);
  }
  return smp;
}
}  // namespace

TEST_CASE("dataset layouts coco, cityscapes (recursive images), vistas read the same scenes", "[data]") {
  for (std::string layout : {"coco", "cityscapes", "vistas"}) {
    INFO(layout);
    TempDir tmp;
    write_layout(tmp.path, layout);
    DatasetPaths p = resolve_dataset(tmp.path.string(), "val");
    REQUIRE(p.layout == layout);
    PanopticDataset ds(p);
    REQUIRE(ds.size() == 3);
    for (int i = 0; i < 3; ++i) {
      Sample s = ds.load(i);
      SynthScene want = synth_scene(small_opt(), 1, i);
      REQUIRE(s.image_id == i + 10);
      REQUIRE(s.gt.ids == want.panoptic.ids);
      REQUIRE(s.image == normalise_image(want.rgb, want.panoptic.height, want.panoptic.width));
    }
    if (layout == "vistas")
      REQUIRE(resolve_dataset((tmp.path / "validation").string(), "val").layout == "vistas");
    REQUIRE(resolve_dataset(tmp.path.string(), "val", layout).layout == layout);
  }
}

TEST_CASE("dataset errors name the file: no split, missing / corrupt image, missing PNG", "[data]") {
  TempDir tmp;
  write_layout(tmp.path, "coco");
  REQUIRE_THROWS_WITH(resolve_dataset(tmp.path.string(), "train"),
                      Catch::Contains("panoptic_train2017.json"));
  REQUIRE_THROWS_WITH(resolve_dataset((tmp.path / "nope").string(), "val"), Catch::Contains("not a folder"));
  PanopticDataset ds(resolve_dataset(tmp.path.string(), "val"));
  fs::remove(tmp.path / "val2017" / "img0.jpg");
  REQUIRE_THROWS_WITH(ds.load(0), Catch::Contains("img0.jpg") && Catch::Contains("missing"));
  write_bytes(tmp.path / "val2017" / "img1.jpg", "this is not an image");
  REQUIRE_THROWS_WITH(ds.load(1), Catch::Contains("img1.jpg"));
  fs::remove(tmp.path / "annotations" / "panoptic_val2017" / "img2.png");
  REQUIRE_THROWS_WITH(ds.load(2), Catch::Contains("img2.png") && Catch::Contains("missing"));

  TempDir cs;
  write_layout(cs.path, "cityscapes");
  PanopticDataset dc(resolve_dataset(cs.path.string(), "val"));
  fs::remove(cs.path / "leftImg8bit" / "val" / "lindau" / "lindau_000002_000019_leftImg8bit.png");
  // The index was built at construction; the file is gone now: still a clear message.
  REQUIRE_THROWS_WITH(dc.load(2), Catch::Contains("lindau_000002_000019_leftImg8bit.png"));
}

TEST_CASE("augment scale 1 crop 15x13 + flip keeps labels aligned with the image", "[data]") {
  Sample s = coded_sample(21, 26);
  AugmentOptions opt;
  opt.crop_height = 15, opt.crop_width = 13, opt.min_scale = opt.max_scale = 1.0;
  int flips = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    Sample a = augment(s, opt, rng);
    REQUIRE(a.height == 15);
    REQUIRE(a.width == 13);
    const int64_t hw = 15 * 13;
    // Channels 1, 2 give the source pixel; labels and channel 0 must come from that same pixel.
    const bool flipped = a.image[hw + 1] < a.image[hw + 0];
    flips += flipped;
    for (int64_t y = 0; y < 15; ++y)
      for (int64_t x = 0; x < 13; ++x) {
        const int64_t p = y * 13 + x;
        const int64_t sx = int64_t(a.image[hw + p]), sy = int64_t(a.image[2 * hw + p]);
        REQUIRE(a.gt.ids[p] == s.gt.ids[sy * 26 + sx]);
        REQUIRE(a.image[p] == s.image[sy * 26 + sx]);
        if (x > 0) REQUIRE(a.image[hw + p] == a.image[hw + p - 1] + (flipped ? 1 : -1) * -1.f);
      }
  }
  REQUIRE(flips > 0);
  REQUIRE(flips < 20);
}

TEST_CASE("augment crop 40x45 larger than 21x26 pads image with 0 and labels with void", "[data]") {
  Sample s = coded_sample(21, 26);
  AugmentOptions opt;
  opt.crop_height = 40, opt.crop_width = 45, opt.min_scale = opt.max_scale = 1.0, opt.flip = false;
  Rng rng(3);
  Sample a = augment(s, opt, rng);
  int64_t pad = 0, inside = 0;
  for (int64_t p = 0; p < 40 * 45; ++p) {
    bool is_pad =
        a.image[40 * 45 + p] == 0 && a.image[2 * 40 * 45 + p] == 0 && a.image[p] == 0 && a.gt.ids[p] == 0;
    pad += is_pad;
    inside += !is_pad;
  }
  REQUIRE(pad >= 40 * 45 - 21 * 26);
  REQUIRE(inside <= 21 * 26);
  // Segments that survive keep consistent areas.
  for (const auto& sg : a.gt.segments) {
    int64_t area = 0;
    for (int32_t id : a.gt.ids) area += id == sg.id;
    REQUIRE(area == sg.area);
  }
}

TEST_CASE("augment scale 0.5..2.0: labels are nearest samples of the image's source pixels", "[data]") {
  Sample s = coded_sample(21, 26);
  AugmentOptions opt;
  opt.crop_height = 17, opt.crop_width = 19;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Rng rng(seed);
    Sample a = augment(s, opt, rng);
    // Where the label map is constant over a 3x3 neighbourhood the bilinear image must show that segment's
    // code.
    int64_t checked = 0;
    for (int64_t y = 1; y + 1 < 17; ++y)
      for (int64_t x = 1; x + 1 < 19; ++x) {
        int32_t id = a.gt.ids[y * 19 + x];
        bool uniform = true;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) uniform &= a.gt.ids[(y + dy) * 19 + x + dx] == id;
        if (!uniform || id == 0) continue;
        ++checked;
        float want = float(id % 997) / 997.f + 0.01f;
        REQUIRE(std::abs(a.image[y * 19 + x] - want) < 1e-4);
      }
    REQUIRE(checked > 0);
    for (const auto& sg : a.gt.segments) REQUIRE(sg.area > 0);
  }
}

TEST_CASE("loader batch 3 crop 16x16: same batches with 0, 1 and 3 threads; seed changes them", "[data]") {
  TempDir tmp;
  SynthOptions o = small_opt();
  o.num_train = 5, o.num_val = 1;
  write_synth_dataset(tmp.path.string(), o);
  PanopticDataset ds(resolve_dataset(tmp.path.string(), "train"));
  ClassMap classes(ds.categories());
  TargetConfig tc;
  tc.radius = 3;
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.augment.crop_height = lo.augment.crop_width = 16;
  auto run = [&](int threads, uint64_t seed, int64_t first) {
    LoaderOptions l = lo;
    l.threads = threads, l.seed = seed;
    Loader loader(ds, classes, tc, l, first);
    std::vector<std::vector<float>> out;
    for (int i = 0; i < 4; ++i) {
      Batch b = loader.next();
      REQUIRE(b.step == first + i);
      REQUIRE(b.images.shape() == Shape{3, 3, 16, 16});
      out.push_back(b.images.to_vector<float>());
    }
    return out;
  };
  auto a = run(0, 1, 0), b = run(1, 1, 0), c = run(3, 1, 0), d = run(3, 2, 0), e = run(2, 1, 2);
  REQUIRE(a == b);
  REQUIRE(a == c);
  REQUIRE(a != d);
  REQUIRE(e[0] == a[2]);  // starting at step 2 (a resumed run) continues the same stream
  REQUIRE(e[1] == a[3]);
}

TEST_CASE("loader: an error in a worker reaches next() with the file name", "[data]") {
  TempDir tmp;
  SynthOptions o = small_opt();
  o.num_train = 2, o.num_val = 1;
  write_synth_dataset(tmp.path.string(), o);
  PanopticDataset ds(resolve_dataset(tmp.path.string(), "train"));
  fs::remove(tmp.path / "images" / "train" / "train_000001.png");
  LoaderOptions lo;
  lo.batch_size = 2, lo.threads = 2;
  lo.augment.crop_height = lo.augment.crop_width = 16;
  Loader loader(ds, ClassMap(ds.categories()), TargetConfig{}, lo);
  REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("train_000001.png"));
}
