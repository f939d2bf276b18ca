// Convolution dispatch for CUDA:
//   depthwise (groups == c_in == c_out)    -> depthwise.cu
//   1x1, stride 1, no padding, groups 1    -> one strided-batched cuBLAS SGEMM over the images
//   everything else                        -> im2col + cuBLAS GEMM per image (grouped GEMMs batched),
//                                             or cuDNN when selected (DEEPERLAB_CONV_ALGO=cudnn)
// Row-major GEMMs are issued as column-major cuBLAS calls on the transposed problem
// (C^T = B^T A^T). The im2col backward (col2im) is a gather, so grad-input is deterministic; cuDNN
// backward algorithms are restricted to deterministic ones. TF32 follows cuda/handles.h.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/conv.h"
#include "cuda/depthwise.h"
#include "cuda/handles.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace dl::cuda {
namespace {

constexpr int kThreads = 256;

// ---- algorithm switch ----
std::atomic<int> g_algo{-1};

#ifndef DEEPERLAB_WITH_CUDNN
void warn_once_no_cudnn() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::fprintf(stderr,
                 "deeperlab: cuDNN convolution requested, but this build has no cuDNN; using im2col\n");
  });
}
#endif

// ---- row-major GEMM helpers on cuBLAS ----
// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, row-major with leading dims lda/ldb/ldc
// (the stored row lengths); `batch` problems with element strides sa/sb/sc.
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, int64_t sa,
             const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
             int64_t batch, cudaStream_t s) {
  for (int64_t v : {m, n, k, lda, ldb, ldc, batch}) check_int32("conv2d gemm", v, "GEMM dimension");
  if (m == 0 || n == 0 || batch == 0) return;
  cublasHandle_t h = cublas_handle();
  CUBLAS_CHECK(cublasSetStream(h, s));
  const float alpha = 1.f;
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1) {
    CUBLAS_CHECK(cublasSgemm(h, opb, opa, int(n), int(m), int(k), &alpha, B, int(ldb), A, int(lda), &beta, C,
                             int(ldc)));
  } else {
    CUBLAS_CHECK(cublasSgemmStridedBatched(h, opb, opa, int(n), int(m), int(k), &alpha, B, int(ldb), sb, A,
                                           int(lda), sa, &beta, C, int(ldc), sc, int(batch)));
  }
}

// ---- bias ----
__global__ void add_bias_kernel(float* y, const float* bias, int64_t planes, int64_t c, int64_t hw) {
  for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const float b = bias[plane % c];
    float* q = y + plane * hw;
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < hw;
         j += int64_t(blockDim.x) * gridDim.x)
      q[j] += b;
  }
}

void add_bias(float* y, const float* bias, int64_t n, int64_t c, int64_t hw, cudaStream_t s) {
  if (!bias || n * c * hw == 0) return;
  long long bx = (hw + kThreads * 4 - 1) / (kThreads * 4);
  bx = bx < 1 ? 1 : (bx > 4096 ? 4096 : bx);
  const long long by = n * c < 65535 ? n * c : 65535;
  add_bias_kernel<<<dim3(unsigned(bx), unsigned(by)), kThreads, 0, s>>>(y, bias, n * c, c, hw);
  DL_LAUNCH_CHECK("add_bias_kernel");
}

__global__ void conv2d_bwd_bias_kernel(float* gb, const float* gy, int64_t n, int64_t c, int64_t hw) {
  __shared__ double smem[32];
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* p = gy + (i * c + ch) * hw;
      for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) acc += double(p[j]);
    }
    acc = block_reduce_sum(acc, smem);
    if (threadIdx.x == 0) gb[ch] = float(acc);
  }
}

