#include "weights/checkpoint.h"

#include <cstdio>
#include <map>

#include "core/error.h"
#include "weights/load.h"
#include "weights/safetensors.h"

namespace dl {

namespace {
const char* kOptimPrefix = "optim/";
const char* kFormatKey = "deeperlab.checkpoint";

std::string rng_to_string(const Rng& rng) {
  std::string s;
  char buf[24];
  for (int i = 0; i < 4; ++i) {
    std::snprintf(buf, sizeof buf, "%s%016llx", i ? "," : "",
                  static_cast<unsigned long long>(rng.state_word(i)));
    s += buf;
  }
  return s;
}

std::vector<uint64_t> rng_from_string(const std::string& path, const std::string& s) {
  std::vector<uint64_t> w;
  size_t pos = 0;
  while (pos <= s.size() && w.size() < 5) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string part = s.substr(pos, comma - pos);
    char* end = nullptr;
    const unsigned long long v = std::strtoull(part.c_str(), &end, 16);
    DL_CHECK(!part.empty() && part.size() <= 16 && end && *end == '\0',
             "checkpoint '" << path << "': malformed RNG state \"" << s << "\"");
    w.push_back(v);
    pos = comma + 1;
  }
  DL_CHECK(w.size() == 4, "checkpoint '" << path << "': RNG state \"" << s << "\" needs 4 words");
  return w;
}
}  // namespace

void save_checkpoint(const std::string& path, const NamedTensors& model_state, const Optimizer* optimizer,
                     int64_t step, const Rng* rng, const nlohmann::json& metadata) {
  NamedTensors all;
  all.reserve(model_state.size());
  for (const auto& kv : model_state) {
    DL_CHECK(kv.first.rfind(kOptimPrefix, 0) != 0,
             "save_checkpoint: model tensor '" << kv.first << "' uses the reserved prefix 'optim/'");
    all.push_back(kv);
  }
  std::map<std::string, std::string> meta;
  meta[kFormatKey] = "1";
  meta["deeperlab.step"] = std::to_string(step);
  meta["deeperlab.metadata"] = metadata.dump();
  if (optimizer) {
    meta["deeperlab.optimizer"] = optimizer->name();
    for (const auto& kv : optimizer->state()) all.emplace_back(kOptimPrefix + kv.first, kv.second);
  }
  if (rng) meta["deeperlab.rng"] = rng_to_string(*rng);
  write_safetensors(path, all, meta);
}

Checkpoint read_checkpoint(const std::string& path) {
  std::map<std::string, std::string> meta;
  NamedTensors all = read_safetensors(path, &meta);
  DL_CHECK(meta.count(kFormatKey),
           "'" << path << "' is a weights file, not a checkpoint (no " << kFormatKey << " in its metadata)");
  DL_CHECK(meta[kFormatKey] == "1",
           "checkpoint '" << path << "': unsupported format version \"" << meta[kFormatKey] << "\"");
  Checkpoint c;
  for (auto& kv : all) {
    if (kv.first.rfind(kOptimPrefix, 0) == 0)
      c.optimizer.emplace_back(kv.first.substr(6), std::move(kv.second));
    else
      c.model.push_back(std::move(kv));
  }
  const std::string step = meta["deeperlab.step"];
  try {
    size_t used = 0;
    c.step = std::stoll(step, &used);
    DL_CHECK(used == step.size() && c.step >= 0, "");
  } catch (const std::exception&) {
    DL_FAIL("checkpoint '" << path << "': malformed step \"" << step << "\"");
  }
  if (meta.count("deeperlab.optimizer")) c.optimizer_name = meta["deeperlab.optimizer"];
  if (meta.count("deeperlab.rng")) c.rng = rng_from_string(path, meta["deeperlab.rng"]);
  if (meta.count("deeperlab.metadata")) {
    try {
      c.metadata = nlohmann::json::parse(meta["deeperlab.metadata"]);
    } catch (const nlohmann::json::exception& e) {
      DL_FAIL("checkpoint '" << path << "': malformed metadata JSON: " << e.what());
    }
  }
  return c;
}

Checkpoint load_checkpoint(const std::string& path, const NamedTensors& model_state, Optimizer* optimizer,
                           Rng* rng, bool strict) {
  Checkpoint c = read_checkpoint(path);
  // Check everything first; Optimizer::load_state validates before it changes anything, and
  // nothing after it can fail, so the restore is all-or-nothing.
  check_load_state(model_state, c.model, path, strict);
  if (optimizer) {
    DL_CHECK(!c.optimizer_name.empty(), "checkpoint '" << path << "' holds no optimizer state");
    DL_CHECK(c.optimizer_name == optimizer->name(), "checkpoint '" << path << "' holds " << c.optimizer_name
                                                                   << " state, but the optimizer is "
                                                                   << optimizer->name());
  }
  DL_CHECK(!rng || !c.rng.empty(), "checkpoint '" << path << "' holds no RNG state");
  if (optimizer) {
    try {
      optimizer->load_state(c.optimizer);
    } catch (const Error& e) {
      DL_FAIL("checkpoint '" << path << "': " << e.what());
    }
  }
  load_state(model_state, c.model, path, strict);
  if (rng)
    for (int i = 0; i < 4; ++i) rng->set_state_word(i, c.rng[static_cast<size_t>(i)]);
  return c;
}

}  // namespace dl
