// Depthwise convolution kernels, template-specialised on the square kernel sizes DeeperLab uses
// (3, 5, 7) with a generic fallback; any stride, dilation and padding.
// - forward: one output per thread (taps from global memory through L1), plus a shared-memory tiled
//   version for stride 1 / dilation 1 where each thread computes a column of 8 outputs from one pass
//   over its input rows (register blocking: the arithmetic, not shared memory, is the limit);
// - grad-input: a gather (each input pixel sums the outputs whose taps touch it), no atomics; at
//   stride 1 / dilation 1 the tiled forward kernel run on gy with the kernel rotated by 180 degrees;
// - grad-weight: a two-stage deterministic reduction: blocks of a channel each sum a fixed chunk of
//   the (image, pixel) range per tap (at stride 1 / dilation 1: a fixed run of 32x32 output tiles, with
//   the same register blocking as the forward), then one thread per tap adds the chunk partials in order.
// Sizes are checked against 32-bit index limits on the host before any launch.
#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/depthwise.h"

namespace dl::cuda {
namespace {

struct DwParams {
  int n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

constexpr int kThreads = 256;

// ---- forward ----
template <int K>
__global__ void depthwise_fwd_kernel(float* __restrict__ y, const float* __restrict__ x,
                                     const float* __restrict__ wt, const float* __restrict__ bias,
                                     DwParams p) {
  const int kh = K > 0 ? K : p.kh, kw = K > 0 ? K : p.kw;
  const unsigned total = unsigned(p.n) * p.c * p.ho * p.wo;  // <= INT_MAX (host check)
  const unsigned idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int ox = int(idx % p.wo);
  const int t = int(idx / p.wo);
  const int oy = t % p.ho;
  const int plane = t / p.ho;  // n * c + ch
  const int ch = plane % p.c;
  const float* xp = x + size_t(plane) * p.h * p.w;
  const float* wp = wt + ch * kh * kw;
  float acc = bias ? bias[ch] : 0.f;
  const int iy0 = oy * p.sh - p.ph, ix0 = ox * p.sw - p.pw;
#pragma unroll
  for (int ky = 0; ky < kh; ++ky) {
    const int iy = iy0 + ky * p.dh;
    if (iy < 0 || iy >= p.h) continue;
#pragma unroll
    for (int kx = 0; kx < kw; ++kx) {
      const int ix = ix0 + kx * p.dw;
      if (ix < 0 || ix >= p.w) continue;
      acc += xp[iy * p.w + ix] * wp[ky * kw + kx];
    }
  }
  y[idx] = acc;
}

// Stride 1, dilation 1: a (kTile + K - 1)^2 input tile in shared memory, the channel's K*K weights
// in registers. Each thread owns one output column of kRowsPerThread rows: it walks the
// kRowsPerThread + K - 1 input rows of its window once, reads K tile values per row (consecutive lanes
// read consecutive words: no bank conflicts) and adds them into every output row that uses that input
// row, so a tile value read from shared memory feeds up to kRowsPerThread * K FMAs instead of one.
// Out-of-image taps read a zero from the tile (adding +0 leaves the sum unchanged, so it matches
// skipping them). Each output still sums its taps in (ky, kx) order. FLIP rotates the kernel by 180
// degrees: at stride 1 the grad-input is this same correlation of gy with the flipped kernel and
// padding K - 1 - pad.
constexpr int kTile = 32, kRowsPerThread = 8, kTileThreadsY = kTile / kRowsPerThread,
              kTileThreads = kTile * kTileThreadsY;

// Loads the (kTile + K - 1)^2 window of plane xp (h x w) whose top-left pixel is (iy0, ix0), zeros
// outside the image. Ends with __syncthreads().
template <int K>
__device__ __forceinline__ void load_tile(float* tile, const float* __restrict__ xp, int h, int w, int iy0,
                                          int ix0, int tid) {
  constexpr int S = kTile + K - 1;
#pragma unroll 4
  for (int i = tid; i < S * S; i += kTileThreads) {
    const int r = i / S, q = i % S;
    const int iy = iy0 + r, ix = ix0 + q;
    tile[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? __ldg(xp + iy * w + ix) : 0.f;
  }
  __syncthreads();
}

template <int K, bool FLIP>
__global__ void __launch_bounds__(kTileThreads, 4)
    depthwise_fwd_tiled_kernel(float* __restrict__ y, const float* __restrict__ x,
                               const float* __restrict__ wt, const float* __restrict__ bias, DwParams p) {
  constexpr int S = kTile + K - 1, KK = K * K;
  __shared__ float tile[S * S];
  const int plane = blockIdx.x, ch = plane % p.c;
  const int ox0 = blockIdx.y * kTile, oy0 = blockIdx.z * kTile;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  float wr[KK];
#pragma unroll
  for (int t = 0; t < KK; ++t) wr[t] = __ldg(wt + ch * KK + (FLIP ? KK - 1 - t : t));
  const float b = bias ? __ldg(bias + ch) : 0.f;
  load_tile<K>(tile, x + size_t(plane) * p.h * p.w, p.h, p.w, oy0 - p.ph, ox0 - p.pw, tid);
  const int lx = threadIdx.x, ly0 = threadIdx.y * kRowsPerThread;
  float acc[kRowsPerThread];
#pragma unroll
  for (int j = 0; j < kRowsPerThread; ++j) acc[j] = b;
#pragma unroll
  for (int r = 0; r < kRowsPerThread + K - 1; ++r) {
    float v[K];
#pragma unroll
    for (int kx = 0; kx < K; ++kx) v[kx] = tile[(ly0 + r) * S + lx + kx];
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int ky = r - j;  // output row ly0 + j uses input row ly0 + r through kernel row ky
      if (ky >= 0 && ky < K) {
#pragma unroll
        for (int kx = 0; kx < K; ++kx) acc[j] = fmaf(v[kx], wr[ky * K + kx], acc[j]);
      }
    }
  }
  const int ox = ox0 + lx;
  if (ox < p.wo) {
    float* yp = y + size_t(plane) * p.ho * p.wo + ox;
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int oy = oy0 + ly0 + j;
      if (oy < p.ho) yp[size_t(oy) * p.wo] = acc[j];
    }
  }
}

// ---- grad input (gather) ----
template <int K>
__global__ void depthwise_bwd_input_kernel(float* __restrict__ gx, const float* __restrict__ gy,
                                           const float* __restrict__ wt, DwParams p) {
  const int kh = K > 0 ? K : p.kh, kw = K > 0 ? K : p.kw;
  const unsigned total = unsigned(p.n) * p.c * p.h * p.w;
  const unsigned idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int ix = int(idx % p.w);
  const int t = int(idx / p.w);
  const int iy = t % p.h;
  const int plane = t / p.h;
  const int ch = plane % p.c;
  const float* gyp = gy + size_t(plane) * p.ho * p.wo;
  const float* wp = wt + ch * kh * kw;
  float acc = 0.f;
#pragma unroll
  for (int ky = 0; ky < kh; ++ky) {
    const int ty = iy + p.ph - ky * p.dh;  // = oy * sh when this tap touches iy
    if (ty < 0 || ty % p.sh != 0) continue;
    const int oy = ty / p.sh;
    if (oy >= p.ho) continue;
#pragma unroll
    for (int kx = 0; kx < kw; ++kx) {
      const int tx = ix + p.pw - kx * p.dw;
      if (tx < 0 || tx % p.sw != 0) continue;
      const int ox = tx / p.sw;
      if (ox >= p.wo) continue;
      acc += gyp[oy * p.wo + ox] * wp[ky * kw + kx];
    }
  }
  gx[idx] = acc;
}

// ---- grad weight ----
// Stage 1, K > 0: block (ch, s) sums chunk s of the channel's (image, output pixel) items for all
// K*K taps at once (per-thread register accumulators, then a fixed-order block reduction).
constexpr int kBwThreads = 256;

template <int K>
__global__ void __launch_bounds__(kBwThreads)
    depthwise_bwd_weight_partial_kernel(float* __restrict__ partial, const float* __restrict__ gy,
                                        const float* __restrict__ x, DwParams p, int chunk) {
  constexpr int KK = K * K;
  __shared__ float red[kBwThreads / 32][KK];
  const int ch = blockIdx.x, s = blockIdx.y, nchunks = gridDim.y;
  const int per_img = p.ho * p.wo;
  const long long items = (long long)p.n * per_img;
  const long long begin = (long long)s * chunk;
  const long long end = begin + chunk < items ? begin + chunk : items;
  float acc[KK];
#pragma unroll
  for (int t = 0; t < KK; ++t) acc[t] = 0.f;
  for (long long it = begin + threadIdx.x; it < end; it += blockDim.x) {
    const int img = int(it / per_img), pix = int(it % per_img);
    const int oy = pix / p.wo, ox = pix % p.wo;
    const size_t plane = size_t(img) * p.c + ch;
    const float g = gy[plane * per_img + pix];
    const float* xp = x + plane * p.h * p.w;
    const int iy0 = oy * p.sh - p.ph, ix0 = ox * p.sw - p.pw;
#pragma unroll
    for (int ky = 0; ky < K; ++ky) {
      const int iy = iy0 + ky * p.dh;
      const bool vy = iy >= 0 && iy < p.h;
#pragma unroll
      for (int kx = 0; kx < K; ++kx) {
        const int ix = ix0 + kx * p.dw;
        if (vy && ix >= 0 && ix < p.w) acc[ky * K + kx] += g * xp[iy * p.w + ix];
      }
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < KK; ++t) {
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) red[warp][t] = v;
  }
  __syncthreads();
  for (int t = threadIdx.x; t < KK; t += blockDim.x) {
    float v = 0.f;
    for (int wi = 0; wi < kBwThreads / 32; ++wi) v += red[wi][t];
    partial[(size_t(ch) * nchunks + s) * KK + t] = v;
  }
}

// Stage 1, generic kernel size: block (ch * KK + tap, s) sums one tap over chunk s.
__global__ void __launch_bounds__(kBwThreads)
    depthwise_bwd_weight_partial_generic_kernel(float* __restrict__ partial, const float* __restrict__ gy,
                                                const float* __restrict__ x, DwParams p, int chunk) {
  __shared__ float red[kBwThreads / 32];
  const int kk = p.kh * p.kw;
  const int ch = blockIdx.x / kk, tap = blockIdx.x % kk, s = blockIdx.y, nchunks = gridDim.y;
  const int ky = tap / p.kw, kx = tap % p.kw;
  const int per_img = p.ho * p.wo;
  const long long items = (long long)p.n * per_img;
  const long long begin = (long long)s * chunk;
  const long long end = begin + chunk < items ? begin + chunk : items;
  float acc = 0.f;
  for (long long it = begin + threadIdx.x; it < end; it += blockDim.x) {
    const int img = int(it / per_img), pix = int(it % per_img);
    const int oy = pix / p.wo, ox = pix % p.wo;
    const int iy = oy * p.sh - p.ph + ky * p.dh, ix = ox * p.sw - p.pw + kx * p.dw;
    if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
    const size_t plane = size_t(img) * p.c + ch;
    acc += gy[plane * per_img + pix] * x[plane * p.h * p.w + iy * p.w + ix];
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) red[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float v = 0.f;
    for (int wi = 0; wi < kBwThreads / 32; ++wi) v += red[wi];
    partial[(size_t(ch) * nchunks + s) * kk + tap] = v;
  }
}

// Stage 1, stride 1 / dilation 1, K in {3, 5, 7}: the channel's outputs are cut into kTile x kTile
// tiles, listed (image, tile row, tile column); block (ch, s) walks tiles [s * per_chunk, (s + 1) *
// per_chunk) of that list. Per tile it stages the input window in shared memory (as the forward does)
// and each thread keeps its kRowsPerThread gy values and all K*K tap sums in registers: an input row
// read from the tile feeds every (output row, kernel row) pair that uses it. Outputs past the image
// edge get gy = 0 and taps outside the image read a zero from the tile, so both add +0. Then the
// fixed-order block reduction of the stage-1 kernel above.
template <int K>
__global__ void __launch_bounds__(kTileThreads, 4)
    depthwise_bwd_weight_tiled_kernel(float* __restrict__ partial, const float* __restrict__ gy,
                                      const float* __restrict__ x, DwParams p, int tiles_x, int tiles_per_img,
                                      int per_chunk) {
  constexpr int S = kTile + K - 1, KK = K * K;
  __shared__ float tile[S * S];
  __shared__ float red[kTileThreads / 32][KK];
  const int ch = blockIdx.x, s = blockIdx.y, nchunks = gridDim.y;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int lx = threadIdx.x, ly0 = threadIdx.y * kRowsPerThread;
  const int total = p.n * tiles_per_img;  // <= INT_MAX (host check)
  const int t_begin = s * per_chunk;
  const int t_end = total - t_begin < per_chunk ? total : t_begin + per_chunk;
  float acc[KK];
#pragma unroll
  for (int t = 0; t < KK; ++t) acc[t] = 0.f;
  for (int t = t_begin; t < t_end; ++t) {
    const int img = t / tiles_per_img, rem = t % tiles_per_img;
    const int oy0 = (rem / tiles_x) * kTile, ox0 = (rem % tiles_x) * kTile;
    const size_t plane = size_t(img) * p.c + ch;
    const int ox = ox0 + lx;
    const float* gp = gy + plane * p.ho * p.wo;
    float g[kRowsPerThread];
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int oy = oy0 + ly0 + j;
      g[j] = (ox < p.wo && oy < p.ho) ? __ldg(gp + oy * p.wo + ox) : 0.f;
    }
    __syncthreads();  // every thread is done reading the previous tile
    load_tile<K>(tile, x + plane * p.h * p.w, p.h, p.w, oy0 - p.ph, ox0 - p.pw, tid);
#pragma unroll
    for (int r = 0; r < kRowsPerThread + K - 1; ++r) {
      float v[K];
#pragma unroll
      for (int kx = 0; kx < K; ++kx) v[kx] = tile[(ly0 + r) * S + lx + kx];
#pragma unroll
      for (int j = 0; j < kRowsPerThread; ++j) {
        const int ky = r - j;
        if (ky >= 0 && ky < K) {
#pragma unroll
          for (int kx = 0; kx < K; ++kx) acc[ky * K + kx] = fmaf(g[j], v[kx], acc[ky * K + kx]);
        }
      }
    }
  }
  const int lane = tid & 31, warp = tid >> 5;
#pragma unroll
  for (int t = 0; t < KK; ++t) {
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) red[warp][t] = v;
  }
  __syncthreads();
  for (int t = tid; t < KK; t += kTileThreads) {
    float v = 0.f;
    for (int wi = 0; wi < kTileThreads / 32; ++wi) v += red[wi][t];
    partial[(size_t(ch) * nchunks + s) * KK + t] = v;
  }
}

