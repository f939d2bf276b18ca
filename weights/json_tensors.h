// JSON tensor dumps: {"name": {"shape": [..], "dtype": "F32", "data": [..]}, ...}, data flat in
// row-major order. Human-readable and easy to produce from any language; kept for tests, small
// models and debugging (safetensors is the native format). Floats are written with 9 significant
// digits, so F32 values read back bit-exactly.
#pragma once
#include <string>

#include "weights/named_tensors.h"

namespace dl {

// dtypes: F32, I32, U8 read as is; F64 read as F32. Tensors come back in file order.
NamedTensors read_json_tensors(const std::string& path);
NamedTensors parse_json_tensors(const std::string& text, const std::string& source_name = "<string>");

// Writes F32, F64, I32 and U8 tensors (CUDA tensors copied to the host) atomically. NaN and
// infinity are an error (JSON cannot hold them).
void write_json_tensors(const std::string& path, const NamedTensors& tensors);
std::string json_tensors_to_string(const NamedTensors& tensors);

}  // namespace dl