// ---- im2col / col2im (one image) ----
struct ColParams {
  int c, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

// col[(ci * kh + ky) * kw + kx][oy * wo + ox] = x[ci][iy][ix] (0 outside the image).
__global__ void im2col_kernel(float* __restrict__ col, const float* __restrict__ x, ColParams p) {
  const unsigned hwo = unsigned(p.ho) * p.wo;
  const unsigned total = unsigned(p.c) * p.kh * p.kw * hwo;  // <= INT_MAX (host check)
  const unsigned idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int pix = int(idx % hwo), row = int(idx / hwo);
  const int ox = pix % p.wo, oy = pix / p.wo;
  const int kx = row % p.kw, ky = (row / p.kw) % p.kh, ci = row / (p.kw * p.kh);
  const int iy = oy * p.sh - p.ph + ky * p.dh, ix = ox * p.sw - p.pw + kx * p.dw;
  col[idx] = (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) ? x[(size_t(ci) * p.h + iy) * p.w + ix] : 0.f;
}

// gx[ci][iy][ix] = sum of the col entries that im2col copied from (ci, iy, ix): a gather.
__global__ void col2im_kernel(float* __restrict__ gx, const float* __restrict__ col, ColParams p) {
  const unsigned total = unsigned(p.c) * p.h * p.w;
  const unsigned idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int ix = int(idx % p.w);
  const int t = int(idx / p.w);
  const int iy = t % p.h, ci = t / p.h;
  const size_t hwo = size_t(p.ho) * p.wo;
  float acc = 0.f;
  for (int ky = 0; ky < p.kh; ++ky) {
    const int ty = iy + p.ph - ky * p.dh;
    if (ty < 0 || ty % p.sh != 0) continue;
    const int oy = ty / p.sh;
    if (oy >= p.ho) continue;
    for (int kx = 0; kx < p.kw; ++kx) {
      const int tx = ix + p.pw - kx * p.dw;
      if (tx < 0 || tx % p.sw != 0) continue;
      const int ox = tx / p.sw;
      if (ox >= p.wo) continue;
      acc += col[((size_t(ci) * p.kh + ky) * p.kw + kx) * hwo + size_t(oy) * p.wo + ox];
    }
  }
  gx[idx] = acc;
}

ColParams col_params(const ConvGeom& g) {
  check_int32("conv2d", g.c_in * g.kh * g.kw * g.h_out * g.w_out,
              "im2col buffer elements (use cuDNN or smaller tiles)");
  check_int32("conv2d", g.c_in * g.h * g.w, "input image elements");
  return ColParams{int(g.c_in),  int(g.h),     int(g.w),        int(g.h_out),    int(g.w_out),
                   int(g.kh),    int(g.kw),    int(g.stride_h), int(g.stride_w), int(g.pad_h),
                   int(g.pad_w), int(g.dil_h), int(g.dil_w)};
}

void im2col(float* col, const float* x, const ColParams& p, cudaStream_t s) {
  const long long total = (long long)p.c * p.kh * p.kw * p.ho * p.wo;
  if (total == 0) return;
  im2col_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, s>>>(col, x, p);
  DL_LAUNCH_CHECK("im2col_kernel");
}

void col2im(float* gx, const float* col, const ColParams& p, cudaStream_t s) {
  const long long total = (long long)p.c * p.h * p.w;
  if (total == 0) return;
  col2im_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, s>>>(gx, col, p);
  DL_LAUNCH_CHECK("col2im_kernel");
}

bool is_1x1_direct(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

// ---- im2col + GEMM paths (any groups; 1x1 stride-1 skips the im2col copy) ----
void gemm_conv_fwd(float* y, const float* x, const float* w, const ConvGeom& g, cudaStream_t s) {
  const int64_t G = g.groups, cig = g.cin_per_group(), cog = g.cout_per_group();
  const int64_t kk = g.kh * g.kw, hwo = g.h_out * g.w_out, hw = g.h * g.w, kdim = cig * kk;
  if (is_1x1_direct(g) && G == 1) {
    // Y[n] (c_out x hw) = W (c_out x c_in) * X[n] (c_in x hw), all images in one batched call.
    gemm_rm(false, false, g.c_out, hw, g.c_in, w, g.c_in, 0, x, hw, g.c_in * hw, 0.f, y, hw, g.c_out * hw,
            g.n, s);
    return;
  }
  const ColParams p = col_params(g);
  const bool direct = is_1x1_direct(g);
  DeviceBuffer col(direct ? 1 : sizeof(float) * size_t(g.c_in * kk * hwo), s);
  for (int64_t n = 0; n < g.n; ++n) {
    const float* xn = x + n * g.c_in * hw;
    const float* cn = xn;
    if (!direct) {
      im2col(col.as<float>(), xn, p, s);
      cn = col.as<float>();
    }
    // Per group: Y[n][grp] (cog x hwo) = W[grp] (cog x kdim) * col[grp] (kdim x hwo).
    gemm_rm(false, false, cog, hwo, kdim, w, kdim, cog * kdim, cn, hwo, kdim * hwo, 0.f,
            y + n * g.c_out * hwo, hwo, cog * hwo, G, s);
  }
}

void gemm_conv_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s) {
  const int64_t G = g.groups, cig = g.cin_per_group(), cog = g.cout_per_group();
  const int64_t kk = g.kh * g.kw, hwo = g.h_out * g.w_out, hw = g.h * g.w, kdim = cig * kk;
  if (is_1x1_direct(g) && G == 1) {
    // gX[n] (c_in x hw) = W^T (c_in x c_out) * gY[n] (c_out x hw).
    gemm_rm(true, false, g.c_in, hw, g.c_out, w, g.c_in, 0, gy, hw, g.c_out * hw, 0.f, gx, hw, g.c_in * hw,
            g.n, s);
    return;
  }
  const ColParams p = col_params(g);
  const bool direct = is_1x1_direct(g);
  DeviceBuffer col(direct ? 1 : sizeof(float) * size_t(g.c_in * kk * hwo), s);
  for (int64_t n = 0; n < g.n; ++n) {
    float* gxn = gx + n * g.c_in * hw;
    float* cn = direct ? gxn : col.as<float>();
    // col[grp] (kdim x hwo) = W[grp]^T (kdim x cog) * gY[n][grp] (cog x hwo).
    gemm_rm(true, false, kdim, hwo, cog, w, kdim, cog * kdim, gy + n * g.c_out * hwo, hwo, cog * hwo, 0.f, cn,
            hwo, kdim * hwo, G, s);
    if (!direct) col2im(gxn, cn, p, s);
  }
}

void gemm_conv_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s) {
  const int64_t G = g.groups, cig = g.cin_per_group(), cog = g.cout_per_group();
  const int64_t kk = g.kh * g.kw, hwo = g.h_out * g.w_out, hw = g.h * g.w, kdim = cig * kk;
  if (g.n == 0) {
    CUDA_CHECK(cudaMemsetAsync(gw, 0, sizeof(float) * size_t(g.c_out * kdim), s));
    return;
  }
  const bool direct = is_1x1_direct(g);
  const ColParams p = col_params(g);
  DeviceBuffer col(direct ? 1 : sizeof(float) * size_t(g.c_in * kk * hwo), s);
  for (int64_t n = 0; n < g.n; ++n) {
    const float* xn = x + n * g.c_in * hw;
    const float* cn = xn;
    if (!direct) {
      im2col(col.as<float>(), xn, p, s);
      cn = col.as<float>();
    }
    // gW[grp] (cog x kdim) (+)= gY[n][grp] (cog x hwo) * col[grp]^T (hwo x kdim); images add in order.
    gemm_rm(false, true, cog, kdim, hwo, gy + n * g.c_out * hwo, hwo, cog * hwo, cn, hwo, kdim * hwo,
            n == 0 ? 0.f : 1.f, gw, kdim, cog * kdim, G, s);
  }
}

