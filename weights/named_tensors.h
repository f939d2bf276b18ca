// NamedTensors: the ordered (name, tensor) list every weights file, model state and optimizer
// state is exchanged as. Ordered (not a map) so that files keep the model's parameter order.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dl {

// Same alias as in core/optim.h (an identical re-declaration is legal C++).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The tensor called `name`, or an undefined Tensor.
inline Tensor find_tensor(const NamedTensors& ts, const std::string& name) {
  for (const auto& kv : ts)
    if (kv.first == name) return kv.second;
  return Tensor();
}

}  // namespace dl