// Stage 2: gw[ch][tap] = sum over chunks in order.
__global__ void depthwise_bwd_weight_final_kernel(float* __restrict__ gw, const float* __restrict__ partial,
                                                  int c, int kk, int nchunks) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // ch * kk + tap
  if (i >= c * kk) return;
  const int ch = i / kk, tap = i % kk;
  float v = 0.f;
  for (int s = 0; s < nchunks; ++s) v += partial[(size_t(ch) * nchunks + s) * kk + tap];
  gw[i] = v;
}

DwParams make_params(const char* op, const ConvGeom& g) {
  DL_CHECK(g.is_depthwise(), op << ": not a depthwise geometry (groups " << g.groups << ", c_in " << g.c_in
                                << ", c_out " << g.c_out << ")");
  check_int32(op, g.n * g.c_in * g.h * g.w, "input elements");
  check_int32(op, g.n * g.c_out * g.h_out * g.w_out, "output elements");
  check_int32(op, g.c_in * g.kh * g.kw, "weight elements");
  DwParams p;
  p.n = int(g.n);
  p.c = int(g.c_in);
  p.h = int(g.h);
  p.w = int(g.w);
  p.ho = int(g.h_out);
  p.wo = int(g.w_out);
  p.kh = int(g.kh);
  p.kw = int(g.kw);
  p.sh = int(g.stride_h);
  p.sw = int(g.stride_w);
  p.ph = int(g.pad_h);
  p.pw = int(g.pad_w);
  p.dh = int(g.dil_h);
  p.dw = int(g.dil_w);
  DL_CHECK(
      p.sh >= 1 && p.sw >= 1 && p.dh >= 1 && p.dw >= 1 && p.ph >= 0 && p.pw >= 0 && p.kh >= 1 && p.kw >= 1,
      op << ": invalid geometry");
  // Tap offsets (k - 1) * d + pad and o * s stay far inside int for any image that passed the checks above.
  DL_CHECK((int64_t(p.kh) - 1) * p.dh + p.ph < (1 << 24) && (int64_t(p.kw) - 1) * p.dw + p.pw < (1 << 24),
           op << ": kernel extent too large");
  return p;
}

