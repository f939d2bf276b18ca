// Device discovery, the one stream, copies and the DEEPERLAB_CUDA_SYNC debugging mode.
// Non-obvious: every copy goes through the same stream as the kernels and host-side copies wait for
// it, so callers never see a half-finished result and pageable host buffers can be freed at once.
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda/check.h"
#include "cuda/handles.h"
#include "cuda/runtime.h"

namespace dl::cuda {
namespace {

struct DeviceInfo {
  bool ok = false;
  std::string reason;
  std::string name = "none";
};

const DeviceInfo& device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear, so later checks do not report this
      d.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      return d;
    }
    if (count <= 0) {
      d.reason = "no CUDA device found";
      return d;
    }
    cudaDeviceProp prop{};
    const cudaError_t e2 = cudaGetDeviceProperties(&prop, 0);
    if (e2 != cudaSuccess) {
      cudaGetLastError();
      d.reason = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e2);
      return d;
    }
    d.ok = true;
    d.name = prop.name;
    return d;
  }();
  return info;
}

// -1: not decided yet (read DEEPERLAB_CUDA_SYNC on first use), 0/1: decided.
std::atomic<int> g_sync{-1};

}  // namespace

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return false;
  std::string s(v);
  for (auto& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s == "1" || s == "true" || s == "on" || s == "yes";
}

bool available() {
  return device_info().ok;
}
const char* unavailable_reason() {
  return device_info().reason.c_str();
}
const char* device_name() {
  return device_info().name.c_str();
}

cudaStream_t stream() {
  static const cudaStream_t s = [] {
    DL_CHECK(available(), "CUDA requested, but no usable CUDA device (" << unavailable_reason() << ")");
    CUDA_CHECK(cudaSetDevice(0));
    cudaStream_t st = nullptr;
    // A blocking stream: stray work on the legacy default stream still orders with ours.
    CUDA_CHECK(cudaStreamCreate(&st));
    return st;  // never destroyed: tensors freed during static destruction may still use it
  }();
  return s;
}

void synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

bool sync_after_ops() {
  int v = g_sync.load(std::memory_order_relaxed);
  if (v < 0) {
    v = env_flag("DEEPERLAB_CUDA_SYNC") ? 1 : 0;
    g_sync.store(v);
  }
  return v == 1;
}

void set_sync_after_ops(bool on) {
  g_sync.store(on ? 1 : 0);
}

void check_after_op(const char* op) {
  if (!sync_after_ops()) return;
  const cudaError_t e = cudaStreamSynchronize(stream());
  const cudaError_t last = cudaGetLastError();
  const cudaError_t bad = e != cudaSuccess ? e : last;
  DL_CHECK(bad == cudaSuccess, op << ": CUDA error after the op (DEEPERLAB_CUDA_SYNC=1): "
                                  << cudaGetErrorName(bad) << ": " << cudaGetErrorString(bad));
}

void memcpy_h2d(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  // The host buffer may be freed as soon as we return.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void memcpy_d2h(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void memcpy_d2d(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
}

}  // namespace dl::cuda
