// CUDA kernels of the DeeperLab losses (cuda/loss.h), float, mirroring core/cpu/loss.cpp.
// Hard-pixel mining is an exact radix select: the losses' float bits are mapped to order-preserving
// uint32 keys, and four 8-bit histogram passes find the key of the K-th largest loss of each image
// (no sort). Ties at that key are resolved by pixel index with a chunked prefix count, as on the
// CPU, so both devices keep the same pixels. All reductions are two-stage with a fixed partition
// and a fixed-order final sum: results are deterministic run to run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "core/error.h"
#include "cuda/loss.h"

namespace dl::cuda {
namespace {

#define DL_LAUNCH_CHECK(op)                                                                  \
  do {                                                                                       \
    cudaError_t e_ = cudaGetLastError();                                                     \
    DL_CHECK(e_ == cudaSuccess, op << ": kernel launch failed: " << cudaGetErrorString(e_)); \
  } while (0)

constexpr int kThreads = 256;
constexpr int kItems = 16;                              // per thread in the selection kernels
constexpr int64_t kChunk = int64_t(kThreads) * kItems;  // pixels per selection block
constexpr int kReduceBlocks = 512;                      // partials of the (sum, count) reductions

// Scratch device memory from the caching allocator, released in stream order.
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Scratch(size_t b) : bytes(std::max<size_t>(b, 16)) { p = device_alloc(bytes); }
  ~Scratch() { device_free(p, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

unsigned grid_for(int64_t n, int threads = kThreads) {
  return unsigned(std::max<int64_t>(1, (n + threads - 1) / threads));
}

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// ---------------------------------------------------------------------------------------------
__global__ void count_bad_labels_kernel(unsigned long long* bad, const int32_t* labels, int64_t n,
                                        int32_t k) {
  unsigned long long local = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    local += (labels[i] < -1 || labels[i] >= k);
  if (local) atomicAdd(bad, local);
}

__global__ void softmax_ce_fwd_kernel(float* __restrict__ loss, const float* __restrict__ logits,
                                      const int32_t* __restrict__ labels, const float* __restrict__ weights,
                                      int64_t n, int64_t k, int64_t hw) {
  const int64_t ip = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ip >= n * hw) return;
  const int64_t i = ip / hw, p = ip % hw;
  const int32_t l = labels[ip];
  const float w = weights[ip];
  if (l < 0 || w == 0.0f) {
    loss[ip] = 0.0f;
    return;
  }
  const float* x = logits + i * k * hw + p;
  float mx = -INFINITY;
  for (int64_t c = 0; c < k; ++c) mx = fmaxf(mx, x[c * hw]);
  float se = 0.0f;
  for (int64_t c = 0; c < k; ++c) se += expf(x[c * hw] - mx);
  loss[ip] = w * (mx + logf(se) - x[int64_t(l) * hw]);
}

// ---- radix select: state per image = (prefix key, remaining rank) ----
__global__ void select_init_kernel(uint32_t* prefix, uint32_t* remaining, uint32_t* hist, int64_t n,
                                   uint32_t keep) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    prefix[i] = 0;
    remaining[i] = keep;
  }
  for (int64_t j = i; j < n * 256; j += int64_t(gridDim.x) * blockDim.x) hist[j] = 0;
}

// Histogram of the digit at `shift` over the keys whose higher digits equal the prefix.
__global__ void select_hist_kernel(uint32_t* hist, const float* __restrict__ loss, const uint32_t* prefix,
                                   int64_t hw, int shift) {
  __shared__ uint32_t h[256];
  const int64_t i = blockIdx.y;
  for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
  __syncthreads();
  const uint32_t pre = prefix[i];
  const uint32_t high_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
  const float* l = loss + i * hw;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < hw;
       p += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t key = order_key(l[p]);
    if ((key & high_mask) == (pre & high_mask)) atomicAdd(&h[(key >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += blockDim.x)
    if (h[b]) atomicAdd(&hist[i * 256 + b], h[b]);
}

// Picks the digit holding the remaining-th largest key, from the top; clears the histogram.
__global__ void select_digit_kernel(uint32_t* prefix, uint32_t* remaining, uint32_t* hist, int64_t n,
                                    int shift) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t* h = hist + i * 256;
  uint32_t rem = remaining[i], cum = 0;
  int digit = 0;
  for (int d = 255; d >= 0; --d) {
    if (cum + h[d] >= rem) {
      digit = d;
      break;
    }
    cum += h[d];
  }
  prefix[i] |= uint32_t(digit) << shift;
  remaining[i] = rem - cum;  // rank within the keys sharing the new prefix
  for (int d = 0; d < 256; ++d) h[d] = 0;
}

// Per chunk: the number of keys equal to the threshold (for tie ranks).
__global__ void count_equal_kernel(uint32_t* eq, const float* __restrict__ loss, const uint32_t* thr,
                                   int64_t hw, int64_t nchunks) {
  using Reduce = cub::BlockReduce<uint32_t, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t i = blockIdx.y, ch = blockIdx.x;
  const uint32_t t = thr[i];
  const float* l = loss + i * hw;
  const int64_t base = ch * kChunk + int64_t(threadIdx.x) * kItems;
  uint32_t c = 0;
  for (int j = 0; j < kItems; ++j) {
    const int64_t p = base + j;
    if (p < hw) c += order_key(l[p]) == t;
  }
  const uint32_t total = Reduce(tmp).Sum(c);
  if (threadIdx.x == 0) eq[i * nchunks + ch] = total;
}

// Exclusive prefix over the chunks of each image (a few hundred values: one thread per image).
__global__ void scan_chunks_kernel(uint32_t* eq, int64_t n, int64_t nchunks) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t run = 0;
  for (int64_t c = 0; c < nchunks; ++c) {
    const uint32_t v = eq[i * nchunks + c];
    eq[i * nchunks + c] = run;
    run += v;
  }
}

// Marks kept pixels: key > threshold, or key == threshold with tie rank < remaining; per-chunk sums.
__global__ void mark_kept_kernel(uint8_t* __restrict__ mask, float* __restrict__ chunk_sum,
                                 const float* __restrict__ loss, const uint32_t* thr,
                                 const uint32_t* remaining, const uint32_t* eq_before, int64_t hw,
                                 int64_t nchunks) {
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  const int64_t i = blockIdx.y, ch = blockIdx.x;
  const uint32_t t = thr[i], rem = remaining[i];
  const float* l = loss + i * hw;
  uint8_t* m = mask + i * hw;
  const int64_t base = ch * kChunk + int64_t(threadIdx.x) * kItems;
  uint32_t c = 0;
  for (int j = 0; j < kItems; ++j) {
    const int64_t p = base + j;
    if (p < hw) c += order_key(l[p]) == t;
  }
  uint32_t rank;
  Scan(tmp.scan).ExclusiveSum(c, rank);
  __syncthreads();
  rank += eq_before[i * nchunks + ch];
  float s = 0.0f;
  for (int j = 0; j < kItems; ++j) {
    const int64_t p = base + j;
    if (p >= hw) break;
    const uint32_t key = order_key(l[p]);
    bool kept = key > t;
    if (key == t) kept = rank++ < rem;
    m[p] = kept;
    if (kept) s += l[p];
  }
  const float total = Reduce(tmp.reduce).Sum(s);
  if (threadIdx.x == 0) chunk_sum[i * nchunks + ch] = total;
}

__global__ void sum_chunks_kernel(float* kept_sum, const float* chunk_sum, int64_t n, int64_t nchunks) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double s = 0;
  for (int64_t c = 0; c < nchunks; ++c) s += chunk_sum[i * nchunks + c];
  kept_sum[i] = float(s);
}

