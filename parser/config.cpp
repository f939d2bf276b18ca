// JSON config reading with nlohmann::json. The field tables are the X-macros of config.h, so the
// reader, the writer and the reference text can never disagree with the structs.
#include "parser/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace dl {

using json = nlohmann::json;

namespace {

template <class T>
const char* type_name();
template <>
const char* type_name<bool>() {
  return "bool";
}
template <>
const char* type_name<int64_t>() {
  return "integer";
}
template <>
const char* type_name<double>() {
  return "number";
}
template <>
const char* type_name<std::string>() {
  return "string";
}
template <>
const char* type_name<IntList>() {
  return "list of integers";
}
template <>
[[maybe_unused]] const char* type_name<DoubleList>() {
  return "list of numbers";
}

bool is(const json& v, bool*) {
  return v.is_boolean();
}
bool is(const json& v, int64_t*) {
  return v.is_number_integer();
}
bool is(const json& v, double*) {
  return v.is_number();
}
bool is(const json& v, std::string*) {
  return v.is_string();
}
bool is(const json& v, IntList*) {
  if (!v.is_array()) return false;
  for (const auto& e : v)
    if (!e.is_number_integer()) return false;
  return true;
}
[[maybe_unused]] bool is(const json& v, DoubleList*) {
  if (!v.is_array()) return false;
  for (const auto& e : v)
    if (!e.is_number()) return false;
  return true;
}

template <class T>
void read_value(const json& v, T& out, const char* section, const char* name, const std::string& source) {
  DL_CHECK(is(v, static_cast<T*>(nullptr)), "config " << source << ": field '" << section << "." << name
                                                      << "' must be a " << type_name<T>() << ", got "
                                                      << v.dump());
  out = v.get<T>();
}

#define DL_CONFIG_READ_FIELD(type, name, def, help)  \
  if (key == #name) {                                \
    read_value(val, s.name, section, #name, source); \
    continue;                                        \
  }
#define DL_CONFIG_WRITE_FIELD(type, name, def, help) j[#name] = s.name;
#define DL_CONFIG_REF_FIELD(type, name, def, help)                                   \
  os << "  " << section << "." << #name << " (" << type_name<type>() << ", default " \
     << json(type(def)).dump() << "): " << help << "\n";

#define DL_CONFIG_SECTION(Struct, FIELDS)                                                              \
  void read_section(const json& j, Struct& s, const char* section, const std::string& source) {        \
    DL_CHECK(j.is_object(), "config " << source << ": section '" << section << "' must be an object"); \
    for (auto it = j.begin(); it != j.end(); ++it) {                                                   \
      const std::string& key = it.key();                                                               \
      const json& val = it.value();                                                                    \
      FIELDS(DL_CONFIG_READ_FIELD)                                                                     \
      DL_FAIL("config " << source << ": unknown field '" << section << "." << key << "'");             \
    }                                                                                                  \
  }                                                                                                    \
  json write_section(const Struct& s) {                                                                \
    json j = json::object();                                                                           \
    FIELDS(DL_CONFIG_WRITE_FIELD)                                                                      \
    return j;                                                                                          \
  }                                                                                                    \
  void reference_section(std::ostream& os, const Struct*, const char* section) {                       \
    FIELDS(DL_CONFIG_REF_FIELD)                                                                        \
  }

DL_CONFIG_SECTION(ModelConfig, DL_MODEL_FIELDS)
DL_CONFIG_SECTION(DataConfig, DL_DATA_FIELDS)
DL_CONFIG_SECTION(TrainConfig, DL_TRAIN_FIELDS)
DL_CONFIG_SECTION(InferenceSection, DL_INFERENCE_FIELDS)
DL_CONFIG_SECTION(LossSection, DL_LOSS_FIELDS)

void validate(const Config& c, const std::string& source) {
  const ModelConfig& m = c.model;
  DL_CHECK(m.backbone == "xception71" || m.backbone == "mobilenet_v2",
           "config " << source << ": model.backbone must be \"xception71\" or \"mobilenet_v2\", got \""
                     << m.backbone << "\"");
  DL_CHECK(m.output_stride == 8 || m.output_stride == 16 || m.output_stride == 32,
           "config " << source << ": model.output_stride must be 8, 16 or 32, got " << m.output_stride);
  DL_CHECK(m.width_multiplier > 0, "config " << source << ": model.width_multiplier must be > 0");
  DL_CHECK(m.backbone_kernel_size >= 1 && m.backbone_kernel_size % 2 == 1,
           "config " << source << ": model.backbone_kernel_size must be odd, got " << m.backbone_kernel_size);
  const int64_t block = m.output_stride / 4;
  DL_CHECK(!m.decoder_widths.empty() && m.decoder_widths.back() % (block * block) == 0,
           "config " << source << ": model.decoder_widths must be non-empty with the last divisible by "
                     << block * block << " (output_stride / 4, squared)");
  for (int64_t v : {m.aspp_channels, m.low_level_channels, m.semantic_head_width, m.instance_head_width,
                    m.num_classes, m.decoder_kernel_size, m.head_kernel_size, m.xception_middle_units})
    DL_CHECK(v >= 1, "config " << source << ": model widths, kernels and counts must be >= 1, got " << v);
  DL_CHECK(m.bn_eps > 0 && m.bn_momentum >= 0 && m.bn_momentum <= 1,
           "config " << source << ": model.bn_eps must be > 0 and model.bn_momentum in [0, 1]");
}

}  // namespace

Config parse_config(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    DL_FAIL("config " << source << ": malformed JSON: " << e.what());
  }
  DL_CHECK(j.is_object(), "config " << source << ": top level must be an object");
  Config c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& val = it.value();
    if (key == "description") {
      DL_CHECK(val.is_string(), "config " << source << ": 'description' must be a string");
      c.description = val.get<std::string>();
    } else if (key == "model") {
      read_section(val, c.model, "model", source);
    } else if (key == "data") {
      read_section(val, c.data, "data", source);
    } else if (key == "train") {
      read_section(val, c.train, "train", source);
    } else if (key == "inference") {
      read_section(val, c.inference, "inference", source);
    } else if (key == "loss") {
      read_section(val, c.loss, "loss", source);
    } else {
      DL_FAIL("config " << source << ": unknown section '" << key
                        << "' (expected description, model, data, train, inference, loss)");
    }
  }
  validate(c, source);
  return c;
}

Config load_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DL_CHECK(f.good(), "config " << path << ": cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

std::string config_to_json(const Config& c) {
  json j = json::object();
  if (!c.description.empty()) j["description"] = c.description;
  j["model"] = write_section(c.model);
  j["data"] = write_section(c.data);
  j["train"] = write_section(c.train);
  j["inference"] = write_section(c.inference);
  j["loss"] = write_section(c.loss);
  return j.dump(2);
}

std::string config_reference() {
  std::ostringstream os;
  reference_section(os, static_cast<const ModelConfig*>(nullptr), "model");
  reference_section(os, static_cast<const DataConfig*>(nullptr), "data");
  reference_section(os, static_cast<const TrainConfig*>(nullptr), "train");
  reference_section(os, static_cast<const InferenceSection*>(nullptr), "inference");
  reference_section(os, static_cast<const LossSection*>(nullptr), "loss");
  return os.str();
}

}  // namespace dl
