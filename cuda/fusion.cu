// Instance prediction and fusion kernels (the GPU half of parser/instance.cpp): argmax, offset
// refinement, keypoint votes, local maxima with compaction, candidate expansion, pixel assignment,
// per-segment statistics and the final id map; plus the few host helpers that keep the pipeline
// free of needless synchronisations (device-resident sigmoid table, queued copies, a cached
// page-locked buffer for the id map read-back).
//
// The non-obvious decision: votes are 64-bit fixed-point integer atomics and all float arithmetic
// goes through the shared non-contracting helpers of cuda/fusion.h, so the result is bit-identical
// to the CPU reference and independent of atomic ordering.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <mutex>

#include "core/error.h"
#include "cuda/check.h"
#include "cuda/fusion.h"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

void check_launch(const char* op) {
  const cudaError_t e = cudaGetLastError();
  DL_CHECK(e == cudaSuccess, op << ": kernel launch failed: " << cudaGetErrorString(e));
  check_after_op(op);
}

// One launch for all head tensors (blockIdx.y picks the tensor); 16-byte loads where the tensor
// is aligned (the scan is bandwidth-bound). The first bad index per tensor is kept (atomicMin).
__global__ void fusion_check_finite_kernel(unsigned long long* first_bad, FiniteCheck args) {
  const int t = blockIdx.y;
  const float* x = args.x[t];
  const int64_t n = args.n[t];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t start = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  auto bad = [](float v) { return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u; };
  int64_t done = 0;
  if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    const int64_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int64_t i = start; i < n4; i += stride) {
      const float4 v = __ldg(x4 + i);
      if (bad(v.x) || bad(v.y) || bad(v.z) || bad(v.w)) {
        const int64_t j = 4 * i + (bad(v.x) ? 0 : bad(v.y) ? 1 : bad(v.z) ? 2 : 3);
        atomicMin(first_bad + t, static_cast<unsigned long long>(j));
      }
    }
    done = 4 * n4;
  }
  for (int64_t i = done + start; i < n; i += stride)
    if (bad(__ldg(x + i))) atomicMin(first_bad + t, static_cast<unsigned long long>(i));
}

__global__ void fusion_argmax_kernel(int32_t* labels, uint8_t* thing, const float* sem, const uint8_t* lut, int k,
                                     int64_t hw) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= hw) return;
  float best = sem[i];
  int lab = 0;
  for (int c = 1; c < k; ++c) {
    const float v = sem[c * hw + i];
    if (v > best) {
      best = v;
      lab = c;
    }
  }
  labels[i] = lab;
  thing[i] = lut[lab];
}

// Votes of neighbouring pixels mostly land on the same few pixels (a keypoint), so the threads of
// a warp adding to the same address are combined first (integer sums: still exact) and one
// atomic per address is issued.
struct AtomicAdd {
  unsigned long long* a;
  __device__ void operator()(int64_t i, unsigned long long v) const {
    const unsigned active = __activemask();
    const unsigned peers = __match_any_sync(active, static_cast<unsigned long long>(i));
    unsigned long long sum = 0;
    for (unsigned p = peers; p; p &= p - 1) sum += __shfl_sync(peers, v, __ffs(p) - 1);
    if ((threadIdx.x & 31) == unsigned(__ffs(peers) - 1)) atomicAdd(a + i, sum);
  }
};

__global__ void fusion_vote_short_kernel(unsigned long long* acc, const float* heat, const float* shrt, const float* lut,
                                         int h, int w, float min_w, float weight) {
  const int64_t hw = int64_t(h) * w;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int k = blockIdx.y;
  if (i >= hw) return;
  const float hv = __ldg(lut + inst::sigmoid_lut_index(heat[k * hw + i]));
  if (!(hv >= min_w)) return;
  const int y = int(i / w), x = int(i % w);
  inst::splat(inst::f_add(float(y), shrt[(2 * k) * hw + i]), inst::f_add(float(x), shrt[(2 * k + 1) * hw + i]), h, w,
              inst::f_mul(hv, weight), AtomicAdd{acc + k * hw});
}

__global__ void fusion_vote_long_kernel(unsigned long long* acc, float* refined, const uint8_t* thing,
                                        const float* lng, const float* shrt, int h, int w, int steps, float weight) {
  const int64_t hw = int64_t(h) * w;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int k = blockIdx.y;
  if (i >= hw || !thing[i]) return;
  const int y = int(i / w), x = int(i % w);
  float my = lng[(2 * k) * hw + i], mx = lng[(2 * k + 1) * hw + i];
  inst::refine_at(my, mx, y, x, shrt + (2 * k) * hw, shrt + (2 * k + 1) * hw, h, w, steps);
  refined[(2 * k) * hw + i] = my;
  refined[(2 * k + 1) * hw + i] = mx;
  if (weight > 0.0f)
    inst::splat(inst::f_add(float(y), my), inst::f_add(float(x), mx), h, w, weight, AtomicAdd{acc + k * hw});
}

