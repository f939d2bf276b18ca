// Synthetic scenes: determinism by seed, segments_info consistent with the id map (areas, boxes,
// every id listed), categories, and a written dataset read back through the dataset reader.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <set>

#include "tests/temp_dir.h"
#include "parser/data.h"
#include "parser/synth.h"

namespace fs = std::filesystem;
using namespace dl;

namespace {
using dl::testing::TempDir;

void check_consistent(const SynthScene& s) {
  const auto& m = s.panoptic;
  REQUIRE(m.ids.size() == size_t(m.height * m.width));
  REQUIRE(s.rgb.size() == size_t(m.height * m.width * 3));
  std::set<int32_t> listed;
  for (const auto& sg : m.segments) {
    REQUIRE(listed.insert(sg.id).second);  // unique
    int64_t area = 0, y0 = m.height, x0 = m.width, y1 = -1, x1 = -1;
    for (int64_t y = 0; y < m.height; ++y)
      for (int64_t x = 0; x < m.width; ++x)
        if (m.ids[y * m.width + x] == sg.id) {
          ++area;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
        }
    INFO("segment " << sg.id);
    REQUIRE(area == sg.area);
    REQUIRE(area > 0);
    REQUIRE(sg.bbox == std::array<int64_t, 4>{x0, y0, x1 - x0 + 1, y1 - y0 + 1});
  }
  for (int32_t id : m.ids)
    if (id) REQUIRE(listed.count(id));
}
}  // namespace

TEST_CASE("synth categories: 3 things + 3 stuff, distinct colours", "[synth]") {
  auto cats = synth_categories();
  int things = 0;
  std::set<std::array<uint8_t, 3>> colours;
  for (const auto& c : cats) things += c.isthing, colours.insert(c.color);
  REQUIRE(cats.size() == 6);
  REQUIRE(things == 3);
  REQUIRE(colours.size() == 6);
}

TEST_CASE("synth scene 97x97 full preset: deterministic and consistent", "[synth]") {
  SynthOptions opt = SynthOptions::preset("full");
  bool saw_crowd = false, saw_void = false, saw_overlapping_class = false;
  for (int64_t i = 0; i < 40; ++i) {
    SynthScene a = synth_scene(opt, 0, i), b = synth_scene(opt, 0, i);
    REQUIRE(a.rgb == b.rgb);
    REQUIRE(a.panoptic.ids == b.panoptic.ids);
    check_consistent(a);
    std::map<int32_t, int> per_class;
    for (const auto& sg : a.panoptic.segments) {
      saw_crowd |= sg.iscrowd;
      if (!sg.iscrowd && sg.category_id <= 3) saw_overlapping_class |= ++per_class[sg.category_id] > 1;
    }
    for (int32_t id : a.panoptic.ids) saw_void |= id == 0;
  }
  REQUIRE(saw_crowd);
  REQUIRE(saw_void);
  REQUIRE(saw_overlapping_class);
  // Splits and seeds give different scenes.
  REQUIRE(synth_scene(opt, 0, 3).rgb != synth_scene(opt, 1, 3).rgb);
  SynthOptions o2 = opt;
  o2.seed = 2;
  REQUIRE(synth_scene(opt, 0, 3).rgb != synth_scene(o2, 0, 3).rgb);
}

TEST_CASE("synth scene odd sizes 9x23 and 33x17 easy preset", "[synth]") {
  for (auto hw : {std::pair<int64_t, int64_t>{9, 23}, {33, 17}}) {
    SynthOptions opt = SynthOptions::preset("easy");
    opt.height = hw.first, opt.width = hw.second;
    for (int64_t i = 0; i < 5; ++i) check_consistent(synth_scene(opt, 0, i));
  }
  SynthOptions bad;
  bad.height = 4;
  REQUIRE_THROWS_WITH(synth_scene(bad, 0, 0), Catch::Contains("too small"));
  REQUIRE_THROWS_WITH(SynthOptions::preset("hard"), Catch::Contains("unknown preset"));
}

TEST_CASE("synth dataset 4+2 images 31x37 written and read back", "[synth]") {
  TempDir tmp;
  SynthOptions opt;
  opt.height = 31, opt.width = 37, opt.num_train = 4, opt.num_val = 2, opt.seed = 7;
  write_synth_dataset(tmp.path.string(), opt);
  for (const char* split : {"train", "val"}) {
    DatasetPaths p = resolve_dataset(tmp.path.string(), split);
    REQUIRE(p.layout == "synth");
    PanopticDataset ds(p);
    REQUIRE(ds.size() == (std::string(split) == "train" ? 4 : 2));
    REQUIRE(ds.categories().size() == 6);
    for (int64_t i = 0; i < ds.size(); ++i) {
      Sample s = ds.load(i);
      SynthScene want = synth_scene(opt, std::string(split) == "train" ? 0 : 1, i);
      REQUIRE(s.gt.ids == want.panoptic.ids);
      REQUIRE(normalise_image(want.rgb, 31, 37) == s.image);
    }
  }
}
