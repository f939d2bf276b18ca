// Atomic file writes shared by every writer in weights/: the bytes go to a temporary file next
// to the target (same filesystem, so rename is atomic), are fsync'ed, and only then renamed over
// the target. A reader therefore sees either the old file or the complete new one, never a mix.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dl {

struct ByteSpan {
  const void* data;
  size_t size;
};

// Writes the concatenation of `chunks` to `path` atomically. On failure the temporary file is
// removed, `path` is untouched, and dl::Error names the file and the system's reason.
void write_file_atomic(const std::string& path, const std::vector<ByteSpan>& chunks);

}  // namespace dl