// ---- cuDNN path ----
#ifdef DEEPERLAB_WITH_CUDNN
struct CudnnDescs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit CudnnDescs(const ConvGeom& g) {
    for (int64_t v : {g.n, g.c_in, g.h, g.w, g.c_out, g.h_out, g.w_out})
      check_int32("conv2d (cuDNN)", v, "size");
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(g.n), int(g.c_in),
                                           int(g.h), int(g.w)));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(g.n), int(g.c_out),
                                           int(g.h_out), int(g.w_out)));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(g.c_out),
                                           int(g.cin_per_group()), int(g.kh), int(g.kw)));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(g.pad_h), int(g.pad_w), int(g.stride_h),
                                                int(g.stride_w), int(g.dil_h), int(g.dil_w),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, int(g.groups)));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv, tf32_enabled() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~CudnnDescs() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  CudnnDescs(const CudnnDescs&) = delete;
  CudnnDescs& operator=(const CudnnDescs&) = delete;
};

// A chosen algorithm (or "none": fall back to im2col), cached per geometry, direction and TF32 mode.
struct Choice {
  int algo = -1;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  size_t workspace = 0;
};

enum Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };

using Key = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
Key make_key(Dir d, const ConvGeom& g) {
  return Key{int(d), tf32_enabled(), g.n,        g.c_in,  g.h,     g.w,     g.c_out, g.kh,
             g.kw,   g.stride_h,     g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, g.groups};
}

