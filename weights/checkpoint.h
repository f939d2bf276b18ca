// Training checkpoints: model state + optimizer state + step + RNG state + free-form JSON
// metadata (e.g. the config) in ONE safetensors file, written atomically. Model tensors keep
// their names (so a checkpoint is also a weights file), optimizer tensors are stored under
// "optim/<name>", and the scalars live in the header's __metadata__ (see docs/FORMATS.md).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/optim.h"
#include "core/rng.h"
#include "weights/named_tensors.h"

namespace dl {

struct Checkpoint {
  NamedTensors model;          // as stored (host tensors)
  NamedTensors optimizer;      // without the "optim/" prefix
  std::string optimizer_name;  // "sgd", "adamw" or "" when none was stored
  int64_t step = 0;
  std::vector<uint64_t> rng;  // the 4 state words, empty when none was stored
  nlohmann::json metadata = nlohmann::json::object();
};

// `optimizer` and `rng` may be null (not stored). A failed write leaves any previous file intact.
void save_checkpoint(const std::string& path, const NamedTensors& model_state, const Optimizer* optimizer,
                     int64_t step, const Rng* rng, const nlohmann::json& metadata = nlohmann::json::object());

// Reads everything without applying it. Errors when the file is not a checkpoint.
Checkpoint read_checkpoint(const std::string& path);

// Restores a checkpoint into live objects: the model tensors in place (load_state rules), the
// optimizer state and the RNG (each when non-null; a checkpoint without them is an error then).
// Everything is checked before anything changes. Returns what was read (step, metadata, ...).
Checkpoint load_checkpoint(const std::string& path, const NamedTensors& model_state, Optimizer* optimizer,
                           Rng* rng, bool strict = true);

}  // namespace dl
