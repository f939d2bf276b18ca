// Caching, stream-ordered device allocator. Requests are rounded up to 512 bytes; freed blocks go to
// a free list keyed by size and are handed out again (best fit, at most 1/8 larger than asked), so
// a training loop that repeats the same shapes stops calling cudaMalloc after its first step.
// Non-obvious: reuse without events is safe because every kernel, copy and library call runs on the
// one stream (runtime.cu): work that used a freed block is ordered before work that reuses it.
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/runtime.h"

namespace dl::cuda {
namespace {

struct State {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;       // block size -> block
  std::unordered_map<void*, size_t> live_blocks;  // block -> block size
  size_t current = 0, peak = 0, cached = 0, reserved = 0, mallocs = 0;
};

// Leaked on purpose: tensors destroyed during static destruction still find it.
State& state() {
  static State* s = new State();
  return *s;
}

// Returns cached blocks to the driver. Caller holds the lock.
void release_cached(State& s) {
  if (s.free_blocks.empty()) return;
  // Pending kernels may still read these blocks (their last users were freed stream-ordered).
  cudaStreamSynchronize(stream());
  for (auto& kv : s.free_blocks) {
    cudaFree(kv.second);
    s.reserved -= kv.first;
  }
  s.free_blocks.clear();
  s.cached = 0;
  cudaGetLastError();
}

std::string mib(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", double(b) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

void* device_alloc(size_t bytes) {
  DL_CHECK(available(), "CUDA tensor requested, but no usable CUDA device (" << unavailable_reason() << ")");
  DL_CHECK(bytes <= (size_t(1) << 62), "CUDA allocation of " << bytes << " bytes is not a plausible size");
  const size_t size = bytes == 0 ? kAllocRound : (bytes + kAllocRound - 1) / kAllocRound * kAllocRound;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  void* p = nullptr;
  size_t got = 0;
  auto it = s.free_blocks.lower_bound(size);
  if (it != s.free_blocks.end() && it->first <= size + size / 8) {
    p = it->second;
    got = it->first;
    s.free_blocks.erase(it);
    s.cached -= got;
  } else {
    (void)stream();  // selects the device before the first cudaMalloc
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
      cudaGetLastError();  // out-of-memory is not sticky; clear it
      release_cached(s);
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      cudaGetLastError();
      DL_FAIL("CUDA out of memory: requested "
              << bytes << " bytes (" << mib(bytes) << "), free " << free_b << " bytes (" << mib(free_b)
              << ") of " << total_b << " bytes (" << mib(total_b) << "); held by tensors " << s.current
              << " bytes; " << cudaGetErrorName(e) << ": " << cudaGetErrorString(e));
    }
    got = size;
    s.reserved += got;
    ++s.mallocs;
  }
  s.live_blocks.emplace(p, got);
  s.current += got;
  if (s.current > s.peak) s.peak = s.current;
  return p;
}

// Never throws: it runs inside Storage's destructor.
void device_free(void* p, size_t /*bytes*/) {
  if (!p) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live_blocks.find(p);
  if (it == s.live_blocks.end()) {
    std::fprintf(stderr, "deeperlab: device_free of an unknown pointer %p ignored\n", p);
    return;
  }
  const size_t size = it->second;
  s.live_blocks.erase(it);
  s.current -= size;
  s.free_blocks.emplace(size, p);
  s.cached += size;
}

size_t current_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.current;
}
size_t peak_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.peak;
}
void reset_peak_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.peak = s.current;
}
size_t cached_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.cached;
}
size_t reserved_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.reserved;
}
size_t num_device_mallocs() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.mallocs;
}

void empty_cache() {
  if (!available()) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  release_cached(s);
}

}  // namespace dl::cuda

namespace dl::cuda {
void DeviceBuffer::cudaStreamSynchronize_noexcept() {
  cudaStreamSynchronize(s_);
  cudaGetLastError();
}
}  // namespace dl::cuda