unsigned blocks_for(long long total) {
  return unsigned((total + kThreads - 1) / kThreads);
}

// Tiled stride-1 launch over p's output (p.ho x p.wo) for k in {3, 5, 7}.
template <bool FLIP>
void launch_tiled(float* y, const float* x, const float* w, const float* bias, const DwParams& p, int k,
                  cudaStream_t s) {
  const long long tiles_x = (p.wo + kTile - 1) / kTile, tiles_y = (p.ho + kTile - 1) / kTile;
  DL_CHECK(tiles_x <= 65535 && tiles_y <= 65535, "depthwise: image too large for the tiled kernel");
  const dim3 grid(unsigned(p.n * p.c), unsigned(tiles_x), unsigned(tiles_y)), block(kTile, kTileThreadsY);
  switch (k) {
    case 3:
      depthwise_fwd_tiled_kernel<3, FLIP><<<grid, block, 0, s>>>(y, x, w, bias, p);
      break;
    case 5:
      depthwise_fwd_tiled_kernel<5, FLIP><<<grid, block, 0, s>>>(y, x, w, bias, p);
      break;
    case 7:
      depthwise_fwd_tiled_kernel<7, FLIP><<<grid, block, 0, s>>>(y, x, w, bias, p);
      break;
    default:
      DL_FAIL("depthwise: no tiled kernel for k=" << k);
  }
  DL_LAUNCH_CHECK("depthwise_fwd_tiled_kernel");
}