__global__ void scaled_sum_kernel(float* out, const float* values, int64_t n, float factor) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += values[i];
  out[0] = float(s * double(factor));
}

__global__ void softmax_ce_bwd_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                      const float* __restrict__ logits, const int32_t* __restrict__ labels,
                                      const float* __restrict__ weights, const uint8_t* __restrict__ mask,
                                      float factor, int64_t n, int64_t k, int64_t hw) {
  const int64_t ip = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ip >= n * hw) return;
  const int64_t i = ip / hw, p = ip % hw;
  const float* x = logits + i * k * hw + p;
  float* g = gx + i * k * hw + p;
  const int32_t l = labels[ip];
  const float w = weights[ip];
  if (!mask[ip] || l < 0 || w == 0.0f) {
    for (int64_t c = 0; c < k; ++c) g[c * hw] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t c = 0; c < k; ++c) mx = fmaxf(mx, x[c * hw]);
  float se = 0.0f;
  for (int64_t c = 0; c < k; ++c) se += expf(x[c * hw] - mx);
  const float gw = gy[0] * factor * w, inv = 1.0f / se;
  for (int64_t c = 0; c < k; ++c) g[c * hw] = gw * (expf(x[c * hw] - mx) * inv - (c == l ? 1.0f : 0.0f));
}

