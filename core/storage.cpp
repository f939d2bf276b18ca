#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace dl {
namespace {
std::atomic<size_t> g_cpu_current{0};
std::atomic<size_t> g_cpu_peak{0};
}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device == Device::CPU) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    data_ = std::aligned_alloc(64, rounded);
    DL_CHECK(data_ != nullptr, "out of host memory allocating " << bytes << " bytes");
    size_t cur = g_cpu_current.fetch_add(bytes) + bytes;
    size_t peak = g_cpu_peak.load();
    while (cur > peak && !g_cpu_peak.compare_exchange_weak(peak, cur)) {
    }
  } else {
#ifdef DEEPERLAB_WITH_CUDA
    data_ = cuda::device_alloc(bytes);
#else
    DL_FAIL("CUDA tensor requested, but this build has no CUDA backend (rebuild with nvcc available)");
#endif
  }
}

Storage::~Storage() {
  if (device_ == Device::CPU) {
    std::free(data_);
    g_cpu_current.fetch_sub(bytes_);
  } else {
#ifdef DEEPERLAB_WITH_CUDA
    cuda::device_free(data_, bytes_);
#endif
  }
}

size_t memory_current(Device d) {
#ifdef DEEPERLAB_WITH_CUDA
  if (d == Device::CUDA) return cuda::current_bytes();
#endif
  return d == Device::CPU ? g_cpu_current.load() : 0;
}
size_t memory_peak(Device d) {
#ifdef DEEPERLAB_WITH_CUDA
  if (d == Device::CUDA) return cuda::peak_bytes();
#endif
  return d == Device::CPU ? g_cpu_peak.load() : 0;
}
void memory_reset_peak(Device d) {
#ifdef DEEPERLAB_WITH_CUDA
  if (d == Device::CUDA) return cuda::reset_peak_bytes();
#endif
  if (d == Device::CPU) g_cpu_peak.store(g_cpu_current.load());
}

bool cuda_available() {
#ifdef DEEPERLAB_WITH_CUDA
  return cuda::available();
#else
  return false;
#endif
}

}  // namespace dl
