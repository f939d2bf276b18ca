#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "core/error.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace dl {
namespace {
std::atomic<size_t> g_cpu_current{0};
std::atomic<size_t> g_cpu_peak{0};

// While a HostCacheScope lives (the training loop), freed host blocks of 1 MiB and more are kept for
// the next request of the same size. Why: a training step frees and allocates the same activation
// and gradient buffers every step, and fresh pages cost a fault and zeroing each (about a fifth of
// a 513x513 CPU training step). Cached bytes stay below the peak of live tensor bytes. Inference
// runs without it: one pass reuses few sizes and would keep up to its peak again in idle blocks.
// DEEPERLAB_HOST_CACHE=0 turns it off everywhere.
constexpr size_t kCacheFrom = size_t(1) << 20;

struct HostCache {
  std::mutex mu;
  std::multimap<size_t, void*> blocks;  // by rounded size
  size_t bytes = 0;
  int scopes = 0;  // live HostCacheScopes
  const bool allowed = [] {
    const char* e = std::getenv("DEEPERLAB_HOST_CACHE");
    return !(e && std::strcmp(e, "0") == 0);
  }();
};
HostCache& host_cache() {
  static HostCache* c = new HostCache;  // never destroyed: tensors may be freed during static destruction
  return *c;
}

size_t host_rounded(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }

void* host_alloc(size_t rounded) {
  HostCache& c = host_cache();
  if (rounded >= kCacheFrom && c.allowed) {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.blocks.find(rounded);
    if (it != c.blocks.end()) {
      void* p = it->second;
      c.blocks.erase(it);
      c.bytes -= rounded;
      return p;
    }
  }
  return std::aligned_alloc(64, rounded);
}

void host_free(void* p, size_t rounded) {
  HostCache& c = host_cache();
  if (rounded >= kCacheFrom && c.allowed) {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.scopes > 0 && c.bytes + rounded <= g_cpu_peak.load()) {
      c.blocks.emplace(rounded, p);
      c.bytes += rounded;
      return;
    }
  }
  std::free(p);
}

}  // namespace

HostCacheScope::HostCacheScope() {
  HostCache& c = host_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  ++c.scopes;
}

HostCacheScope::~HostCacheScope() {
  HostCache& c = host_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (--c.scopes > 0) return;
  for (auto& b : c.blocks) std::free(b.second);
  c.blocks.clear();
  c.bytes = 0;
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device == Device::CPU) {
    data_ = host_alloc(host_rounded(bytes));
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
    host_free(data_, host_rounded(bytes_));
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
