// COCO panoptic file I/O: the JSON (images / annotations / categories), the id PNGs
// (id = R + 256 G + 256^2 B) and RGB images. Every error names the file and the entry; every
// write goes through a temporary file and a rename. This is the one translation unit that
// compiles the stb_image / stb_image_write implementations.
#include "parser/panoptic.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb_image.h>
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace dl {

using nlohmann::json;

namespace {

constexpr int32_t kMaxPanopticId = (1 << 24) - 1;  // three 8-bit channels

std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  DL_CHECK(f, path << ": cannot open (" << std::strerror(errno) << ")");
  std::string data;
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0 && st.st_size > 0) data.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, got);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  DL_CHECK(!bad, path << ": read error");
  return data;
}

// A small accessor that knows where it is ("annotations[3].segments_info[1]") for messages.
struct Ctx {
  const std::string& file;
  std::string where;
  Ctx sub(const std::string& key) const { return {file, where.empty() ? key : where + "." + key}; }
  Ctx at(size_t i) const { return {file, where + "[" + std::to_string(i) + "]"}; }
  [[noreturn]] void fail(const std::string& msg) const {
    DL_FAIL(file << ": " << (where.empty() ? std::string() : where + ": ") << msg);
  }
};

const json& need(const Ctx& c, const json& obj, const char* key) {
  if (!obj.is_object()) c.fail("expected an object, got " + std::string(obj.type_name()));
  auto it = obj.find(key);
  if (it == obj.end()) c.fail(std::string("missing '") + key + "'");
  return *it;
}

