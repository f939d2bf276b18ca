// safetensors files (https://github.com/huggingface/safetensors): the native weights format.
// Reading maps the file and copies each tensor out (F32/I32/U8 as stored; BF16, F16 and F64
// converted to F32; I64 to I32 and BOOL to U8 with range checks), after validating the whole
// header first. Writing is atomic: a temporary file in the same folder, fsync, then rename.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "weights/named_tensors.h"

namespace dl {

// Reads every tensor, in the order of their data offsets (the order they were written in).
NamedTensors read_safetensors(const std::string& path);
// Same, and also returns the header's "__metadata__" string map (empty when absent).
NamedTensors read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata);
// Only the "__metadata__" map (reads the header, not the data).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// Writes F32, F64, I32 and U8 tensors (CUDA tensors are copied to the host) in the given order.
// Names must be unique and non-empty; "__metadata__" is reserved. On any failure the file at
// `path` is left as it was and the error says why.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// IEEE half / bfloat16 bit patterns -> float (exact; subnormals, inf and NaN preserved).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);

namespace detail {
// Test hook: the next atomic write fails (as if the disk were full) after writing `bytes` bytes
// of the temporary file. Negative (the default) disables it. Used by the tests only.
void fail_next_write_after(int64_t bytes);
}  // namespace detail

}  // namespace dl
