#include "weights/load.h"

#include <map>
#include <sstream>

#include "core/error.h"
#include "weights/json_tensors.h"
#include "weights/safetensors.h"

namespace dl {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

namespace {
bool is_float(DType t) {
  return t == DType::F32 || t == DType::F64;
}
}  // namespace

namespace {
// The problems of a load, and the (model index, source index) pairs to copy when there are none.
std::vector<std::pair<size_t, size_t>> plan_load(const NamedTensors& model_state, const NamedTensors& source,
                                                 const std::string& source_name, bool strict) {
  std::map<std::string, size_t> src_index, model_index;
  std::vector<std::string> problems;
  for (size_t i = 0; i < source.size(); ++i)
    if (!src_index.emplace(source[i].first, i).second)
      problems.push_back("duplicate in the source: " + source[i].first);
  for (size_t i = 0; i < model_state.size(); ++i)
    if (!model_index.emplace(model_state[i].first, i).second)
      problems.push_back("duplicate in the model: " + model_state[i].first);

  std::vector<std::pair<size_t, size_t>> copies;  // (model index, source index)
  for (size_t i = 0; i < model_state.size(); ++i) {
    const auto& [name, dst] = model_state[i];
    auto it = src_index.find(name);
    if (it == src_index.end()) {
      if (strict) problems.push_back("missing: " + name + " " + dst.shape_str());
      continue;
    }
    const Tensor& src = source[it->second].second;
    if (src.shape() != dst.shape()) {
      problems.push_back("shape mismatch: " + name + ": model " + dst.shape_str() + ", source " +
                         src.shape_str());
    } else if (src.dtype() != dst.dtype() && !(is_float(src.dtype()) && is_float(dst.dtype()))) {
      problems.push_back("dtype mismatch: " + name + ": model " + dtype_name(dst.dtype()) + ", source " +
                         dtype_name(src.dtype()));
    } else {
      copies.emplace_back(i, it->second);
    }
  }
  if (strict)
    for (const auto& [name, t] : source)
      if (!model_index.count(name)) problems.push_back("unexpected: " + name + " " + t.shape_str());

  if (!problems.empty()) {
    std::ostringstream os;
    os << "loading '" << source_name << "': " << problems.size() << " problem"
       << (problems.size() > 1 ? "s" : "") << " (nothing was loaded):";
    for (const auto& p : problems) os << "\n  " << p;
    DL_FAIL(os.str());
  }
  return copies;
}
}  // namespace

void check_load_state(const NamedTensors& model_state, const NamedTensors& source,
                      const std::string& source_name, bool strict) {
  plan_load(model_state, source, source_name, strict);
}

void load_state(const NamedTensors& model_state, const NamedTensors& source, const std::string& source_name,
                bool strict) {
  for (const auto& [mi, si] : plan_load(model_state, source, source_name, strict)) {
    Tensor dst = model_state[mi].second;
    Tensor src = source[si].second;
    if (src.dtype() != dst.dtype()) src = src.to(Device::CPU).to(dst.dtype());
    dst.copy_(src);
  }
}

NamedTensors read_weights(const std::string& path) {
  if (ends_with(path, ".json")) return read_json_tensors(path);
  DL_CHECK(ends_with(path, ".safetensors"),
           "weights file '" << path << "': unknown extension (expected .safetensors or .json)");
  std::map<std::string, std::string> meta;
  NamedTensors all = read_safetensors(path, &meta);
  if (!meta.count("deeperlab.checkpoint")) return all;
  NamedTensors model;
  for (auto& kv : all)
    if (kv.first.rfind("optim/", 0) != 0) model.push_back(std::move(kv));
  return model;
}

void write_weights(const std::string& path, const NamedTensors& tensors) {
  if (ends_with(path, ".json")) return write_json_tensors(path, tensors);
  DL_CHECK(ends_with(path, ".safetensors"),
           "weights file '" << path << "': unknown extension (expected .safetensors or .json)");
  write_safetensors(path, tensors);
}

}  // namespace dl