int64_t get_int(const Ctx& c, const json& obj, const char* key, const int64_t* def = nullptr) {
  if (def && (!obj.is_object() || !obj.contains(key))) return *def;
  const json& v = need(c, obj, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;  // "iscrowd": true/false in some exports
  c.fail(std::string("'") + key + "' must be an integer, got " + v.dump());
}

std::string get_str(const Ctx& c, const json& obj, const char* key, const std::string* def = nullptr) {
  if (def && (!obj.is_object() || !obj.contains(key))) return *def;
  const json& v = need(c, obj, key);
  if (!v.is_string()) c.fail(std::string("'") + key + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

const json* get_array(const Ctx& c, const json& obj, const char* key, bool required) {
  if (!obj.is_object()) c.fail("expected an object, got " + std::string(obj.type_name()));
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) c.fail(std::string("missing '") + key + "'");
    return nullptr;
  }
  if (!it->is_array()) c.fail(std::string("'") + key + "' must be an array, got " + it->type_name());
  return &*it;
}

SegmentInfo parse_segment(const Ctx& c, const json& s) {
  static const int64_t zero = 0;
  SegmentInfo si;
  int64_t id = get_int(c, s, "id");
  if (id <= 0 || id > kMaxPanopticId)
    c.fail("'id' " + std::to_string(id) + " out of range (1.." + std::to_string(kMaxPanopticId) + ")");
  si.id = static_cast<int32_t>(id);
  int64_t cat = get_int(c, s, "category_id");
  if (cat < INT32_MIN || cat > INT32_MAX) c.fail("'category_id' " + std::to_string(cat) + " out of range");
  si.category_id = static_cast<int32_t>(cat);
  int64_t crowd = get_int(c, s, "iscrowd", &zero);
  if (crowd != 0 && crowd != 1) c.fail("'iscrowd' must be 0 or 1, got " + std::to_string(crowd));
  si.iscrowd = crowd == 1;
  si.area = get_int(c, s, "area", &zero);
  if (s.contains("bbox")) {
    const json& b = s["bbox"];
    if (!b.is_array() || b.size() != 4) c.fail("'bbox' must be [x, y, w, h], got " + b.dump());
    for (size_t k = 0; k < 4; ++k) {
      if (!b[k].is_number()) c.fail("'bbox' must hold numbers, got " + b.dump());
      si.bbox[k] = static_cast<int64_t>(b[k].get<double>());
    }
  }
  return si;
}

std::string ann_where(size_t i, const PanopticAnnotation& a) {
  return "annotations[" + std::to_string(i) + "] (image_id " + std::to_string(a.image_id) + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// JSON

PanopticJson read_panoptic_json(const std::string& path) {
  const std::string text = read_file(path);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    DL_FAIL(path << ": malformed JSON: " << e.what());
  }
  Ctx top{path, ""};
  if (!root.is_object()) top.fail("top level must be an object, got " + std::string(root.type_name()));
  PanopticJson out;

  if (const json* cats = get_array(top, root, "categories", false)) {
    std::unordered_set<int32_t> seen;
    for (size_t i = 0; i < cats->size(); ++i) {
      Ctx c = top.sub("categories").at(i);
      const json& j = (*cats)[i];
      Category cat;
      int64_t id = get_int(c, j, "id");
      if (id < INT32_MIN || id > INT32_MAX) c.fail("'id' " + std::to_string(id) + " out of range");
      cat.id = static_cast<int32_t>(id);
      if (!seen.insert(cat.id).second) c.fail("duplicate category id " + std::to_string(cat.id));
      static const std::string empty;
      cat.name = get_str(c, j, "name", &empty);
      static const int64_t zero = 0;
      int64_t thing = get_int(c, j, "isthing", &zero);
      if (thing != 0 && thing != 1) c.fail("'isthing' must be 0 or 1, got " + std::to_string(thing));
      cat.isthing = thing == 1;
      if (j.contains("color")) {
        const json& col = j["color"];
        if (!col.is_array() || col.size() != 3) c.fail("'color' must be [r, g, b], got " + col.dump());
        for (size_t k = 0; k < 3; ++k) {
          if (!col[k].is_number_integer() || col[k].get<int64_t>() < 0 || col[k].get<int64_t>() > 255)
            c.fail("'color' must hold integers 0..255, got " + col.dump());
          cat.color[k] = static_cast<uint8_t>(col[k].get<int64_t>());
        }
      }
      out.categories.push_back(std::move(cat));
    }
  }

  if (const json* imgs = get_array(top, root, "images", false)) {
    std::unordered_set<int64_t> seen;
    for (size_t i = 0; i < imgs->size(); ++i) {
      Ctx c = top.sub("images").at(i);
      const json& j = (*imgs)[i];
      ImageInfo im;
      im.id = get_int(c, j, "id");
      if (!seen.insert(im.id).second) c.fail("duplicate image id " + std::to_string(im.id));
      static const std::string empty;
      static const int64_t zero = 0;
      im.file_name = get_str(c, j, "file_name", &empty);
      im.width = get_int(c, j, "width", &zero);
      im.height = get_int(c, j, "height", &zero);
      if (im.width < 0 || im.height < 0)
        c.fail("negative size " + std::to_string(im.width) + "x" + std::to_string(im.height));
      out.images.push_back(std::move(im));
    }
  }

  const json* anns = get_array(top, root, "annotations", true);
  std::unordered_set<int64_t> seen_images;
  for (size_t i = 0; i < anns->size(); ++i) {
    Ctx c = top.sub("annotations").at(i);
    const json& j = (*anns)[i];
    PanopticAnnotation a;
    a.image_id = get_int(c, j, "image_id");
    c.where = ann_where(i, a);
    if (!seen_images.insert(a.image_id).second)
      c.fail("second annotation for image_id " + std::to_string(a.image_id));
    a.file_name = get_str(c, j, "file_name");
    if (a.file_name.empty()) c.fail("empty 'file_name'");
    const json* segs = get_array(c, j, "segments_info", true);
    std::unordered_set<int32_t> ids;
    for (size_t k = 0; k < segs->size(); ++k) {
      Ctx cs = c.sub("segments_info").at(k);
      SegmentInfo s = parse_segment(cs, (*segs)[k]);
      if (!ids.insert(s.id).second) cs.fail("duplicate segment id " + std::to_string(s.id));
      if (!out.categories.empty() && !out.category(s.category_id))
        cs.fail("unknown category_id " + std::to_string(s.category_id));
      a.segments.push_back(s);
    }
    if (!out.images.empty() && !out.image(a.image_id))
      c.fail("image_id " + std::to_string(a.image_id) + " is not in 'images'");
    out.annotations.push_back(std::move(a));
  }
  return out;
}

void write_panoptic_json(const std::string& path, const PanopticJson& pj) {
  json root = json::object();
  json imgs = json::array();
  for (const auto& im : pj.images)
    imgs.push_back({{"id", im.id}, {"file_name", im.file_name}, {"width", im.width}, {"height", im.height}});
  json anns = json::array();
  for (const auto& a : pj.annotations) {
    json segs = json::array();
    for (const auto& s : a.segments)
      segs.push_back({{"id", s.id},
                      {"category_id", s.category_id},
                      {"iscrowd", s.iscrowd ? 1 : 0},
                      {"area", s.area},
                      {"bbox", {s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3]}}});
    anns.push_back({{"image_id", a.image_id}, {"file_name", a.file_name}, {"segments_info", segs}});
  }
  json cats = json::array();
  for (const auto& c : pj.categories)
    cats.push_back({{"id", c.id},
                    {"name", c.name},
                    {"isthing", c.isthing ? 1 : 0},
                    {"color", {c.color[0], c.color[1], c.color[2]}}});
  root["images"] = std::move(imgs);
  root["annotations"] = std::move(anns);
  root["categories"] = std::move(cats);
  write_file_atomic(path, root.dump(1) + "\n");
}