std::mutex g_choice_mu;
std::map<Key, Choice> g_choices;

// Heuristic order from cuDNN; keeps the first algorithm that is supported, honours the TF32 switch,
// and (backward) is deterministic.
template <class Perf, class WsFn>
Choice pick(const Perf* perf, int count, bool need_deterministic, CudnnDescs& d, WsFn ws_fn) {
  const bool tf32 = tf32_enabled();
  for (int i = 0; i < count; ++i) {
    const Perf& pf = perf[i];
    if (pf.status != CUDNN_STATUS_SUCCESS) continue;
    if (need_deterministic && pf.determinism != CUDNN_DETERMINISTIC) continue;
    if (!tf32 &&
        (pf.mathType == CUDNN_TENSOR_OP_MATH || pf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    const cudnnMathType_t math = tf32 ? pf.mathType : CUDNN_FMA_MATH;
    if (cudnnSetConvolutionMathType(d.conv, math) != CUDNN_STATUS_SUCCESS) continue;
    size_t ws = 0;
    if (ws_fn(int(pf.algo), &ws) != CUDNN_STATUS_SUCCESS) continue;
    return Choice{int(pf.algo), math, ws};
  }
  return Choice{};
}

Choice choose(Dir dir, const ConvGeom& g, CudnnDescs& d) {
  const Key key = make_key(dir, g);
  {
    std::lock_guard<std::mutex> lock(g_choice_mu);
    auto it = g_choices.find(key);
    if (it != g_choices.end()) return it->second;
  }
  cudnnHandle_t h = cudnn_handle();
  Choice c;
  if (dir == kFwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    if (cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
                                               perf) != CUDNN_STATUS_SUCCESS)
      n = 0;
    c = pick(perf, n, false, d, [&](int a, size_t* ws) {
      return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, cudnnConvolutionFwdAlgo_t(a),
                                                     ws);
    });
  } else if (dir == kBwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    if (cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x,
                                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n,
                                                    perf) != CUDNN_STATUS_SUCCESS)
      n = 0;
    c = pick(perf, n, true, d, [&](int a, size_t* ws) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x,
                                                          cudnnConvolutionBwdDataAlgo_t(a), ws);
    });
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    if (cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w,
                                                      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
                                                      perf) != CUDNN_STATUS_SUCCESS)
      n = 0;
    c = pick(perf, n, true, d, [&](int a, size_t* ws) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w,
                                                            cudnnConvolutionBwdFilterAlgo_t(a), ws);
    });
  }
  if (c.algo < 0)
    std::fprintf(stderr,
                 "deeperlab: no suitable cuDNN algorithm for a convolution (direction %d); using im2col\n",
                 int(dir));
  std::lock_guard<std::mutex> lock(g_choice_mu);
  g_choices[key] = c;
  return c;
}

void forget_choice(Dir dir, const ConvGeom& g) {
  std::lock_guard<std::mutex> lock(g_choice_mu);
  g_choices[make_key(dir, g)] = Choice{};
}