bool tiled_ok(const DwParams& p, int k) {
  return p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1 && (k == 3 || k == 5 || k == 7);
}

}  // namespace

void depthwise_fwd(float* y, const float* x, const float* w, const float* bias, const ConvGeom& g,
                   cudaStream_t s) {
  const DwParams p = make_params("depthwise_fwd", g);
  const long long total = (long long)p.n * p.c * p.ho * p.wo;
  if (total == 0) return;
  const int k = p.kh == p.kw ? p.kh : 0;
  if (tiled_ok(p, k)) {
    launch_tiled<false>(y, x, w, bias, p, k, s);
    return;
  }
  const unsigned blocks = blocks_for(total);
  switch (k) {
    case 3:
      depthwise_fwd_kernel<3><<<blocks, kThreads, 0, s>>>(y, x, w, bias, p);
      break;
    case 5:
      depthwise_fwd_kernel<5><<<blocks, kThreads, 0, s>>>(y, x, w, bias, p);
      break;
    case 7:
      depthwise_fwd_kernel<7><<<blocks, kThreads, 0, s>>>(y, x, w, bias, p);
      break;
    default:
      depthwise_fwd_kernel<0><<<blocks, kThreads, 0, s>>>(y, x, w, bias, p);
      break;
  }
  DL_LAUNCH_CHECK("depthwise_fwd_kernel");
}