// ---------------------------------------------------------------------------------------------
// Images

namespace {

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Three bytes packed in a uint32 (R | G << 8 | B << 16), added lane by lane modulo 256.
inline uint32_t add3(uint32_t a, uint32_t b) {
  return ((a & 0x7f7f7fu) + (b & 0x7f7f7fu)) ^ ((a ^ b) & 0x808080u);
}

inline int paeth(int a, int b, int c) {
  const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
  return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

// Row residual bytes -> packed pixels (the id layout). 16-byte loads shuffled into 4 pixels
// where the compiler offers vector shuffles; a 4-byte load per pixel otherwise.
inline void unpack_row(const uint8_t* cur, uint32_t w, uint32_t* out) {
  uint32_t x = 0;
#if defined(__GNUC__) && !defined(__clang__)
  typedef uint8_t v16 __attribute__((vector_size(16)));
  const v16 zero = {};
  const v16 mask = {0, 1, 2, 16, 3, 4, 5, 16, 6, 7, 8, 16, 9, 10, 11, 16};
  for (; 3 * size_t(x) + 16 <= 3 * size_t(w); x += 4) {
    v16 v;
    std::memcpy(&v, cur + 3 * size_t(x), 16);
    v16 r = __builtin_shuffle(v, zero, mask);
    std::memcpy(out + x, &r, 16);
  }
#endif
  for (; x + 1 < w; ++x) {
    uint32_t v;
    std::memcpy(&v, cur + 3 * size_t(x), 4);
    out[x] = v & 0xFFFFFFu;
  }
  if (x < w) {
    const uint8_t* last = cur + 3 * size_t(x);
    out[x] = uint32_t(last[0]) | (uint32_t(last[1]) << 8) | (uint32_t(last[2]) << 16);
  }
}

// PNG unfiltering done on packed pixels, straight into the id map. Label maps are mostly flat,
// so Sub and Paeth rows are mostly zero residuals that just repeat the left pixel: that case is
// a register copy, not three dependent byte additions.
bool unfilter_to_ids(const uint8_t* raw, uint32_t w, uint32_t h, int32_t* ids_out) {
  const size_t stride = size_t(w) * 3;
  std::vector<uint32_t> zero(w, 0);
  const uint32_t* prev = zero.data();
  for (uint32_t y = 0; y < h; ++y) {
    const uint8_t* row = raw + size_t(y) * (stride + 1);
    const uint8_t ftype = row[0];
    auto* cur = reinterpret_cast<uint32_t*>(ids_out + size_t(y) * w);
    unpack_row(row + 1, w, cur);
    switch (ftype) {
      case 0:
        break;
      case 1: {  // Sub
        uint32_t left = cur[0];
        for (uint32_t x = 1; x < w; ++x) {
          const uint32_t r = cur[x];
          if (__builtin_expect(r != 0, 0)) left = add3(r, left);
          cur[x] = left;
        }
        break;
      }
      case 2:  // Up
        for (uint32_t x = 0; x < w; ++x) cur[x] = add3(cur[x], prev[x]);
        break;
      case 3: {  // Average
        uint32_t left = 0;
        for (uint32_t x = 0; x < w; ++x) {
          uint32_t v = 0;
          for (int k = 0; k < 24; k += 8) {
            const uint32_t a = (left >> k) & 255, b = (prev[x] >> k) & 255, r = (cur[x] >> k) & 255;
            v |= ((r + ((a + b) >> 1)) & 255) << k;
          }
          cur[x] = left = v;
        }
        break;
      }
      case 4: {  // Paeth
        uint32_t left = add3(cur[0], prev[0]);
        cur[0] = left;
        for (uint32_t x = 1; x < w; ++x) {
          const uint32_t r = cur[x];
          if (prev[x] == prev[x - 1]) {  // b == c: Paeth predicts the left pixel
            if (__builtin_expect(r != 0, 0)) left = add3(r, left);
          } else {
            uint32_t v = 0;
            for (int k = 0; k < 24; k += 8) {
              const int a = (left >> k) & 255, b = (prev[x] >> k) & 255, c = (prev[x - 1] >> k) & 255;
              v |= uint32_t((((r >> k) & 255) + paeth(a, b, c)) & 255) << k;
            }
            left = v;
          }
          cur[x] = left;
        }
        break;
      }
      default:
        return false;  // corrupt: not a PNG filter type
    }
    prev = cur;
  }
  return true;
}

// The PNGs we read most (8-bit RGB, not interlaced: every panoptic PNG) take this path: stb's
// inflate, then our own row unfiltering fused with the output conversion. stb's generic
// unfiltering is two thirds of its decode time on 1024x2048 label maps. Returns false for any
// other PNG flavour and for any damaged file: stb_image then decodes it as a whole, so damaged
// files are reported with stb's own failure reason. Exactly one of rgb_out / ids_out is filled.
bool decode_png_rgb8(const std::string& bytes, int64_t& height, int64_t& width, std::vector<uint8_t>* rgb_out,
                     std::vector<int32_t>* ids_out) {
  static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 33 || std::memcmp(b, sig, 8) != 0 || std::memcmp(b + 12, "IHDR", 4) != 0 || be32(b + 8) != 13)
    return false;
  const uint32_t w = be32(b + 16), h = be32(b + 20);
  const uint8_t depth = b[24], ctype = b[25], compression = b[26], filter = b[27], interlace = b[28];
  if (depth != 8 || ctype != 2 || compression != 0 || filter != 0 || interlace != 0) return false;
  if (w == 0 || h == 0 || uint64_t(w) * h > (uint64_t(1) << 28)) return false;
  // Gather the IDAT chunks (no copy when there is only one, as our writer makes).
  std::string idat_joined;
  const char* idat = nullptr;
  size_t idat_len = 0;
  int idat_chunks = 0;
  size_t pos = 33;
  while (pos + 12 <= n) {
    const uint32_t len = be32(b + pos);
    const char* kind = bytes.data() + pos + 4;
    if (uint64_t(pos) + 12 + len > n) return false;  // truncated
    if (std::memcmp(kind, "IDAT", 4) == 0) {
      if (++idat_chunks == 1) {
        idat = bytes.data() + pos + 8;
        idat_len = len;
      } else {
        if (idat_chunks == 2) idat_joined.assign(idat, idat_len);
        idat_joined.append(bytes.data() + pos + 8, len);
        idat = idat_joined.data();
        idat_len = idat_joined.size();
      }
    }
    pos += 12 + size_t(len);
    if (std::memcmp(kind, "IEND", 4) == 0) break;
  }
  const size_t stride = size_t(w) * 3, raw_len = (stride + 1) * h;
  if (idat_len == 0 || raw_len >= size_t(INT32_MAX) || idat_len > size_t(INT32_MAX)) return false;
  // The inflate buffer is kept per thread: fresh multi-megabyte buffers per image cost page faults.
  thread_local std::vector<uint8_t> raw_buf;
  if (raw_buf.size() < raw_len + 1) raw_buf.resize(raw_len + 1);
  const int out_len =
      stbi_zlib_decode_buffer(reinterpret_cast<char*>(raw_buf.data()), static_cast<int>(raw_len + 1), idat,
                              static_cast<int>(idat_len));
  if (out_len < 0 || size_t(out_len) != raw_len) return false;  // corrupt or truncated data
  uint8_t* raw = raw_buf.data();
  if (ids_out) {
    if (ids_out->size() != size_t(w) * h) ids_out->resize(size_t(w) * h);
    if (!unfilter_to_ids(raw, w, h, ids_out->data())) return false;
    height = h;
    width = w;
    return true;
  }
  rgb_out->resize(stride * h);
  std::vector<uint8_t> zero(stride, 0);
  const uint8_t* prev = zero.data();
  uint8_t* data = raw;
  for (uint32_t y = 0; y < h; ++y) {
    uint8_t* row = data + size_t(y) * (stride + 1);
    const uint8_t ftype = row[0];
    uint8_t* cur = row + 1;
    switch (ftype) {
      case 0:
        break;
      case 1:  // Sub: per pixel, three byte lanes added without carries between them
        for (size_t i = 3; i < stride; i += 3) {
          cur[i] = static_cast<uint8_t>(cur[i] + cur[i - 3]);
          cur[i + 1] = static_cast<uint8_t>(cur[i + 1] + cur[i - 2]);
          cur[i + 2] = static_cast<uint8_t>(cur[i + 2] + cur[i - 1]);
        }
        break;
      case 2:  // Up
        for (size_t i = 0; i < stride; ++i) cur[i] = static_cast<uint8_t>(cur[i] + prev[i]);
        break;
      case 3:  // Average
        for (size_t i = 0; i < 3; ++i) cur[i] = static_cast<uint8_t>(cur[i] + (prev[i] >> 1));
        for (size_t i = 3; i < stride; ++i)
          cur[i] = static_cast<uint8_t>(cur[i] + ((cur[i - 3] + prev[i]) >> 1));
        break;
      case 4:  // Paeth
        for (size_t i = 0; i < 3; ++i) cur[i] = static_cast<uint8_t>(cur[i] + prev[i]);
        for (size_t i = 3; i < stride; i += 3) {
          // Where the row above is flat (b == c) Paeth predicts the left pixel: the common case
          // in label maps, done without the per-byte selection.
          if (prev[i] == prev[i - 3] && prev[i + 1] == prev[i - 2] && prev[i + 2] == prev[i - 1]) {
            cur[i] = static_cast<uint8_t>(cur[i] + cur[i - 3]);
            cur[i + 1] = static_cast<uint8_t>(cur[i + 1] + cur[i - 2]);
            cur[i + 2] = static_cast<uint8_t>(cur[i + 2] + cur[i - 1]);
            continue;
          }
          for (size_t k = i; k < i + 3; ++k) {
            const int a = cur[k - 3], bb = prev[k], c = prev[k - 3];
            const int pa = std::abs(bb - c), pb = std::abs(a - c), pc = std::abs(a + bb - 2 * c);
            const int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? bb : c);
            cur[k] = static_cast<uint8_t>(cur[k] + pred);
          }
        }
        break;
      default:
        return false;  // corrupt: not a PNG filter type
    }
    std::memcpy(rgb_out->data() + size_t(y) * stride, cur, stride);
    prev = cur;
  }
  height = h;
  width = w;
  return true;
}

