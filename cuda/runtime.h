// Plain C++ view of the CUDA runtime pieces the core needs (device memory, copies, the stream),
// so core/ compiles without nvcc; implemented in cuda/runtime.cu and cuda/allocator.cu.
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace dl::cuda {

// True when a CUDA device is usable. Any runtime error (no driver, insufficient driver,
// no device) counts as "no GPU".
bool available();
const char* device_name();
// Why available() is false ("" when a device is usable), e.g. "cudaErrorInsufficientDriver: ...".
const char* unavailable_reason();

// The stream every op is enqueued on (one per process; ops are stream-ordered).
cudaStream_t stream();
void synchronize();
// DEEPERLAB_CUDA_SYNC=1: synchronise and check for errors after every op.
bool sync_after_ops();
void set_sync_after_ops(bool on);  // overrides the environment (tests)
void check_after_op(const char* op);

// Caching, stream-ordered device allocator: freed blocks are kept and reused, so the
// steady-state training loop never calls cudaMalloc.
void* device_alloc(size_t bytes);
void device_free(void* p, size_t bytes);
size_t current_bytes();
size_t peak_bytes();
void reset_peak_bytes();
void empty_cache();

void memcpy_h2d(void* dst, const void* src, size_t bytes);
void memcpy_d2h(void* dst, const void* src, size_t bytes);
void memcpy_d2d(void* dst, const void* src, size_t bytes);
void memset_zero(void* dst, size_t bytes);

}  // namespace dl::cuda