void depthwise_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s) {
  const DwParams p = make_params("depthwise_bwd_input", g);
  const long long total = (long long)p.n * p.c * p.h * p.w;
  if (total == 0) return;
  const int k = p.kh == p.kw ? p.kh : 0;
  if (tiled_ok(p, k)) {
    // gx = gy correlated with the flipped kernel, padding k - 1 - pad, output h x w.
    DwParams q = p;
    q.h = p.ho;
    q.w = p.wo;
    q.ho = p.h;
    q.wo = p.w;
    q.ph = k - 1 - p.ph;
    q.pw = k - 1 - p.pw;
    launch_tiled<true>(gx, gy, w, nullptr, q, k, s);
    return;
  }
  const unsigned blocks = blocks_for(total);
  switch (k) {
    case 3:
      depthwise_bwd_input_kernel<3><<<blocks, kThreads, 0, s>>>(gx, gy, w, p);
      break;
    case 5:
      depthwise_bwd_input_kernel<5><<<blocks, kThreads, 0, s>>>(gx, gy, w, p);
      break;
    case 7:
      depthwise_bwd_input_kernel<7><<<blocks, kThreads, 0, s>>>(gx, gy, w, p);
      break;
    default:
      depthwise_bwd_input_kernel<0><<<blocks, kThreads, 0, s>>>(gx, gy, w, p);
      break;
  }
  DL_LAUNCH_CHECK("depthwise_bwd_input_kernel");
}

