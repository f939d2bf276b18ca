#include "weights/json_tensors.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "weights/atomic_file.h"

namespace dl {

NamedTensors parse_json_tensors(const std::string& text, const std::string& src) {
  using nlohmann::ordered_json;
  std::set<std::string> seen;
  std::string duplicate;
  ordered_json::parser_callback_t cb = [&](int depth, ordered_json::parse_event_t ev, ordered_json& parsed) {
    if (depth == 1 && ev == ordered_json::parse_event_t::key) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  ordered_json j;
  try {
    j = ordered_json::parse(text, cb);
  } catch (const ordered_json::parse_error& e) {
    DL_FAIL("JSON tensors '" << src << "': malformed JSON at byte " << e.byte << ": " << e.what());
  } catch (const ordered_json::exception& e) {
    DL_FAIL("JSON tensors '" << src << "': " << e.what());
  }
  DL_CHECK(duplicate.empty(), "JSON tensors '" << src << "': tensor '" << duplicate << "' appears twice");
  DL_CHECK(j.is_object(), "JSON tensors '" << src << "': the top level is not an object of tensors");
  NamedTensors out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const ordered_json& v = it.value();
#define JT_CHECK(cond, msg) DL_CHECK(cond, "JSON tensors '" << src << "': tensor '" << name << "': " << msg)
    JT_CHECK(v.is_object(), "entry is not an object with shape, dtype and data");
    JT_CHECK(v.contains("shape") && v["shape"].is_array(), "missing or non-array \"shape\"");
    JT_CHECK(v.contains("data") && v["data"].is_array(), "missing or non-array \"data\" (a flat list)");
    const std::string dt = v.contains("dtype")
                               ? (v["dtype"].is_string() ? v["dtype"].get<std::string>() : "?")
                               : std::string("F32");
    DType dtype;
    if (dt == "F32" || dt == "F64")
      dtype = DType::F32;
    else if (dt == "I32")
      dtype = DType::I32;
    else if (dt == "U8")
      dtype = DType::U8;
    else
      JT_CHECK(false, "unknown dtype " << v["dtype"].dump() << " (supported: F32, F64, I32, U8)");
    JT_CHECK(v["shape"].size() <= 5, "shape has " << v["shape"].size() << " dims (at most 5 supported)");
    Shape shape;
    int64_t numel = 1;
    for (const auto& d : v["shape"]) {
      JT_CHECK(d.is_number_unsigned(), "shape entry " << d.dump() << " is not a non-negative integer");
      const uint64_t x = d.get<uint64_t>();
      JT_CHECK(x == 0 || static_cast<uint64_t>(numel) <= (uint64_t(1) << 40) / x,
               "shape " << v["shape"].dump() << " is too large");
      shape.push_back(static_cast<int64_t>(x));
      numel *= static_cast<int64_t>(x);
    }
    const auto& data = v["data"];
    JT_CHECK(static_cast<int64_t>(data.size()) == numel,
             "data has " << data.size() << " values but shape " << shape_str(shape) << " needs " << numel);
    Tensor t = Tensor::empty(shape, dtype);
    for (int64_t i = 0; i < numel; ++i) {
      const auto& x = data[static_cast<size_t>(i)];
      JT_CHECK(x.is_number(), "data[" << i << "] = " << x.dump() << " is not a number");
      if (dtype == DType::F32) {
        t.data<float>()[i] = static_cast<float>(x.get<double>());
      } else {
        const double d = x.get<double>();
        const double lo = dtype == DType::U8 ? 0 : std::numeric_limits<int32_t>::min();
        const double hi = dtype == DType::U8 ? 255 : std::numeric_limits<int32_t>::max();
        JT_CHECK(x.is_number_integer() && d >= lo && d <= hi,
                 "data[" << i << "] = " << x.dump() << " is not a valid " << dt << " value");
        if (dtype == DType::U8)
          t.data<uint8_t>()[i] = static_cast<uint8_t>(x.get<int64_t>());
        else
          t.data<int32_t>()[i] = static_cast<int32_t>(x.get<int64_t>());
      }
    }
#undef JT_CHECK
    out.emplace_back(name, t);
  }
  return out;
}

NamedTensors read_json_tensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DL_CHECK(f.good(), "JSON tensors '" << path << "': cannot open: " << std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  DL_CHECK(!f.bad(), "JSON tensors '" << path << "': read error");
  return parse_json_tensors(ss.str(), path);
}

std::string json_tensors_to_string(const NamedTensors& tensors) {
  std::string s = "{";
  std::set<std::string> names;
  char buf[32];
  for (size_t k = 0; k < tensors.size(); ++k) {
    const std::string& name = tensors[k].first;
    DL_CHECK(!name.empty() && names.insert(name).second,
             "write JSON tensors: tensor name '" << name << "' is empty or appears twice");
    DL_CHECK(tensors[k].second.defined(), "write JSON tensors: tensor '" << name << "' is undefined");
    const Tensor t = tensors[k].second.to(Device::CPU);
    const DType out_dt = t.dtype() == DType::F64 ? DType::F64 : t.dtype();
    s += k ? ",\n " : "\n ";
    s += nlohmann::json(name).dump();
    s += ": {\"shape\": " + nlohmann::json(t.shape()).dump() + ", \"dtype\": \"" + dtype_name(out_dt) +
         "\", \"data\": [";
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) {
      if (i) s += ", ";
      switch (t.dtype()) {
        case DType::F32:
        case DType::F64: {
          const double v = t.dtype() == DType::F32 ? t.data<float>()[i] : t.data<double>()[i];
          DL_CHECK(std::isfinite(v), "write JSON tensors: tensor '" << name << "' has " << v << " at index "
                                                                    << i << " (JSON cannot represent it)");
          // 9 significant digits round-trip every float, 17 every double.
          std::snprintf(buf, sizeof buf, t.dtype() == DType::F32 ? "%.9g" : "%.17g", v);
          s += buf;
          break;
        }
        case DType::I32:
          s += std::to_string(t.data<int32_t>()[i]);
          break;
        case DType::U8:
          s += std::to_string(t.data<uint8_t>()[i]);
          break;
      }
    }
    s += "]}";
  }
  s += tensors.empty() ? "}\n" : "\n}\n";
  return s;
}

void write_json_tensors(const std::string& path, const NamedTensors& tensors) {
  const std::string s = json_tensors_to_string(tensors);
  write_file_atomic(path, {{s.data(), s.size()}});
}

}  // namespace dl
