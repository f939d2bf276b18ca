// Output writer for predictions (COCO panoptic PNG + segments_info, colour overlay). The one
// decision: instance colours are the category colour moved by a hash of the segment id, so the
// same prediction always gets the same colours and neighbours of one class stay distinguishable.
#include "parser/panoptic_output.h"

#include <algorithm>
#include <unordered_map>

#include "core/error.h"

namespace dl {

PanopticAnnotation write_panoptic_prediction(const std::string& png_path, const PanopticMap& pred, int64_t image_id) {
  DL_CHECK(int64_t(pred.ids.size()) == pred.height * pred.width,
           "write_panoptic_prediction: " << pred.ids.size() << " ids for " << pred.height << "x" << pred.width << " ("
                                         << png_path << ")");
  for (int32_t id : pred.ids)
    DL_CHECK(id == 0 || pred.find(id), "write_panoptic_prediction: id " << id << " in the map has no segment ("
                                                                         << png_path << ")");
  write_panoptic_png(png_path, pred.ids, pred.height, pred.width);
  PanopticAnnotation a;
  a.image_id = image_id;
  const size_t slash = png_path.find_last_of('/');
  a.file_name = slash == std::string::npos ? png_path : png_path.substr(slash + 1);
  a.segments = pred.segments;
  return a;
}

void write_predictions_json(const std::string& path, const std::vector<PanopticAnnotation>& annotations,
                            const std::vector<Category>& categories, const std::vector<ImageInfo>& images) {
  PanopticJson j;
  j.annotations = annotations;
  j.categories = categories;
  j.images = images;
  write_panoptic_json(path, j);
}

namespace {
uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
}  // namespace

std::vector<uint8_t> panoptic_overlay(const std::vector<uint8_t>& rgb, const PanopticMap& pred,
                                      const std::vector<Category>& categories) {
  const int64_t h = pred.height, w = pred.width;
  DL_CHECK(int64_t(pred.ids.size()) == h * w, "panoptic_overlay: " << pred.ids.size() << " ids for " << h << "x" << w);
  DL_CHECK(int64_t(rgb.size()) == h * w * 3,
           "panoptic_overlay: image has " << rgb.size() << " bytes, want " << h << "x" << w << "x3");
  std::unordered_map<int32_t, const Category*> cat;
  for (const auto& c : categories) cat[c.id] = &c;
  struct Look {
    std::array<uint8_t, 3> color;
    bool thing;
  };
  std::unordered_map<int32_t, Look> look;
  for (const auto& s : pred.segments) {
    auto it = cat.find(s.category_id);
    DL_CHECK(it != cat.end(), "panoptic_overlay: segment " << s.id << " has unknown category id " << s.category_id);
    Look l{it->second->color, it->second->isthing};
    if (l.thing) {
      const uint32_t r = mix(uint32_t(s.id) * 2654435761U + 1);
      for (int c = 0; c < 3; ++c) {
        const int jitter = int((r >> (8 * c)) & 0xff) % 81 - 40;  // +-40 per channel
        l.color[c] = uint8_t(std::clamp(int(l.color[c]) + jitter, 0, 255));
      }
    }
    look[s.id] = l;
  }
  std::vector<uint8_t> out(rgb);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      const int32_t id = pred.ids[i];
      if (id == 0) continue;
      auto it = look.find(id);
      DL_CHECK(it != look.end(), "panoptic_overlay: id " << id << " at (" << y << ", " << x << ") has no segment");
      const Look& l = it->second;
      bool edge = false;
      if (l.thing)
        edge = (y > 0 && pred.ids[i - w] != id) || (y + 1 < h && pred.ids[i + w] != id) ||
               (x > 0 && pred.ids[i - 1] != id) || (x + 1 < w && pred.ids[i + 1] != id);
      for (int c = 0; c < 3; ++c)
        out[3 * i + c] = edge ? 255 : uint8_t((int(rgb[3 * i + c]) + int(l.color[c]) + 1) / 2);
    }
  return out;
}

void write_panoptic_overlay(const std::string& png_path, const std::vector<uint8_t>& rgb, const PanopticMap& pred,
                            const std::vector<Category>& categories) {
  write_rgb_png(png_path, panoptic_overlay(rgb, pred, categories), pred.height, pred.width);
}

}  // namespace dl