__global__ void fusion_candidates_kernel(int* count, int* list, int capacity, const unsigned long long* acc, int h,
                                         int w, unsigned long long thr) {
  const int64_t hw = int64_t(h) * w;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int k = blockIdx.y;
  if (i >= hw) return;
  const unsigned long long* a = acc + k * hw;
  const unsigned long long v = a[i];
  if (v <= thr) return;
  const int y = int(i / w), x = int(i % w);
  for (int yy = max(0, y - 1); yy <= min(h - 1, y + 1); ++yy)
    for (int xx = max(0, x - 1); xx <= min(w - 1, x + 1); ++xx)
      if (a[int64_t(yy) * w + xx] > v) return;
  const int slot = atomicAdd(count, 1);
  if (slot < capacity) list[slot] = int(k * hw + i);
}

__global__ void fusion_expand_kernel(inst::Proposal* out, const int* list, const int* count, int capacity,
                                     const float* mid, const float* shrt, const unsigned long long* acc, int h, int w,
                                     int steps) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= min(*count, capacity)) return;
  const int64_t hw = int64_t(h) * w;
  const int k = int(list[c] / hw);
  const int64_t i = list[c] % hw;
  inst::Proposal p;
  inst::expand_candidate(k, int(i / w), int(i % w), mid, shrt, acc, h, w, steps, p);
  out[c] = p;
}

// Same pruned search as the CPU assign_pixels (exact lower bound, lowest index on ties).
__global__ void fusion_assign_kernel(int32_t* owner, const int32_t* labels, const uint8_t* thing,
                                     const float* refined, const float* kp, const float* bar, int n, int k, int h,
                                     int w) {
  const int64_t hw = int64_t(h) * w;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= hw) return;
  if (!thing[i]) {
    owner[i] = labels[i];
    return;
  }
  if (n == 0) {
    owner[i] = -1;
    return;
  }
  const int y = int(i / w), x = int(i % w);
  float p[10];
  for (int q = 0; q < inst::kP; ++q) {
    p[2 * q] = inst::f_add(float(y), refined[(2 * q) * hw + i]);
    p[2 * q + 1] = inst::f_add(float(x), refined[(2 * q + 1) * hw + i]);
  }
  const float py = (p[0] + p[2] + p[4] + p[6] + p[8]) / 5.0f;
  const float px = (p[1] + p[3] + p[5] + p[7] + p[9]) / 5.0f;
  int j0 = 0;
  float lb0 = 3.4e38f;
  for (int j = 0; j < n; ++j) {
    const float dy = py - __ldg(bar + 2 * j), dx = px - __ldg(bar + 2 * j + 1);
    const float lb = dy * dy + dx * dx;
    if (lb < lb0) {
      lb0 = lb;
      j0 = j;
    }
  }
  float best = inst::assign_cost(p, kp + 10 * j0);
  int bj = j0;
  float m = best * 1.0001f + 0.01f, b2 = m * m;
  for (int j = 0; j < n; ++j) {
    if (j == j0) continue;
    const float dy = py - __ldg(bar + 2 * j), dx = px - __ldg(bar + 2 * j + 1);
    if (25.0f * (dy * dy + dx * dx) > b2) continue;
    const float c = inst::assign_cost(p, kp + 10 * j);
    if (c < best || (c == best && j < bj)) {
      best = c;
      bj = j;
      m = best * 1.0001f + 0.01f;
      b2 = m * m;
    }
  }
  owner[i] = k + bj;
}

__global__ void fusion_stats_init_kernel(unsigned long long* area, int* bbox, unsigned long long* votes, int owners,
                                         int nvotes) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < owners) {
    area[i] = 0;
    bbox[i] = INT_MAX;
    bbox[owners + i] = INT_MAX;
    bbox[2 * owners + i] = -1;
    bbox[3 * owners + i] = -1;
  }
  if (i < nvotes) votes[i] = 0;
}

__global__ void fusion_stats_kernel(unsigned long long* area, int* bbox, unsigned long long* votes,
                                    const int32_t* owner, const int32_t* labels, int k, int n, int h, int w) {
  const int64_t hw = int64_t(h) * w;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= hw) return;
  const int o = owner[i];
  if (o < 0) return;
  const int owners = k + n;
  const int y = int(i / w), x = int(i % w);
  atomicAdd(area + o, 1ull);
  atomicMin(bbox + o, y);
  atomicMin(bbox + owners + o, x);
  atomicMax(bbox + 2 * owners + o, y);
  atomicMax(bbox + 3 * owners + o, x);
  if (o >= k) atomicAdd(votes + int64_t(o - k) * k + labels[i], 1ull);
}