// ---- (sum, count) reductions: fixed partition into kReduceBlocks partials, then one block ----
struct SigmoidTerm {
  const float *x, *t, *w;
  int64_t c, wc, hw;
  __device__ bool term(int64_t e, float& v) const {
    const int64_t i = e / (c * hw), ch = (e / hw) % c, p = e % hw;
    const float we = w[(i * wc + (wc == 1 ? 0 : ch)) * hw + p];
    if (!(we > 0.0f)) return false;
    const float xe = x[e];
    v = we * (fmaxf(xe, 0.0f) - xe * t[e] + log1pf(expf(-fabsf(xe))));
    return true;
  }
};

struct OffsetTerm {
  const float *pred, *target, *mask;
  float inv_scale;
  int64_t c, mc, hw;
  __device__ bool term(int64_t e, float& v) const {
    const int64_t i = e / (c * hw), k = (e / hw) % c, p = e % hw;
    const float m = mask[(i * mc + (mc == 1 ? 0 : k)) * hw + p];
    if (!(m > 0.0f)) return false;
    const int64_t oy = ((i * 2 * c) + 2 * k) * hw + p, ox = oy + hw;
    v = (fabsf(pred[oy] - target[oy]) + fabsf(pred[ox] - target[ox])) * m * inv_scale;
    return true;
  }
};

template <class Term>
__global__ void partial_sum_count_kernel(float* partial, Term term, int64_t total) {
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  // Contiguous slice per block: the partition depends on `total` only.
  const int64_t per = (total + gridDim.x - 1) / gridDim.x;
  const int64_t a = int64_t(blockIdx.x) * per, b = min(total, a + per);
  float s = 0.0f, c = 0.0f;
  for (int64_t e = a + threadIdx.x; e < b; e += blockDim.x) {
    float v;
    if (term.term(e, v)) {
      s += v;
      c += 1.0f;
    }
  }
  const float bs = Reduce(tmp).Sum(s);
  __syncthreads();
  const float bc = Reduce(tmp).Sum(c);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = bs;
    partial[2 * blockIdx.x + 1] = bc;
  }
}

__global__ void final_sum_count_kernel(float* sum_count, const float* partial, int nparts) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  double s = 0, c = 0;
  for (int j = threadIdx.x; j < nparts; j += blockDim.x) {
    s += partial[2 * j];
    c += partial[2 * j + 1];
  }
  const double ts = Reduce(tmp).Sum(s);
  __syncthreads();
  const double tc = Reduce(tmp).Sum(c);
  if (threadIdx.x == 0) {
    sum_count[0] = float(ts);
    sum_count[1] = float(tc);
  }
}

template <class Term>
void sum_count(float* out, const Term& term, int64_t total, cudaStream_t s, const char* op) {
  const int parts =
      int(std::min<int64_t>(kReduceBlocks, std::max<int64_t>(1, (total + kThreads - 1) / kThreads)));
  Scratch partial(sizeof(float) * 2 * parts);
  partial_sum_count_kernel<<<parts, kThreads, 0, s>>>(partial.as<float>(), term, total);
  DL_LAUNCH_CHECK(op);
  final_sum_count_kernel<<<1, kThreads, 0, s>>>(out, partial.as<float>(), parts);
  DL_LAUNCH_CHECK(op);
}

__global__ void sigmoid_ce_bwd_kernel(float* __restrict__ gx, const float* gy, const float* sc,
                                      const float* __restrict__ x, const float* __restrict__ t,
                                      const float* __restrict__ w, int64_t n, int64_t c, int64_t wc,
                                      int64_t hw) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n * c * hw) return;
  const float g = sc[1] > 0.0f ? gy[0] / sc[1] : 0.0f;
  const int64_t i = e / (c * hw), ch = (e / hw) % c, p = e % hw;
  const float we = w[(i * wc + (wc == 1 ? 0 : ch)) * hw + p];
  if (!(we > 0.0f)) {
    gx[e] = 0.0f;
    return;
  }
  const float sg = 1.0f / (1.0f + expf(-x[e]));
  gx[e] = g * we * (sg - t[e]);
}