// Decodes any stb-readable file into 8-bit RGB; errors carry stb's reason.
std::vector<uint8_t> decode_rgb(const std::string& bytes, const std::string& path, int64_t& height,
                                int64_t& width, const char* what) {
  DL_CHECK(!bytes.empty(), path << ": empty file");
  {
    std::vector<uint8_t> rgb;
    if (decode_png_rgb8(bytes, height, width, &rgb, nullptr)) return rgb;
  }
  DL_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX),
           path << ": file too large (" << bytes.size() << " bytes)");
  int w = 0, h = 0, comp = 0;
  const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  if (stbi_is_16_bit_from_memory(buf, len)) {
    DL_FAIL(path << ": 16-bit images are not supported for " << what);
  }
  stbi_uc* px = stbi_load_from_memory(buf, len, &w, &h, &comp, 3);
  if (!px) {
    const char* reason = stbi_failure_reason();
    DL_FAIL(path << ": cannot decode " << what << " (" << (reason ? reason : "unknown reason") << "; file of "
                 << bytes.size() << " bytes)");
  }
  std::vector<uint8_t> out(px, px + static_cast<size_t>(w) * h * 3);
  stbi_image_free(px);
  height = h;
  width = w;
  return out;
}

void png_sink(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

void encode_png_atomic(const std::string& path, const uint8_t* rgb, int64_t height, int64_t width) {
  DL_CHECK(height > 0 && width > 0 && height <= INT32_MAX / 3 && width <= INT32_MAX / 3,
           path << ": cannot write a " << height << "x" << width << " PNG");
  std::string out;
  int ok = stbi_write_png_to_func(png_sink, &out, static_cast<int>(width), static_cast<int>(height), 3, rgb,
                                  static_cast<int>(width * 3));
  DL_CHECK(ok && !out.empty(), path << ": PNG encoding failed");
  write_file_atomic(path, out);
}

}  // namespace