// Per-block statistics in shared memory (one global atomic per owner and block instead of one per
// pixel: a stuff class can own half the image). Layout: area[owners], votes[n * k], bbox[4 * owners].
__global__ void fusion_stats_shared_kernel(unsigned long long* area, int* bbox, unsigned long long* votes,
                                           const int32_t* owner, const int32_t* labels, int k, int n, int h, int w) {
  extern __shared__ unsigned long long sh[];
  const int owners = k + n, nv = n * k;
  unsigned long long* s_area = sh;
  unsigned long long* s_votes = sh + owners;
  int* s_box = reinterpret_cast<int*>(sh + owners + nv);
  for (int i = threadIdx.x; i < owners; i += blockDim.x) {
    s_area[i] = 0;
    s_box[i] = INT_MAX;
    s_box[owners + i] = INT_MAX;
    s_box[2 * owners + i] = -1;
    s_box[3 * owners + i] = -1;
  }
  for (int i = threadIdx.x; i < nv; i += blockDim.x) s_votes[i] = 0;
  __syncthreads();
  const int64_t hw = int64_t(h) * w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < hw; i += int64_t(gridDim.x) * blockDim.x) {
    const int o = owner[i];
    if (o < 0) continue;
    const int y = int(i / w), x = int(i % w);
    atomicAdd(s_area + o, 1ull);
    atomicMin(s_box + o, y);
    atomicMin(s_box + owners + o, x);
    atomicMax(s_box + 2 * owners + o, y);
    atomicMax(s_box + 3 * owners + o, x);
    if (o >= k) atomicAdd(s_votes + int64_t(o - k) * k + labels[i], 1ull);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < owners; i += blockDim.x) {
    if (s_area[i] == 0) continue;
    atomicAdd(area + i, s_area[i]);
    atomicMin(bbox + i, s_box[i]);
    atomicMin(bbox + owners + i, s_box[owners + i]);
    atomicMax(bbox + 2 * owners + i, s_box[2 * owners + i]);
    atomicMax(bbox + 3 * owners + i, s_box[3 * owners + i]);
  }
  for (int i = threadIdx.x; i < nv; i += blockDim.x)
    if (s_votes[i]) atomicAdd(votes + i, s_votes[i]);
}

__global__ void fusion_ids_kernel(int32_t* ids, const int32_t* owner, const int32_t* owner_to_id, int64_t hw) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= hw) return;
  const int o = owner[i];
  ids[i] = o < 0 ? 0 : owner_to_id[o];
}

}  // namespace

void fusion_check_finite(unsigned long long* first_bad, const FiniteCheck& args, cudaStream_t s) {
  int64_t most = 0;
  for (int t = 0; t < FiniteCheck::kMax; ++t) most = std::max(most, args.n[t]);
  CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, FiniteCheck::kMax * sizeof(unsigned long long), s));
  if (most == 0) return;
  const dim3 grid(unsigned(std::min<int64_t>(blocks_for((most + 3) / 4), 1024)), FiniteCheck::kMax);
  fusion_check_finite_kernel<<<grid, kThreads, 0, s>>>(first_bad, args);
  check_launch("fusion_check_finite");
}

void fusion_argmax(int32_t* labels, uint8_t* thing, const float* semantic, const uint8_t* isthing_lut, int k,
                   int64_t hw, cudaStream_t s) {
  fusion_argmax_kernel<<<blocks_for(hw), kThreads, 0, s>>>(labels, thing, semantic, isthing_lut, k, hw);
  check_launch("fusion_argmax");
}

void fusion_vote_short(unsigned long long* acc, const float* heat, const float* shrt, const float* lut, int h, int w,
                       float min_vote_weight, float weight, cudaStream_t s) {
  const dim3 grid(blocks_for(int64_t(h) * w), inst::kP);
  fusion_vote_short_kernel<<<grid, kThreads, 0, s>>>(acc, heat, shrt, lut, h, w, min_vote_weight, weight);
  check_launch("fusion_vote_short");
}

void fusion_vote_long(unsigned long long* acc, float* refined, const uint8_t* thing, const float* lng,
                      const float* shrt, int h, int w, int steps, float weight, cudaStream_t s) {
  const dim3 grid(blocks_for(int64_t(h) * w), inst::kP);
  fusion_vote_long_kernel<<<grid, kThreads, 0, s>>>(acc, refined, thing, lng, shrt, h, w, steps, weight);
  check_launch("fusion_vote_long");
}