__global__ void offset_l1_bwd_kernel(float* __restrict__ gx, const float* gy, const float* sc,
                                     const float* __restrict__ pred, const float* __restrict__ target,
                                     const float* __restrict__ mask, float inv_scale, int64_t n, int64_t c,
                                     int64_t mc, int64_t hw) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n * c * hw) return;
  const float g = sc[1] > 0.0f ? gy[0] / sc[1] : 0.0f;
  const int64_t i = e / (c * hw), k = (e / hw) % c, p = e % hw;
  const float m = mask[(i * mc + (mc == 1 ? 0 : k)) * hw + p];
  const int64_t oy = ((i * 2 * c) + 2 * k) * hw + p, ox = oy + hw;
  if (!(m > 0.0f)) {
    gx[oy] = 0.0f;
    gx[ox] = 0.0f;
    return;
  }
  const float f = g * m * inv_scale;
  const float dy = pred[oy] - target[oy], dx = pred[ox] - target[ox];
  gx[oy] = f * (dy > 0.0f ? 1.0f : (dy < 0.0f ? -1.0f : 0.0f));
  gx[ox] = f * (dx > 0.0f ? 1.0f : (dx < 0.0f ? -1.0f : 0.0f));
}

__global__ void mean_of_sum_count_kernel(float* out, const float* sc) {
  out[0] = sc[1] > 0.0f ? sc[0] / sc[1] : 0.0f;
}

}  // namespace

// =============================================================================================
int64_t count_bad_labels(const int32_t* labels, int64_t n, int32_t k, cudaStream_t s) {
  if (n == 0) return 0;
  Scratch bad(sizeof(unsigned long long));
  DL_CHECK(cudaMemsetAsync(bad.p, 0, sizeof(unsigned long long), s) == cudaSuccess,
           "count_bad_labels: memset");
  count_bad_labels_kernel<<<unsigned(std::min<int64_t>(1024, grid_for(n))), kThreads, 0, s>>>(
      bad.as<unsigned long long>(), labels, n, k);
  DL_LAUNCH_CHECK("count_bad_labels");
  unsigned long long host = 0;
  DL_CHECK(cudaMemcpyAsync(&host, bad.p, sizeof(host), cudaMemcpyDeviceToHost, s) == cudaSuccess &&
               cudaStreamSynchronize(s) == cudaSuccess,
           "count_bad_labels: copy back failed");
  return int64_t(host);
}

void softmax_ce_fwd(float* loss, const float* logits, const int32_t* labels, const float* weights, int64_t n,
                    int64_t k, int64_t hw, cudaStream_t s) {
  if (n * hw == 0) return;
  softmax_ce_fwd_kernel<<<grid_for(n * hw), kThreads, 0, s>>>(loss, logits, labels, weights, n, k, hw);
  DL_LAUNCH_CHECK("softmax_ce_fwd");
}

