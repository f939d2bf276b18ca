// COCO panoptic file I/O: JSON round trip, id PNG round trip, load_panoptic validation, RGB
// reading of corrupt files, and that every error names the file and the entry.
#include <stb_image_write.h>  // declarations only (stbi_write_force_png_filter); the library implements it
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/temp_dir.h"
#include "core/error.h"
#include "parser/panoptic.h"

namespace fs = std::filesystem;
using namespace dl;

namespace {

using dl::testing::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The message of the dl::Error thrown by fn, or "" when nothing was thrown.
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const dl::Error& e) {
    return e.what();
  }
  return "";
}

PanopticJson sample_json() {
  PanopticJson pj;
  pj.categories = {{1, "person", true, {220, 20, 60}}, {7, "road", false, {128, 64, 128}}};
  pj.images = {{42, "img42.jpg", 5, 3}};
  PanopticAnnotation a;
  a.image_id = 42;
  a.file_name = "img42.png";
  a.segments = {{0x010203, 1, false, 4, {0, 0, 2, 2}}, {70000, 7, true, 6, {2, 0, 3, 2}}};
  pj.annotations = {a};
  return pj;
}

}  // namespace

TEST_CASE("panoptic json round trip 1 image 2 segments", "[panoptic_io]") {
  TempDir d;
  const std::string p = d / "pan.json";
  PanopticJson pj = sample_json();
  write_panoptic_json(p, pj);
  PanopticJson r = read_panoptic_json(p);
  REQUIRE(r.categories.size() == 2);
  CHECK(r.categories[0].name == "person");
  CHECK(r.categories[0].isthing);
  CHECK(!r.categories[1].isthing);
  CHECK(r.categories[1].color == std::array<uint8_t, 3>{128, 64, 128});
  REQUIRE(r.images.size() == 1);
  CHECK(r.images[0].width == 5);
  CHECK(r.images[0].height == 3);
  REQUIRE(r.annotations.size() == 1);
  const auto& a = r.annotations[0];
  CHECK(a.image_id == 42);
  CHECK(a.file_name == "img42.png");
  REQUIRE(a.segments.size() == 2);
  CHECK(a.segments[0].id == 0x010203);
  CHECK(a.segments[1].iscrowd);
  CHECK(a.segments[1].bbox == std::array<int64_t, 4>{2, 0, 3, 2});
  // No temporary file is left behind.
  int files = 0;
  for (auto& e : fs::directory_iterator(d.path)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("panoptic json errors name the file and the entry", "[panoptic_io]") {
  TempDir d;
  const std::string p = d / "bad.json";
  auto err = [&](const std::string& text) {
    write_text(p, text);
    return error_of([&] { read_panoptic_json(p); });
  };
  const std::string cats =
      R"("categories":[{"id":1,"name":"a","isthing":1},{"id":2,"name":"b","isthing":0}])";

  std::string e = err("{\"annotations\": [");
  CHECK_THAT(e, Catch::Contains(p) && Catch::Contains("malformed JSON"));

  e = err("{" + cats + R"(,"annotations":[{"image_id":1,"file_name":"1.png","segments_info":[]},
      {"image_id":2,"file_name":"2.png","segments_info":[{"id":5,"category_id":1},{"id":6}]}]})");
  CHECK_THAT(e, Catch::Contains(p) && Catch::Contains("annotations[1]") &&
                    Catch::Contains("segments_info[1]") && Catch::Contains("missing 'category_id'"));

  e = err(
      "{" + cats +
      R"(,"annotations":[{"image_id":3,"file_name":"3.png","segments_info":[{"id":5,"category_id":1},{"id":5,"category_id":2}]}]})");
  CHECK_THAT(e, Catch::Contains("annotations[0]") && Catch::Contains("segments_info[1]") &&
                    Catch::Contains("duplicate segment id 5"));

  e = err(
      "{" + cats +
      R"(,"annotations":[{"image_id":3,"file_name":"3.png","segments_info":[{"id":5,"category_id":9}]}]})");
  CHECK_THAT(e, Catch::Contains("segments_info[0]") && Catch::Contains("unknown category_id 9"));

  e = err(R"({"annotations":[{"image_id":3,"segments_info":[]}]})");
  CHECK_THAT(e, Catch::Contains("annotations[0]") && Catch::Contains("missing 'file_name'"));

  e = err(
      R"({"annotations":[{"image_id":3,"file_name":"3.png","segments_info":[{"id":-2,"category_id":1}]}]})");
  CHECK_THAT(e, Catch::Contains("segments_info[0]") && Catch::Contains("out of range"));

  e = err(
      R"({"annotations":[{"image_id":3,"file_name":"3.png","segments_info":[{"id":"x","category_id":1}]}]})");
  CHECK_THAT(e, Catch::Contains("'id' must be an integer"));

  e = err(
      R"({"annotations":[{"image_id":3,"file_name":"a.png","segments_info":[]},{"image_id":3,"file_name":"b.png","segments_info":[]}]})");
  CHECK_THAT(e, Catch::Contains("annotations[1]") && Catch::Contains("second annotation for image_id 3"));

  e = err(
      R"({"images":[{"id":1,"file_name":"1.jpg","width":4,"height":4}],"annotations":[{"image_id":3,"file_name":"3.png","segments_info":[]}]})");
  CHECK_THAT(e, Catch::Contains("image_id 3 is not in 'images'"));

  e = err(R"({"images":[]})");
  CHECK_THAT(e, Catch::Contains("missing 'annotations'"));

  e = error_of([&] { read_panoptic_json(d / "nope.json"); });
  CHECK_THAT(e, Catch::Contains("nope.json") && Catch::Contains("cannot open"));
}