void fusion_candidates(int* count, int* list, int capacity, const unsigned long long* acc, int h, int w,
                       unsigned long long thr, cudaStream_t s) {
  const dim3 grid(blocks_for(int64_t(h) * w), inst::kP);
  fusion_candidates_kernel<<<grid, kThreads, 0, s>>>(count, list, capacity, acc, h, w, thr);
  check_launch("fusion_candidates");
}

void fusion_expand(inst::Proposal* out, const int* list, const int* count, int capacity, const float* mid,
                   const float* shrt, const unsigned long long* acc, int h, int w, int steps, cudaStream_t s) {
  if (capacity == 0) return;
  fusion_expand_kernel<<<blocks_for(capacity), kThreads, 0, s>>>(out, list, count, capacity, mid, shrt, acc, h, w,
                                                                  steps);
  check_launch("fusion_expand");
}

void fusion_assign(int32_t* owner, const int32_t* labels, const uint8_t* thing, const float* refined,
                   const float* inst_kp, const float* inst_bar, int n, int k, int h, int w, cudaStream_t s) {
  fusion_assign_kernel<<<blocks_for(int64_t(h) * w), kThreads, 0, s>>>(owner, labels, thing, refined, inst_kp,
                                                                        inst_bar, n, k, h, w);
  check_launch("fusion_assign");
}

void fusion_stats(unsigned long long* area, int* bbox, unsigned long long* class_votes, const int32_t* owner,
                  const int32_t* labels, int k, int n, int h, int w, cudaStream_t s) {
  const int owners = k + n, nvotes = n * k;
  fusion_stats_init_kernel<<<blocks_for(std::max(owners, nvotes)), kThreads, 0, s>>>(area, bbox, class_votes, owners,
                                                                                      nvotes);
  check_launch("fusion_stats_init");
  const size_t shared = size_t(owners + nvotes) * 8 + size_t(owners) * 16;
  if (shared <= 48 * 1024) {
    const unsigned grid = unsigned(std::min<int64_t>(blocks_for(int64_t(h) * w), 1024));
    fusion_stats_shared_kernel<<<grid, kThreads, shared, s>>>(area, bbox, class_votes, owner, labels, k, n, h, w);
  } else {
    fusion_stats_kernel<<<blocks_for(int64_t(h) * w), kThreads, 0, s>>>(area, bbox, class_votes, owner, labels, k, n,
                                                                        h, w);
  }
  check_launch("fusion_stats");
}

void fusion_ids(int32_t* ids, const int32_t* owner, const int32_t* owner_to_id, int64_t hw, cudaStream_t s) {
  fusion_ids_kernel<<<blocks_for(hw), kThreads, 0, s>>>(ids, owner, owner_to_id, hw);
  check_launch("fusion_ids");
}

// The sigmoid table is the same for every call: uploaded once into a device global.
__device__ float g_sigmoid_lut[inst::kLutSize];

const float* fusion_sigmoid_lut(const float* host_lut) {
  static std::once_flag once;
  static const float* device_lut = nullptr;
  std::call_once(once, [&] {
    CUDA_CHECK(cudaMemcpyToSymbol(g_sigmoid_lut, host_lut, sizeof(g_sigmoid_lut)));
    void* p = nullptr;
    CUDA_CHECK(cudaGetSymbolAddress(&p, g_sigmoid_lut));
    device_lut = static_cast<const float*>(p);
  });
  return device_lut;
}

void fusion_h2d_async(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}

void fusion_d2h_async(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
}

void fusion_sync(cudaStream_t s) { CUDA_CHECK(cudaStreamSynchronize(s)); }

namespace {
struct PinnedHost {
  void* p = nullptr;
  size_t bytes = 0;
  void release() {
    if (p) cudaFreeHost(p);  // at process exit the runtime may be gone already: ignore the error
    p = nullptr;
    bytes = 0;
  }
  ~PinnedHost() { release(); }
};
PinnedHost& pinned_host() {
  thread_local PinnedHost b;
  return b;
}
}  // namespace

void* fusion_pinned_host(size_t bytes) {
  PinnedHost& b = pinned_host();
  if (bytes <= b.bytes) return b.p;
  CUDA_CHECK(cudaStreamSynchronize(stream()));  // no copy may still target the old buffer
  b.release();
  const size_t want = std::max<size_t>(bytes + bytes / 4, 1 << 20);
  CUDA_CHECK(cudaMallocHost(&b.p, want));
  b.bytes = want;
  return b.p;
}

void fusion_release_pinned_host() {
  if (pinned_host().p) CUDA_CHECK(cudaStreamSynchronize(stream()));
  pinned_host().release();
}

}  // namespace dl::cuda
