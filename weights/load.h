// Loading weights into a model: every name, shape and dtype is checked before a single byte is
// copied, and all problems are reported in one error, so a load is all-or-nothing.
#pragma once
#include <string>

#include "weights/named_tensors.h"

namespace dl {

// Copies each source tensor into the model tensor of the same name, in place (the model tensor
// keeps its device; F32 <-> F64 are converted, other dtype differences are errors).
// strict: missing and unexpected tensors are errors; otherwise they are skipped (shape and dtype
// mismatches are always errors). `source_name` (usually the file) goes into the error message.
void load_state(const NamedTensors& model_state, const NamedTensors& source, const std::string& source_name,
                bool strict = true);

// The checks of load_state without the copy: throws the same error, changes nothing.
void check_load_state(const NamedTensors& model_state, const NamedTensors& source,
                      const std::string& source_name, bool strict = true);

// Reads a weights file chosen by extension: .safetensors or .json. A checkpoint written by
// save_checkpoint reads as its model tensors only (the optimizer's "optim/..." entries are dropped).
NamedTensors read_weights(const std::string& path);
// Writes .safetensors or .json by extension.
void write_weights(const std::string& path, const NamedTensors& tensors);

// True when `s` ends with `suffix`.
bool ends_with(const std::string& s, const std::string& suffix);

}  // namespace dl
