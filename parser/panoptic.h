// The panoptic vocabulary shared by targets, instance prediction, metrics and the CLI:
// categories, segments, in-memory panoptic label maps, and the COCO panoptic file format
// (a JSON of images/annotations/categories + one PNG per image with id = R + 256 G + 256^2 B).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dl {

struct Category {
  int32_t id = 0;
  std::string name;
  bool isthing = false;
  std::array<uint8_t, 3> color{0, 0, 0};
};

struct SegmentInfo {
  int32_t id = 0;           // panoptic id as stored in the PNG (0 = void)
  int32_t category_id = 0;
  bool iscrowd = false;
  int64_t area = 0;
  std::array<int64_t, 4> bbox{0, 0, 0, 0};  // x, y, w, h (COCO)
};

// One image's panoptic segmentation in memory: a segment id per pixel (row-major H x W),
// 0 = void, plus the segments' descriptions.
struct PanopticMap {
  int64_t height = 0, width = 0;
  std::vector<int32_t> ids;
  std::vector<SegmentInfo> segments;
  const SegmentInfo* find(int32_t id) const {
    for (const auto& s : segments)
      if (s.id == id) return &s;
    return nullptr;
  }
};

struct ImageInfo {
  int64_t id = 0;
  std::string file_name;  // the RGB image, relative to the image folder
  int64_t width = 0, height = 0;
};

struct PanopticAnnotation {
  int64_t image_id = 0;
  std::string file_name;  // the panoptic PNG, relative to the panoptic folder
  std::vector<SegmentInfo> segments;
};

// The JSON of a COCO panoptic dataset (or of a set of predictions, which has the same layout;
// predictions may omit images/categories).
struct PanopticJson {
  std::vector<ImageInfo> images;
  std::vector<PanopticAnnotation> annotations;
  std::vector<Category> categories;
  const Category* category(int32_t id) const {
    for (const auto& c : categories)
      if (c.id == id) return &c;
    return nullptr;
  }
  const ImageInfo* image(int64_t id) const {
    for (const auto& i : images)
      if (i.id == id) return &i;
    return nullptr;
  }
};

// Reading checks the structure and reports the file and the offending entry on any problem.
PanopticJson read_panoptic_json(const std::string& path);
void write_panoptic_json(const std::string& path, const PanopticJson& json);  // atomic (tmp + rename)

// PNG <-> segment ids (id = R + 256 G + 256^2 B). Errors name the file.
std::vector<int32_t> read_panoptic_png(const std::string& path, int64_t& height, int64_t& width);
void write_panoptic_png(const std::string& path, const std::vector<int32_t>& ids, int64_t height,
                        int64_t width);  // atomic

// Loads the PNG of one annotation and checks it against its segments_info: every id in the PNG
// must be listed (or be 0), ids unique, categories known (when `categories` is non-empty).
PanopticMap load_panoptic(const std::string& png_path, const PanopticAnnotation& ann,
                          const std::vector<Category>& categories);
// The same, and the PNG must be expect_height x expect_width (when both are > 0). Segment areas
// in the result are recounted from the PNG; listed segments absent from the PNG get area 0.
PanopticMap load_panoptic(const std::string& png_path, const PanopticAnnotation& ann,
                          const std::vector<Category>& categories, int64_t expect_height, int64_t expect_width);

// The same two, refilling existing buffers (no fresh allocation per image in evaluation loops).
void read_panoptic_png(const std::string& path, std::vector<int32_t>& ids, int64_t& height, int64_t& width);
void load_panoptic_into(PanopticMap& out, const std::string& png_path, const PanopticAnnotation& ann,
                        const std::vector<Category>& categories, int64_t expect_height = 0, int64_t expect_width = 0);

// RGB images (JPEG/PNG through stb_image): HWC uint8. Errors name the file.
std::vector<uint8_t> read_rgb(const std::string& path, int64_t& height, int64_t& width);
void write_rgb_png(const std::string& path, const std::vector<uint8_t>& rgb, int64_t height, int64_t width);  // atomic

// Writes `data` to `path` through a temporary file and a rename, so a reader never sees half a file.
void write_file_atomic(const std::string& path, const std::string& data);

}  // namespace dl
