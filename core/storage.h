// A flat, owned block of memory on one device. CPU blocks are 64-byte aligned (big ones reused by
// size inside a HostCacheScope); CUDA blocks come from the caching allocator. Byte counters
// (current and peak) are kept per device.
#pragma once
#include <cstddef>
#include <memory>

#include "core/dtype.h"

namespace dl {

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;  // copies are explicit (Tensor::clone), never accidental
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

// Bytes currently held by tensors on a device, and the peak since the last reset.
size_t memory_current(Device d);
size_t memory_peak(Device d);
void memory_reset_peak(Device d);
// While at least one HostCacheScope lives, freed host blocks of 1 MiB and more are kept for reuse
// by size (a training loop allocates the same buffers every step; see storage.cpp); when the last
// scope ends they are freed. Kept blocks never count as live tensor bytes.
class HostCacheScope {
 public:
  HostCacheScope();
  ~HostCacheScope();
  HostCacheScope(const HostCacheScope&) = delete;
  HostCacheScope& operator=(const HostCacheScope&) = delete;
};

bool cuda_available();  // false in a build without CUDA or on a machine without a usable GPU

}  // namespace dl