void read_panoptic_png(const std::string& path, std::vector<int32_t>& ids, int64_t& height, int64_t& width) {
  const std::string bytes = read_file(path);
  DL_CHECK(!bytes.empty(), path << ": empty file");
  if (decode_png_rgb8(bytes, height, width, nullptr, &ids)) return;
  std::vector<uint8_t> rgb = decode_rgb(bytes, path, height, width, "panoptic PNG");
  const size_t n = static_cast<size_t>(height * width);
  ids.resize(n);
  for (size_t i = 0; i < n; ++i)
    ids[i] = int32_t(rgb[3 * i]) | (int32_t(rgb[3 * i + 1]) << 8) | (int32_t(rgb[3 * i + 2]) << 16);
}

std::vector<int32_t> read_panoptic_png(const std::string& path, int64_t& height, int64_t& width) {
  std::vector<int32_t> ids;
  read_panoptic_png(path, ids, height, width);
  return ids;
}

void write_panoptic_png(const std::string& path, const std::vector<int32_t>& ids, int64_t height,
                        int64_t width) {
  DL_CHECK(height > 0 && width > 0 && static_cast<int64_t>(ids.size()) == height * width,
           path << ": " << ids.size() << " ids for a " << height << "x" << width << " panoptic PNG");
  std::vector<uint8_t> rgb(ids.size() * 3);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    DL_CHECK(id >= 0 && id <= kMaxPanopticId, path << ": id " << id << " at pixel (" << int64_t(i) / width
                                                   << ", " << int64_t(i) % width
                                                   << ") does not fit in 24 bits");
    rgb[3 * i] = static_cast<uint8_t>(id & 255);
    rgb[3 * i + 1] = static_cast<uint8_t>((id >> 8) & 255);
    rgb[3 * i + 2] = static_cast<uint8_t>((id >> 16) & 255);
  }
  encode_png_atomic(path, rgb.data(), height, width);
}

