#include "weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "weights/atomic_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace dl {

namespace {

// The official reader refuses headers above 100 MB; so do we (a corrupt length would otherwise
// make us parse the whole file as JSON).
constexpr uint64_t kMaxHeader = 100u << 20;

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    DL_CHECK(fd_ >= 0, "safetensors '" << path << "': cannot open: " << std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      const int e = errno;
      ::close(fd_);
      DL_FAIL("safetensors '" << path << "': cannot stat: " << std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      DL_FAIL("safetensors '" << path << "': not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd_);
        DL_FAIL("safetensors '" << path << "': mmap failed: " << std::strerror(e));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct DTypeInfo {
  const char* name;
  size_t size;
  DType to;  // what it becomes in memory
};

const DTypeInfo kDTypes[] = {
    {"F32", 4, DType::F32}, {"F16", 2, DType::F32}, {"BF16", 2, DType::F32}, {"F64", 8, DType::F32},
    {"I32", 4, DType::I32}, {"I64", 8, DType::I32}, {"U8", 1, DType::U8},    {"BOOL", 1, DType::U8},
};
// Valid safetensors dtypes we do not read (a clearer message than "unknown").
const char* kUnsupported[] = {"I8",      "I16",     "U16", "U32",     "U64",     "F8_E4M3",
                              "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

struct Entry {
  std::string name;
  const DTypeInfo* dt = nullptr;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  size_t data_start = 0;  // 8 + header length
};

std::string supported_list() {
  std::string s;
  for (const auto& d : kDTypes) s += std::string(s.empty() ? "" : ", ") + d.name;
  return s;
}

Header parse_header(const std::string& path, const uint8_t* data, size_t size) {
  using nlohmann::json;
#define ST_CHECK(cond, msg) DL_CHECK(cond, "safetensors '" << path << "': " << msg)
  ST_CHECK(size >= 8, "file is " << size
                                 << " bytes, too short for the 8-byte header length (truncated or not a "
                                    "safetensors file)");
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  ST_CHECK(n <= size - 8, "header length " << n << " runs past the end of the file (" << size
                                           << " bytes; truncated or not a safetensors file)");
  ST_CHECK(n <= kMaxHeader, "header length " << n << " exceeds the 100 MB limit");
  ST_CHECK(n >= 2 && data[8] == '{', "the header does not start with '{' (not a safetensors file?)");
  Header h;
  h.data_start = 8 + static_cast<size_t>(n);
  const char* text = reinterpret_cast<const char*>(data + 8);

  // Duplicate top-level keys would silently overwrite each other in the parsed object.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (depth == 1 && ev == json::parse_event_t::key) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, text + n, cb);
  } catch (const json::exception& e) {
    DL_FAIL("safetensors '" << path << "': malformed JSON header (" << n
                            << " bytes starting at file offset 8): " << e.what());
  }
  ST_CHECK(duplicate.empty(), "header lists tensor '" << duplicate << "' twice");
  ST_CHECK(j.is_object(), "the header is JSON but not an object");
  const uint64_t data_size = size - h.data_start;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      ST_CHECK(v.is_object(), "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        ST_CHECK(m.value().is_string(), "__metadata__ entry '" << m.key() << "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
#define TN_CHECK(cond, msg) ST_CHECK(cond, "tensor '" << name << "': " << msg)
    TN_CHECK(v.is_object(), "entry is not an object");
    TN_CHECK(v.contains("dtype") && v["dtype"].is_string(), "missing or non-string \"dtype\"");
    TN_CHECK(v.contains("shape") && v["shape"].is_array(), "missing or non-array \"shape\"");
    TN_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
             "missing \"data_offsets\" or not a [begin, end] pair");
    Entry e;
    e.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    for (const auto& d : kDTypes)
      if (dt == d.name) e.dt = &d;
    if (!e.dt) {
      bool known = std::find_if(std::begin(kUnsupported), std::end(kUnsupported),
                                [&](const char* u) { return dt == u; }) != std::end(kUnsupported);
      TN_CHECK(false, (known ? "unsupported" : "unknown")
                          << " dtype \"" << dt << "\" (supported: " << supported_list() << ")");
    }
    TN_CHECK(v["shape"].size() <= 5, "shape has " << v["shape"].size() << " dims (at most 5 supported)");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      TN_CHECK(d.is_number_unsigned(), "shape entry " << d.dump() << " is not a non-negative integer");
      const uint64_t x = d.get<uint64_t>();
      TN_CHECK(x == 0 || numel <= std::numeric_limits<int64_t>::max() / x,
               "shape " << v["shape"].dump() << " overflows");
      numel *= x;
      e.shape.push_back(static_cast<int64_t>(x));
    }
    for (const auto& o : v["data_offsets"])
      TN_CHECK(o.is_number_unsigned(),
               "data_offsets " << v["data_offsets"].dump() << " are not non-negative integers");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    TN_CHECK(e.begin <= e.end, "data_offsets [" << e.begin << ", " << e.end << "] are reversed");
    TN_CHECK(e.end <= data_size, "data_offsets [" << e.begin << ", " << e.end
                                                  << "] run past the end of the data (" << data_size
                                                  << " bytes; file truncated?)");
    TN_CHECK(
        numel <= std::numeric_limits<uint64_t>::max() / e.dt->size && e.end - e.begin == numel * e.dt->size,
        "data_offsets [" << e.begin << ", " << e.end << "] hold " << (e.end - e.begin) << " bytes, but " << dt
                         << shape_str(e.shape) << " needs " << numel * e.dt->size);
#undef TN_CHECK
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // The buffer must be covered exactly once, as the reference implementation requires: an
  // overlap aliases two tensors, a gap or trailing bytes hide data no tensor describes.
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const auto& e : h.entries) {
    if (e.begin == e.end) continue;  // empty tensors take no bytes and may sit anywhere
    ST_CHECK(e.begin >= pos, "tensor '" << e.name << "' data_offsets [" << e.begin << ", " << e.end
                                        << "] overlap tensor '" << prev->name << "' [" << prev->begin << ", "
                                        << prev->end << "]");
    ST_CHECK(e.begin == pos, "tensor '" << e.name << "' starts at data offset " << e.begin
                                        << ", leaving a gap of " << (e.begin - pos)
                                        << " unused bytes before it");
    pos = e.end;
    prev = &e;
  }
  ST_CHECK(pos == data_size, "the data section has " << data_size << " bytes but the tensors cover only "
                                                     << pos << " (trailing bytes)");
#undef ST_CHECK
  return h;
}

Tensor convert(const std::string& path, const Entry& e, const uint8_t* src) {
  Tensor t = Tensor::empty(e.shape, e.dt->to);
  const int64_t n = t.numel();
  const std::string dt = e.dt->name;
  if (dt == "F32" || dt == "I32" || dt == "U8") {
    std::memcpy(t.raw_data(), src, t.nbytes());
  } else if (dt == "F16" || dt == "BF16") {
    float* out = t.data<float>();
    const bool half = dt == "F16";
    for (int64_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, src + 2 * i, 2);
      out[i] = half ? f16_to_f32(b) : bf16_to_f32(b);
    }
  } else if (dt == "F64") {
    float* out = t.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  } else if (dt == "I64") {
    int32_t* out = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t d;
      std::memcpy(&d, src + 8 * i, 8);
      DL_CHECK(d >= std::numeric_limits<int32_t>::min() && d <= std::numeric_limits<int32_t>::max(),
               "safetensors '" << path << "': tensor '" << e.name << "': I64 value " << d << " at index " << i
                               << " does not fit in I32");
      out[i] = static_cast<int32_t>(d);
    }
  } else if (dt == "BOOL") {
    uint8_t* out = t.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = src[i] ? 1 : 0;
  }
  return t;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal half: normalise the mantissa into an ordinary float.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

NamedTensors read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  MappedFile f(path);
  Header h = parse_header(path, f.data(), f.size());
  NamedTensors out;
  out.reserve(h.entries.size());
  for (const auto& e : h.entries)
    out.emplace_back(e.name, convert(path, e, f.data() + h.data_start + e.begin));
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

NamedTensors read_safetensors(const std::string& path) {
  return read_safetensors(path, nullptr);
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  MappedFile f(path);
  return parse_header(path, f.data(), f.size()).metadata;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  std::set<std::string> names;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    const std::string& name = kv.first;
    const Tensor& t = kv.second;
    DL_CHECK(!name.empty(), "write_safetensors '" << path << "': a tensor has an empty name");
    DL_CHECK(name != "__metadata__", "write_safetensors '" << path << "': '__metadata__' is a reserved name");
    DL_CHECK(names.insert(name).second,
             "write_safetensors '" << path << "': tensor name '" << name << "' appears twice");
    DL_CHECK(t.defined(), "write_safetensors '" << path << "': tensor '" << name << "' is undefined");
    host.push_back(t.device() == Device::CPU ? t : t.to(Device::CPU));
    nlohmann::ordered_json e;
    e["dtype"] = dtype_name(t.dtype());
    e["shape"] = t.shape();
    e["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = e;
    offset += t.nbytes();
  }
  std::string text = header.dump();
  // Pad with spaces so the data starts 8-byte aligned (8 + header length is a multiple of 8).
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  std::vector<ByteSpan> chunks;
  chunks.push_back({&n, 8});
  chunks.push_back({text.data(), text.size()});
  for (const auto& t : host) chunks.push_back({t.raw_data(), t.nbytes()});
  write_file_atomic(path, chunks);
}

}  // namespace dl