TEST_CASE("panoptic png round trip 3x5 with 24-bit ids", "[panoptic_io]") {
  TempDir d;
  const std::string p = d / "ids.png";
  std::vector<int32_t> ids = {0, 1, 255, 256, 65535, 65536, 0xFFFFFF, 0x010203, 0, 7, 7, 7, 12345, 0, 1};
  write_panoptic_png(p, ids, 3, 5);
  int64_t h = 0, w = 0;
  auto back = read_panoptic_png(p, h, w);
  CHECK(h == 3);
  CHECK(w == 5);
  CHECK(back == ids);
  // id = R + 256 G + 256^2 B: the RGB reader sees the channels.
  auto rgb = read_rgb(p, h, w);
  CHECK(rgb[7 * 3 + 0] == 3);
  CHECK(rgb[7 * 3 + 1] == 2);
  CHECK(rgb[7 * 3 + 2] == 1);

  std::string e = error_of([&] { write_panoptic_png(p, {1 << 24}, 1, 1); });
  CHECK_THAT(e, Catch::Contains("does not fit in 24 bits"));
  e = error_of([&] { write_panoptic_png(p, {1, 2}, 1, 1); });
  CHECK_THAT(e, Catch::Contains("2 ids for a 1x1"));
  // The failed writes left the earlier file intact.
  back = read_panoptic_png(p, h, w);
  CHECK(back == ids);
}

TEST_CASE("load_panoptic validates ids, categories and size", "[panoptic_io]") {
  TempDir d;
  const std::string p = d / "42.png";
  // 3x5: a 2x2 person (id 0x010203), a road crowd region (id 70000), void elsewhere.
  const int32_t A = 0x010203, B = 70000;
  std::vector<int32_t> ids = {A, A, B, B, B,  //
                              A, A, B, B, B,  //
                              0, 0, 0, 0, 0};
  write_panoptic_png(p, ids, 3, 5);
  PanopticJson pj = sample_json();
  PanopticAnnotation ann = pj.annotations[0];

  PanopticMap m = load_panoptic(p, ann, pj.categories, 3, 5);
  CHECK(m.height == 3);
  CHECK(m.width == 5);
  CHECK(m.ids == ids);
  REQUIRE(m.segments.size() == 2);
  CHECK(m.find(A)->area == 4);
  CHECK(m.find(B)->area == 6);
  CHECK(m.find(B)->iscrowd);

  // A listed segment absent from the PNG is kept with area 0.
  PanopticAnnotation extra = ann;
  extra.segments.push_back({99, 1, false, 10, {}});
  m = load_panoptic(p, extra, pj.categories);
  CHECK(m.find(99)->area == 0);

  // An id in the PNG that is not in segments_info.
  PanopticAnnotation missing = ann;
  missing.segments.pop_back();
  std::string e = error_of([&] { load_panoptic(p, missing, pj.categories); });
  CHECK_THAT(e, Catch::Contains("42.png") && Catch::Contains("image_id 42") &&
                    Catch::Contains("segment id 70000") && Catch::Contains("not in segments_info"));

  PanopticAnnotation dup = ann;
  dup.segments.push_back(dup.segments[0]);
  e = error_of([&] { load_panoptic(p, dup, pj.categories); });
  CHECK_THAT(e, Catch::Contains("segments_info[2]") && Catch::Contains("duplicate segment id"));

  PanopticAnnotation unk = ann;
  unk.segments[1].category_id = 5;
  e = error_of([&] { load_panoptic(p, unk, pj.categories); });
  CHECK_THAT(e, Catch::Contains("segments_info[1]") && Catch::Contains("unknown category_id 5"));
  // Without categories nothing is checked against them.
  CHECK_NOTHROW(load_panoptic(p, unk, {}));

  e = error_of([&] { load_panoptic(p, ann, pj.categories, 4, 5); });
  CHECK_THAT(e, Catch::Contains("PNG is 5x3") && Catch::Contains("image is 5x4"));

  e = error_of([&] { load_panoptic(d / "absent.png", ann, pj.categories); });
  CHECK_THAT(e, Catch::Contains("absent.png") && Catch::Contains("cannot open"));
}