PanopticMap load_panoptic(const std::string& png_path, const PanopticAnnotation& ann,
                          const std::vector<Category>& categories) {
  return load_panoptic(png_path, ann, categories, 0, 0);
}

PanopticMap load_panoptic(const std::string& png_path, const PanopticAnnotation& ann,
                          const std::vector<Category>& categories, int64_t expect_height,
                          int64_t expect_width) {
  PanopticMap m;
  load_panoptic_into(m, png_path, ann, categories, expect_height, expect_width);
  return m;
}

void load_panoptic_into(PanopticMap& m, const std::string& png_path, const PanopticAnnotation& ann,
                        const std::vector<Category>& categories, int64_t expect_height,
                        int64_t expect_width) {
  const std::string who = png_path + " (image_id " + std::to_string(ann.image_id) + ")";
  m.segments.clear();
  // Structure first, so a bad JSON entry is reported before the PNG is decoded.
  std::unordered_map<int32_t, size_t> index;
  index.reserve(ann.segments.size() * 2);
  for (size_t k = 0; k < ann.segments.size(); ++k) {
    const SegmentInfo& s = ann.segments[k];
    DL_CHECK(s.id > 0 && s.id <= kMaxPanopticId,
             who << ": segments_info[" << k << "]: id " << s.id << " out of range");
    DL_CHECK(index.emplace(s.id, k).second,
             who << ": segments_info[" << k << "]: duplicate segment id " << s.id);
    if (!categories.empty()) {
      bool known = false;
      for (const auto& c : categories) known |= c.id == s.category_id;
      DL_CHECK(known, who << ": segments_info[" << k << "] (id " << s.id << "): unknown category_id "
                          << s.category_id);
    }
  }
  read_panoptic_png(png_path, m.ids, m.height, m.width);
  if (expect_height > 0 && expect_width > 0)
    DL_CHECK(m.height == expect_height && m.width == expect_width,
             who << ": PNG is " << m.width << "x" << m.height << " (w x h) but the image is " << expect_width
                 << "x" << expect_height);
  // Recount areas from the pixels (the JSON's areas are not trusted); an id missing from
  // segments_info is an error. Runs of equal ids are common, so the hash lookup is done per run.
  std::vector<int64_t> area(ann.segments.size(), 0);
  const size_t n = m.ids.size();
  size_t i = 0;
  while (i < n) {
    const int32_t id = m.ids[i];
    size_t j = i + 1;
    // Whole blocks of 16 equal ids first (vectorised), then the rest of the run.
    while (j + 16 <= n) {
      uint32_t diff = 0;
      for (size_t k = 0; k < 16; ++k) diff |= uint32_t(m.ids[j + k] ^ id);
      if (diff) break;
      j += 16;
    }
    while (j < n && m.ids[j] == id) ++j;
    if (id != 0) {
      auto it = index.find(id);
      DL_CHECK(it != index.end(), who << ": segment id " << id << " (RGB " << (id & 255) << ","
                                      << ((id >> 8) & 255) << "," << ((id >> 16) & 255) << ") at pixel (row "
                                      << int64_t(i) / m.width << ", col " << int64_t(i) % m.width
                                      << ") is not in segments_info");
      area[it->second] += static_cast<int64_t>(j - i);
    }
    i = j;
  }
  m.segments = ann.segments;
  for (size_t k = 0; k < m.segments.size(); ++k) m.segments[k].area = area[k];
}

