// Extra statistics of the caching device allocator (cuda/allocator.cu), for tests and benchmarks.
#pragma once
#include <cstddef>

namespace dl::cuda {

size_t cached_bytes();        // bytes held in free lists, ready for reuse
size_t reserved_bytes();      // bytes obtained from cudaMalloc and not yet returned (in use + cached)
size_t num_device_mallocs();  // cudaMalloc calls made so far (steady state: constant)
// Allocation granularity: every request is rounded up to a multiple of this.
constexpr size_t kAllocRound = 512;

}  // namespace dl::cuda

#include "cuda/runtime.h"

namespace dl::cuda {

// Scratch memory for one launcher call, returned to the cache when the launcher returns. Freeing
// while kernels still use it is safe on stream() (stream-ordered reuse); on any other stream the
// destructor waits for that stream first.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t s) : p_(device_alloc(bytes)), bytes_(bytes), s_(s) {}
  ~DeviceBuffer() {
    if (s_ != stream()) cudaStreamSynchronize_noexcept();
    device_free(p_, bytes_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void cudaStreamSynchronize_noexcept();
  void* p_;
  size_t bytes_;
  cudaStream_t s_;
};

}  // namespace dl::cuda
