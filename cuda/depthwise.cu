// Depthwise convolution kernels, template-specialised on the square kernel sizes DeeperLab uses
// (3, 5, 7) with a generic fallback; any stride, dilation and padding.
// - forward: one output per thread (taps from global memory through L1), plus a shared-memory tiled
//   version for stride 1 / dilation 1, where neighbouring outputs reuse the same inputs;
// - grad-input: a gather (each input pixel sums the outputs whose taps touch it), no atomics; at
//   stride 1 / dilation 1 the tiled forward kernel run on gy with the kernel rotated by 180 degrees;
// - grad-weight: a two-stage deterministic reduction: blocks of a channel each sum a fixed chunk of
//   the (image, pixel) range per tap, then one thread per tap adds the chunk partials in order.
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

// Stride 1, dilation 1: a (TH + K - 1) x (TW + K - 1) input tile in shared memory; each thread
// computes ROWS outputs of one column. Out-of-image taps read a zero from the tile (adding +0 leaves
// the sum unchanged, so it matches skipping them). FLIP rotates the kernel by 180 degrees: at stride 1
// the grad-input is this same correlation of gy with the flipped kernel and padding K - 1 - pad.
constexpr int kTileW = 32, kTileRowsPerThread = 4, kTileThreadsY = 8,
              kTileH = kTileThreadsY * kTileRowsPerThread;

template <int K, bool FLIP>
__global__ void __launch_bounds__(kTileW* kTileThreadsY)
    depthwise_fwd_tiled_kernel(float* __restrict__ y, const float* __restrict__ x,
                               const float* __restrict__ wt, const float* __restrict__ bias, DwParams p) {
  constexpr int SW = kTileW + K - 1, SH = kTileH + K - 1;
  __shared__ float tile[SH * SW];
  __shared__ float wsh[K * K];
  const int plane = blockIdx.x, ch = plane % p.c;
  const int ox0 = blockIdx.y * kTileW, oy0 = blockIdx.z * kTileH;
  const float* xp = x + size_t(plane) * p.h * p.w;
  const int iy0 = oy0 - p.ph, ix0 = ox0 - p.pw;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  for (int i = tid; i < SH * SW; i += kTileW * kTileThreadsY) {
    const int r = i / SW, q = i % SW;
    const int iy = iy0 + r, ix = ix0 + q;
    tile[i] = (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) ? xp[iy * p.w + ix] : 0.f;
  }
  if (tid < K * K) wsh[tid] = wt[ch * K * K + (FLIP ? K * K - 1 - tid : tid)];
  __syncthreads();
  const float b = bias ? bias[ch] : 0.f;
  const int ox = ox0 + threadIdx.x;
#pragma unroll
  for (int r = 0; r < kTileRowsPerThread; ++r) {
    const int ly = threadIdx.y + r * kTileThreadsY;
    const int oy = oy0 + ly;
    float acc = b;
#pragma unroll
    for (int ky = 0; ky < K; ++ky)
#pragma unroll
      for (int kx = 0; kx < K; ++kx) acc += tile[(ly + ky) * SW + threadIdx.x + kx] * wsh[ky * K + kx];
    if (ox < p.wo && oy < p.ho) y[(size_t(plane) * p.ho + oy) * p.wo + ox] = acc;
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
  const long long tiles_x = (p.wo + kTileW - 1) / kTileW, tiles_y = (p.ho + kTileH - 1) / kTileH;
  DL_CHECK(tiles_x <= 65535 && tiles_y <= 65535, "depthwise: image too large for the tiled kernel");
  const dim3 grid(unsigned(p.n * p.c), unsigned(tiles_x), unsigned(tiles_y)), block(kTileW, kTileThreadsY);
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
  // Chunks depend on the shape only (never on the device), so the summation order is reproducible.
  constexpr long long kItemsPerChunk = 16384;
  long long nchunks = (items + kItemsPerChunk - 1) / kItemsPerChunk;
  if (nchunks > 64) nchunks = 64;
  const long long chunk = (items + nchunks - 1) / nchunks;
  check_int32("depthwise_bwd_weight", chunk, "chunk");
  DeviceBuffer partial(sizeof(float) * size_t(p.c) * size_t(nchunks) * size_t(kk), s);
  const int k = p.kh == p.kw ? p.kh : 0;
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