std::vector<uint8_t> read_rgb(const std::string& path, int64_t& height, int64_t& width) {
  return decode_rgb(read_file(path), path, height, width, "image");
}

void write_rgb_png(const std::string& path, const std::vector<uint8_t>& rgb, int64_t height, int64_t width) {
  DL_CHECK(height > 0 && width > 0 && static_cast<int64_t>(rgb.size()) == height * width * 3,
           path << ": " << rgb.size() << " bytes for a " << height << "x" << width << " RGB PNG");
  encode_png_atomic(path, rgb.data(), height, width);
}

void write_file_atomic(const std::string& path, const std::string& data) {
  // Unique per process and thread, so parallel writers of different files never collide.
  std::ostringstream tmp_name;
  tmp_name << path << ".tmp." << ::getpid() << "." << std::hash<std::string>{}(path) % 100000;
  static std::atomic<uint64_t> counter{0};
  tmp_name << "." << counter.fetch_add(1);
  const std::string tmp = tmp_name.str();
  FILE* f = std::fopen(tmp.c_str(), "wb");
  DL_CHECK(f, path << ": cannot create " << tmp << " (" << std::strerror(errno) << ")");
  size_t wrote = data.empty() ? 0 : std::fwrite(data.data(), 1, data.size(), f);
  bool ok = wrote == data.size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    int e = errno;
    std::remove(tmp.c_str());
    DL_FAIL(path << ": write failed (" << std::strerror(e) << ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    DL_FAIL(path << ": cannot rename " << tmp << " into place (" << std::strerror(e) << ")");
  }
}

}  // namespace dl