TEST_CASE("rgb reading rejects corrupt and truncated files with the reason", "[panoptic_io]") {
  TempDir d;
  const std::string good = d / "rgb.png";
  std::vector<uint8_t> rgb(7 * 9 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 37 + 11);
  write_rgb_png(good, rgb, 7, 9);
  int64_t h = 0, w = 0;
  CHECK(read_rgb(good, h, w) == rgb);
  CHECK(h == 7);
  CHECK(w == 9);

  const std::string bytes = read_text(good);
  const std::string trunc = d / "trunc.png";
  write_text(trunc, bytes.substr(0, bytes.size() / 2));
  std::string e = error_of([&] { read_rgb(trunc, h, w); });
  CHECK_THAT(e, Catch::Contains("trunc.png") && Catch::Contains("cannot decode image ("));

  const std::string junk = d / "junk.jpg";
  write_text(junk, "this is not an image at all");
  e = error_of([&] { read_rgb(junk, h, w); });
  CHECK_THAT(e, Catch::Contains("junk.jpg") && Catch::Contains("cannot decode image ("));
  INFO(e);

  const std::string empty = d / "empty.png";
  write_text(empty, "");
  e = error_of([&] { read_panoptic_png(empty, h, w); });
  CHECK_THAT(e, Catch::Contains("empty.png") && Catch::Contains("empty file"));

  e = error_of([&] { write_rgb_png(good, rgb, 8, 9); });
  CHECK_THAT(e, Catch::Contains("bytes for a 8x9"));
}

TEST_CASE("write_file_atomic replaces the whole file", "[panoptic_io]") {
  TempDir d;
  const std::string p = d / "f.txt";
  write_file_atomic(p, "first version, longer");
  write_file_atomic(p, "second");
  CHECK(read_text(p) == "second");
  std::string e = error_of([&] { write_file_atomic(d / "no/such/dir/f.txt", "x"); });
  CHECK_THAT(e, Catch::Contains("no/such/dir/f.txt") && Catch::Contains("cannot create"));
}

TEST_CASE("panoptic png every PNG row filter 0..4, 37x53 flat regions and noise", "[panoptic_io]") {
  TempDir d;
  const int64_t h = 37, w = 53;
  std::vector<int32_t> ids(h * w);
  uint32_t state = 12345;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      state = state * 1664525u + 1013904223u;
      int32_t v = (x < 20 && y < 20) ? 0x00A0B0 : (x > 40 ? int32_t(state >> 8) : 0xFF01FE + int32_t(y / 9));
      if (y % 11 == 5 && x % 7 == 3) v = 0;
      ids[y * w + x] = v & 0xFFFFFF;
    }
  std::vector<uint8_t> rgb(ids.size() * 3);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int k = 0; k < 3; ++k) rgb[3 * i + k] = static_cast<uint8_t>(ids[i] >> (8 * k));
  for (int f = -1; f <= 4; ++f) {
    INFO("filter " << f);
    stbi_write_force_png_filter = f;
    write_panoptic_png(d / "f.png", ids, h, w);
    write_rgb_png(d / "g.png", rgb, h, w);
    stbi_write_force_png_filter = -1;
    int64_t hh = 0, ww = 0;
    std::vector<int32_t> back = read_panoptic_png(d / "f.png", hh, ww);
    REQUIRE(hh == h);
    REQUIRE(ww == w);
    size_t bad = 0;
    while (bad < ids.size() && back[bad] == ids[bad]) ++bad;
    INFO("first mismatch at pixel " << bad);
    CHECK(bad == ids.size());
    CHECK(read_rgb(d / "g.png", hh, ww) == rgb);
  }
}

TEST_CASE("panoptic png with corrupt compressed data is rejected", "[panoptic_io]") {
  TempDir d;
  std::vector<int32_t> ids(64 * 64);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 2654435761u) & 0xFFFFFF;
  write_panoptic_png(d / "c.png", ids, 64, 64);
  std::string bytes = read_text(d / "c.png");
  // Flip bytes in the middle of the IDAT payload.
  for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 40; ++i)
    bytes[i] = static_cast<char>(bytes[i] ^ 0x5A);
  write_text(d / "c.png", bytes);
  int64_t h = 0, w = 0;
  std::string e = error_of([&] { read_panoptic_png(d / "c.png", h, w); });
  CHECK_THAT(e, Catch::Contains("c.png") && Catch::Contains("cannot decode panoptic PNG ("));
}