void depthwise_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s) {
  const DwParams p = make_params("depthwise_bwd_weight", g);
  const int kk = p.kh * p.kw;
  if (p.c == 0 || kk == 0) return;
  const long long items = (long long)p.n * p.ho * p.wo;
  if (items == 0) {
    CUDA_CHECK(cudaMemsetAsync(gw, 0, sizeof(float) * size_t(p.c) * kk, s));
    return;
  }
  const int k = p.kh == p.kw ? p.kh : 0;
  if (tiled_ok(p, k)) {
    // Chunks of whole tiles; their number depends on the shape only (never on the device), so the
    // summation order is reproducible.
    const long long tiles_x = (p.wo + kTile - 1) / kTile, tiles_y = (p.ho + kTile - 1) / kTile;
    const long long tiles = (long long)p.n * tiles_x * tiles_y;
    check_int32("depthwise_bwd_weight", tiles * kTile, "tiles");
    constexpr long long kTilesPerChunk = 4, kMaxChunks = 256;
    long long nchunks = (tiles + kTilesPerChunk - 1) / kTilesPerChunk;
    if (nchunks > kMaxChunks) nchunks = kMaxChunks;
    const long long per_chunk = (tiles + nchunks - 1) / nchunks;
    nchunks = (tiles + per_chunk - 1) / per_chunk;  // no empty chunk
    DeviceBuffer partial(sizeof(float) * size_t(p.c) * size_t(nchunks) * size_t(kk), s);
    const dim3 grid(unsigned(p.c), unsigned(nchunks)), block(kTile, kTileThreadsY);
    const int tx = int(tiles_x), tpi = int(tiles_x * tiles_y), pc = int(per_chunk);
    switch (k) {
      case 3:
        depthwise_bwd_weight_tiled_kernel<3>
            <<<grid, block, 0, s>>>(partial.as<float>(), gy, x, p, tx, tpi, pc);
        break;
      case 5:
        depthwise_bwd_weight_tiled_kernel<5>
            <<<grid, block, 0, s>>>(partial.as<float>(), gy, x, p, tx, tpi, pc);
        break;
      default:
        depthwise_bwd_weight_tiled_kernel<7>
            <<<grid, block, 0, s>>>(partial.as<float>(), gy, x, p, tx, tpi, pc);
        break;
    }
    DL_LAUNCH_CHECK("depthwise_bwd_weight_tiled_kernel");
    depthwise_bwd_weight_final_kernel<<<blocks_for((long long)p.c * kk), kThreads, 0, s>>>(
        gw, partial.as<float>(), p.c, kk, int(nchunks));
    DL_LAUNCH_CHECK("depthwise_bwd_weight_final_kernel");
    return;
  }
  // Chunks depend on the shape only (never on the device), so the summation order is reproducible.
  constexpr long long kItemsPerChunk = 16384;
  long long nchunks = (items + kItemsPerChunk - 1) / kItemsPerChunk;
  if (nchunks > 64) nchunks = 64;
  const long long chunk = (items + nchunks - 1) / nchunks;
  check_int32("depthwise_bwd_weight", chunk, "chunk");
  DeviceBuffer partial(sizeof(float) * size_t(p.c) * size_t(nchunks) * size_t(kk), s);
  if (k == 3 || k == 5 || k == 7) {
    const dim3 grid(unsigned(p.c), unsigned(nchunks));
    switch (k) {
      case 3:
        depthwise_bwd_weight_partial_kernel<3>
            <<<grid, kBwThreads, 0, s>>>(partial.as<float>(), gy, x, p, int(chunk));
        break;
      case 5:
        depthwise_bwd_weight_partial_kernel<5>
            <<<grid, kBwThreads, 0, s>>>(partial.as<float>(), gy, x, p, int(chunk));
        break;
      default:
        depthwise_bwd_weight_partial_kernel<7>
            <<<grid, kBwThreads, 0, s>>>(partial.as<float>(), gy, x, p, int(chunk));
        break;
    }
    DL_LAUNCH_CHECK("depthwise_bwd_weight_partial_kernel");
  } else {
    check_int32("depthwise_bwd_weight", (long long)p.c * kk, "channels x taps");
    const dim3 grid(unsigned(p.c * kk), unsigned(nchunks));
    depthwise_bwd_weight_partial_generic_kernel<<<grid, kBwThreads, 0, s>>>(partial.as<float>(), gy, x, p,
                                                                            int(chunk));
    DL_LAUNCH_CHECK("depthwise_bwd_weight_partial_generic_kernel");
  }
  depthwise_bwd_weight_final_kernel<<<blocks_for((long long)p.c * kk), kThreads, 0, s>>>(
      gw, partial.as<float>(), p.c, kk, int(nchunks));
  DL_LAUNCH_CHECK("depthwise_bwd_weight_final_kernel");
}

}  // namespace dl::cuda