void topk_mask(uint8_t* mask, float* kept_sum, const float* loss, int64_t n, int64_t hw, int64_t keep,
               cudaStream_t s) {
  if (n == 0 || hw == 0) return;
  keep = std::min(keep, hw);
  DL_CHECK(keep >= 1 && hw < (int64_t(1) << 32) && n < 65536,
           "topk_mask: unsupported sizes n " << n << " hw " << hw << " keep " << keep);
  const int64_t nchunks = (hw + kChunk - 1) / kChunk;
  DL_CHECK(nchunks < 65536 * 32, "topk_mask: image too large (" << hw << " pixels)");
  Scratch st(sizeof(uint32_t) * (2 * n + 256 * n + n * nchunks));
  uint32_t* prefix = st.as<uint32_t>();
  uint32_t* remaining = prefix + n;
  uint32_t* hist = remaining + n;
  uint32_t* eq = hist + 256 * n;
  Scratch sums(sizeof(float) * n * nchunks);

  select_init_kernel<<<grid_for(n * 256), kThreads, 0, s>>>(prefix, remaining, hist, n, uint32_t(keep));
  DL_LAUNCH_CHECK("topk_mask");
  const unsigned hist_blocks = unsigned(std::min<int64_t>(128, grid_for(hw)));
  for (int shift = 24; shift >= 0; shift -= 8) {
    select_hist_kernel<<<dim3(hist_blocks, unsigned(n)), kThreads, 0, s>>>(hist, loss, prefix, hw, shift);
    DL_LAUNCH_CHECK("topk_mask");
    select_digit_kernel<<<grid_for(n, 64), 64, 0, s>>>(prefix, remaining, hist, n, shift);
    DL_LAUNCH_CHECK("topk_mask");
  }
  // prefix = key of the keep-th largest loss; remaining = how many of the keys equal to it to keep.
  const dim3 chunk_grid{unsigned(nchunks), unsigned(n), 1u};
  count_equal_kernel<<<chunk_grid, kThreads, 0, s>>>(eq, loss, prefix, hw, nchunks);
  DL_LAUNCH_CHECK("topk_mask");
  scan_chunks_kernel<<<grid_for(n, 64), 64, 0, s>>>(eq, n, nchunks);
  DL_LAUNCH_CHECK("topk_mask");
  mark_kept_kernel<<<chunk_grid, kThreads, 0, s>>>(mask, sums.as<float>(), loss, prefix, remaining, eq, hw,
                                                   nchunks);
  DL_LAUNCH_CHECK("topk_mask");
  sum_chunks_kernel<<<grid_for(n, 64), 64, 0, s>>>(kept_sum, sums.as<float>(), n, nchunks);
  DL_LAUNCH_CHECK("topk_mask");
}

void scaled_sum(float* out, const float* values, int64_t n, float factor, cudaStream_t s) {
  scaled_sum_kernel<<<1, 1, 0, s>>>(out, values, n, factor);
  DL_LAUNCH_CHECK("scaled_sum");
}

void softmax_ce_bwd(float* gx, const float* gy, const float* logits, const int32_t* labels,
                    const float* weights, const uint8_t* mask, float factor, int64_t n, int64_t k, int64_t hw,
                    cudaStream_t s) {
  if (n * hw == 0) return;
  softmax_ce_bwd_kernel<<<grid_for(n * hw), kThreads, 0, s>>>(gx, gy, logits, labels, weights, mask, factor,
                                                              n, k, hw);
  DL_LAUNCH_CHECK("softmax_ce_bwd");
}

void sigmoid_ce_fwd(float* sc, const float* x, const float* t, const float* w, int64_t n, int64_t c,
                    int64_t wc, int64_t hw, cudaStream_t s) {
  sum_count(sc, SigmoidTerm{x, t, w, c, wc, hw}, n * c * hw, s, "sigmoid_ce_fwd");
}

void sigmoid_ce_bwd(float* gx, const float* gy, const float* sc, const float* x, const float* t,
                    const float* w, int64_t n, int64_t c, int64_t wc, int64_t hw, cudaStream_t s) {
  if (n * c * hw == 0) return;
  sigmoid_ce_bwd_kernel<<<grid_for(n * c * hw), kThreads, 0, s>>>(gx, gy, sc, x, t, w, n, c, wc, hw);
  DL_LAUNCH_CHECK("sigmoid_ce_bwd");
}

void offset_l1_fwd(float* sc, const float* pred, const float* target, const float* mask, float inv_scale,
                   int64_t n, int64_t c, int64_t mc, int64_t hw, cudaStream_t s) {
  sum_count(sc, OffsetTerm{pred, target, mask, inv_scale, c, mc, hw}, n * c * hw, s, "offset_l1_fwd");
}

void offset_l1_bwd(float* gx, const float* gy, const float* sc, const float* pred, const float* target,
                   const float* mask, float inv_scale, int64_t n, int64_t c, int64_t mc, int64_t hw,
                   cudaStream_t s) {
  if (n * c * hw == 0) return;
  offset_l1_bwd_kernel<<<grid_for(n * c * hw), kThreads, 0, s>>>(gx, gy, sc, pred, target, mask, inv_scale, n,
                                                                 c, mc, hw);
  DL_LAUNCH_CHECK("offset_l1_bwd");
}

void mean_of_sum_count(float* out, const float* sc, cudaStream_t s) {
  mean_of_sum_count_kernel<<<1, 1, 0, s>>>(out, sc);
  DL_LAUNCH_CHECK("mean_of_sum_count");
}

}  // namespace dl::cuda