// Returns false when cuDNN has no suitable algorithm or refuses to run it (the caller falls back to
// im2col, which overwrites every output element); such geometries are remembered and not retried.
bool cudnn_conv_impl(Dir dir, float* out, const float* a, const float* b, const ConvGeom& g, cudaStream_t s) {
  CudnnDescs d(g);
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &on, &oc, &oh, &ow));
  DL_CHECK(on == g.n && oc == g.c_out && oh == g.h_out && ow == g.w_out,
           "conv2d (cuDNN): output " << on << "x" << oc << "x" << oh << "x" << ow << " differs from " << g.n
                                     << "x" << g.c_out << "x" << g.h_out << "x" << g.w_out);
  const Choice c = choose(dir, g, d);
  if (c.algo < 0) return false;
  cudnnHandle_t h = cudnn_handle();
  CUDNN_CHECK(cudnnSetStream(h, s));
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
  DeviceBuffer ws(c.workspace > 0 ? c.workspace : 1, s);
  const float one = 1.f, zero = 0.f;
  cudnnStatus_t st;
  if (dir == kFwd)  // out = y, a = x, b = w
    st = cudnnConvolutionForward(h, &one, d.x, a, d.w, b, d.conv, cudnnConvolutionFwdAlgo_t(c.algo),
                                 ws.as<void>(), c.workspace, &zero, d.y, out);
  else if (dir == kBwdData)  // out = gx, a = gy, b = w
    st = cudnnConvolutionBackwardData(h, &one, d.w, b, d.y, a, d.conv, cudnnConvolutionBwdDataAlgo_t(c.algo),
                                      ws.as<void>(), c.workspace, &zero, d.x, out);
  else  // out = gw, a = gy, b = x
    st = cudnnConvolutionBackwardFilter(h, &one, d.x, b, d.y, a, d.conv,
                                        cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.as<void>(), c.workspace,
                                        &zero, d.w, out);
  if (st != CUDNN_STATUS_SUCCESS) {
    std::fprintf(stderr,
                 "deeperlab: cuDNN convolution (direction %d, algorithm %d) failed: %s; using im2col\n",
                 int(dir), c.algo, cudnnGetErrorString(st));
    forget_choice(dir, g);
    return false;
  }
  return true;
}

std::atomic<bool> g_cudnn_broken{false};

// A cuDNN that cannot even set up (e.g. a sub-library missing at run time) turns itself off with one
// message instead of failing every convolution.
bool cudnn_conv(Dir dir, float* out, const float* a, const float* b, const ConvGeom& g, cudaStream_t s) {
  if (g_cudnn_broken.load()) return false;
  try {
    return cudnn_conv_impl(dir, out, a, b, g, s);
  } catch (const Error& e) {
    std::fprintf(stderr, "deeperlab: cuDNN unusable, falling back to im2col for every convolution: %s\n",
                 e.what());
    g_cudnn_broken.store(true);
    cudaGetLastError();
    return false;
  }
}
#endif

bool use_cudnn(const ConvGeom& g) {
  if (conv_algo() != ConvAlgo::Cudnn) return false;
#ifdef DEEPERLAB_WITH_CUDNN
  return true;
#else
  warn_once_no_cudnn();
  return false;
#endif
}

void check_geom(const char* op, const ConvGeom& g) {
  DL_CHECK(g.groups >= 1 && g.c_in % g.groups == 0 && g.c_out % g.groups == 0 && g.stride_h >= 1 &&
               g.stride_w >= 1 && g.dil_h >= 1 && g.dil_w >= 1 && g.pad_h >= 0 && g.pad_w >= 0 &&
               g.h_out >= 0 && g.w_out >= 0,
           op << ": invalid convolution geometry");
}

}  // namespace

ConvAlgo conv_algo() {
  int v = g_algo.load();
  if (v < 0) {
    const char* e = std::getenv("DEEPERLAB_CONV_ALGO");
    v = int(ConvAlgo::Im2col);
    if (e && std::strcmp(e, "cudnn") == 0) {
      v = int(ConvAlgo::Cudnn);
    } else if (e && *e && std::strcmp(e, "im2col") != 0) {
      std::fprintf(stderr, "deeperlab: unknown DEEPERLAB_CONV_ALGO=%s (im2col|cudnn); using im2col\n", e);
    }
    g_algo.store(v);
  }
  return ConvAlgo(v);
}

void set_conv_algo(ConvAlgo a) {
  g_algo.store(int(a));
}

bool cudnn_built() {
#ifdef DEEPERLAB_WITH_CUDNN
  return true;
#else
  return false;
#endif
}

void conv2d_fwd(float* y, const float* x, const float* w, const float* bias, const ConvGeom& g,
                cudaStream_t s) {
  check_geom("conv2d_fwd", g);
  if (g.n * g.c_out * g.h_out * g.w_out == 0) return;
  if (g.is_depthwise()) return depthwise_fwd(y, x, w, bias, g, s);
  bool done = false;
#ifdef DEEPERLAB_WITH_CUDNN
  if (!is_1x1_direct(g) && use_cudnn(g)) done = cudnn_conv(kFwd, y, x, w, g, s);
#else
  if (!is_1x1_direct(g)) (void)use_cudnn(g);
#endif
  if (!done) gemm_conv_fwd(y, x, w, g, s);
  add_bias(y, bias, g.n, g.c_out, g.h_out * g.w_out, s);
}

void conv2d_bwd_input(float* gx, const float* gy, const float* w, const ConvGeom& g, cudaStream_t s) {
  check_geom("conv2d_bwd_input", g);
  if (g.n * g.c_in * g.h * g.w == 0) return;
  if (g.h_out * g.w_out * g.c_out == 0) {
    CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(float) * size_t(g.n * g.c_in * g.h * g.w), s));
    return;
  }
  if (g.is_depthwise()) return depthwise_bwd_input(gx, gy, w, g, s);
  bool done = false;
#ifdef DEEPERLAB_WITH_CUDNN
  if (!is_1x1_direct(g) && use_cudnn(g)) done = cudnn_conv(kBwdData, gx, gy, w, g, s);
#endif
  if (!done) gemm_conv_bwd_input(gx, gy, w, g, s);
}

void conv2d_bwd_weight(float* gw, const float* gy, const float* x, const ConvGeom& g, cudaStream_t s) {
  check_geom("conv2d_bwd_weight", g);
  const int64_t wn = g.c_out * g.cin_per_group() * g.kh * g.kw;
  if (wn == 0) return;
  if (g.n * g.h_out * g.w_out == 0) {
    CUDA_CHECK(cudaMemsetAsync(gw, 0, sizeof(float) * size_t(wn), s));
    return;
  }
  if (g.is_depthwise()) return depthwise_bwd_weight(gw, gy, x, g, s);
  bool done = false;
#ifdef DEEPERLAB_WITH_CUDNN
  if (!is_1x1_direct(g) && use_cudnn(g)) done = cudnn_conv(kBwdFilter, gw, gy, x, g, s);
#endif
  if (!done) gemm_conv_bwd_weight(gw, gy, x, g, s);
}

void conv2d_bwd_bias(float* gb, const float* gy, const ConvGeom& g, cudaStream_t s) {
  if (g.c_out <= 0) return;
  const int64_t hw = g.h_out * g.w_out;
  if (g.n * hw == 0) {
    CUDA_CHECK(cudaMemsetAsync(gb, 0, sizeof(float) * size_t(g.c_out), s));
    return;
  }
  const unsigned blocks = unsigned(g.c_out < (1 << 20) ? g.c_out : (1 << 20));
  conv2d_bwd_bias_kernel<<<blocks, 512, 0, s>>>(gb, gy, g.n, g.c_out, hw);
  DL_LAUNCH_CHECK("conv2d_bwd_bias_kernel");
}

}  // namespace dl::cuda
