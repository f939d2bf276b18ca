// Instance prediction and fusion on the GPU: the kernel launchers (implemented in cuda/fusion.cu,
// orchestrated by parser/instance.cpp), and the per-pixel / per-candidate arithmetic shared
// verbatim by the CPU reference and the kernels, so both give the same bits.
//
// The non-obvious decision: every float product and sum goes through f_mul/f_add, which forbid
// fused multiply-add contraction (nvcc and GCC -march=native both contract a*b+c by default, each
// in its own places), the heatmap sigmoid is a table lookup (CUDA's expf and glibc's differ in the
// last ulp), and votes are accumulated as 64-bit fixed-point integers (order-free sums). Together
// this makes CPU and CUDA results bit-identical, whatever the thread count or atomic order.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/runtime.h"

#if defined(__CUDACC__)
#define DL_HD __host__ __device__ __forceinline__
#else
#define DL_HD inline
#endif

namespace dl::inst {

constexpr int kP = 5;   // keypoints
constexpr int kE = 8;   // edges
// Fixed-point scale of one vote of weight 1 (2^24: a vote's bilinear share keeps 24 bits).
constexpr float kVoteScale = 16777216.0f;
// Sigmoid table: logits clamped to [-16, 16] on a grid of 1/256.
constexpr int kLutPerUnit = 256;
constexpr int kLutHalf = 16 * kLutPerUnit;
constexpr int kLutSize = 2 * kLutHalf + 1;

DL_HD float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#elif defined(__CUDACC__)
  return a * b;  // host side of a .cu file: never called
#else
  return __builtin_assoc_barrier(a * b);
#endif
}
DL_HD float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#elif defined(__CUDACC__)
  return a + b;
#else
  return __builtin_assoc_barrier(a + b);
#endif
}
DL_HD float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#elif defined(__CUDACC__)
  return a - b;
#else
  return __builtin_assoc_barrier(a - b);
#endif
}
DL_HD float f_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
// Plain compares (fminf/fmaxf are library calls on the host without -ffast-math); NaN -> lo.
DL_HD float f_clamp(float v, float lo, float hi) { return v > lo ? (v < hi ? v : hi) : lo; }
DL_HD int i_min(int a, int b) { return a < b ? a : b; }

DL_HD int sigmoid_lut_index(float logit) {
  return static_cast<int>(rintf(f_clamp(logit, -16.0f, 16.0f) * float(kLutPerUnit))) + kLutHalf;
}

// Edge e: from keypoint e / 0 ... to keypoint e+1 (e < 4) or 0 (e >= 4); see parser/targets.h.
DL_HD int edge_to(int e) { return e < 4 ? e + 1 : 0; }

// Bilinear sample of the two channels (cy, cx) at (py, px), clamped to the image.
DL_HD void sample2(const float* cy, const float* cx, int h, int w, float py, float px, float& oy, float& ox) {
  py = f_clamp(py, 0.0f, float(h - 1));
  px = f_clamp(px, 0.0f, float(w - 1));
  const float fy = floorf(py), fx = floorf(px);
  const int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
  const int y1 = i_min(y0 + 1, h - 1), x1 = i_min(x0 + 1, w - 1);
  const float ty = f_sub(py, fy), tx = f_sub(px, fx);
  const float uy = f_sub(1.0f, ty), ux = f_sub(1.0f, tx);
  const float w00 = f_mul(uy, ux), w01 = f_mul(uy, tx), w10 = f_mul(ty, ux), w11 = f_mul(ty, tx);
  const int64_t i00 = int64_t(y0) * w + x0, i01 = int64_t(y0) * w + x1;
  const int64_t i10 = int64_t(y1) * w + x0, i11 = int64_t(y1) * w + x1;
  oy = f_add(f_add(f_add(f_mul(w00, cy[i00]), f_mul(w01, cy[i01])), f_mul(w10, cy[i10])), f_mul(w11, cy[i11]));
  ox = f_add(f_add(f_add(f_mul(w00, cx[i00]), f_mul(w01, cx[i01])), f_mul(w10, cx[i10])), f_mul(w11, cx[i11]));
}

// Offset refinement at pixel (y, x): m <- m + S(x + m), `steps` times; S = the short-range
// offsets (sy, sx) of the target keypoint.
DL_HD void refine_at(float& my, float& mx, int y, int x, const float* sy, const float* sx, int h, int w, int steps) {
  for (int s = 0; s < steps; ++s) {
    float dy, dx;
    sample2(sy, sx, h, w, f_add(float(y), my), f_add(float(x), mx), dy, dx);
    my = f_add(my, dy);
    mx = f_add(mx, dx);
  }
}

// Bilinear splat of `weight` at (py, px) into an accumulator plane; taps outside are dropped.
// add(index, fixed_point_value) does the (atomic or plain) accumulation.
template <class Add>
DL_HD void splat(float py, float px, int h, int w, float weight, Add add) {
  if (!(py > -1.0f && py < float(h) && px > -1.0f && px < float(w))) return;
  const float fy = floorf(py), fx = floorf(px);
  const int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
  const float ty = f_sub(py, fy), tx = f_sub(px, fx);
  const float uy = f_sub(1.0f, ty), ux = f_sub(1.0f, tx);
  const float ws = f_mul(weight, kVoteScale);
  const float wy[2] = {uy, ty}, wx[2] = {ux, tx};
  for (int a = 0; a < 2; ++a) {
    const int yy = y0 + a;
    if (yy < 0 || yy >= h) continue;
    for (int b = 0; b < 2; ++b) {
      const int xx = x0 + b;
      if (xx < 0 || xx >= w) continue;
      const float v = rintf(f_mul(f_mul(wy[a], wx[b]), ws));
      if (v > 0.0f) add(int64_t(yy) * w + xx, static_cast<unsigned long long>(v));
    }
  }
}

// Sum over keypoints of the Euclidean distance between a pixel's predicted keypoints p and an
// instance's keypoints q (both (y, x) interleaved, 2P floats).
DL_HD float assign_cost(const float* p, const float* q) {
  float s = 0.0f;
  for (int k = 0; k < kP; ++k) {
    const float dy = f_sub(p[2 * k], q[2 * k]), dx = f_sub(p[2 * k + 1], q[2 * k + 1]);
    s = f_add(s, f_sqrt(f_add(f_mul(dy, dy), f_mul(dx, dx))));
  }
  return s;
}

// The instance a popped candidate proposes, before any rejection: all five keypoints (clamped
// to the image) and the fused score accumulators at them.
struct Proposal {
  float kp[2 * kP];
  unsigned long long acc[kP];
};

DL_HD int round_clamp(float v, int n) { return static_cast<int>(rintf(f_clamp(v, 0.0f, float(n - 1)))); }

// Keypoint reached from (y, x) along edge e with the refined middle-range offset read there.
DL_HD void follow_edge(int e, float qy, float qx, const float* mid, const float* shrt, int h, int w, int steps,
                       float& ty, float& tx) {
  const int iy = round_clamp(qy, h), ix = round_clamp(qx, w);
  const int64_t hw = int64_t(h) * w, i = int64_t(iy) * w + ix;
  float my = mid[(2 * e) * hw + i], mx = mid[(2 * e + 1) * hw + i];
  const int l = edge_to(e);
  refine_at(my, mx, iy, ix, shrt + (2 * l) * hw, shrt + (2 * l + 1) * hw, h, w, steps);
  ty = f_clamp(f_add(float(iy), my), 0.0f, float(h - 1));
  tx = f_clamp(f_add(float(ix), mx), 0.0f, float(w - 1));
}

// Star-graph expansion of candidate keypoint k at pixel (y, x): a centre goes to the corners
// along edges 0..3; a corner goes to the centre along edge k+3, then the centre to the other corners.
DL_HD void expand_candidate(int k, int y, int x, const float* mid, const float* shrt, const unsigned long long* acc,
                            int h, int w, int steps, Proposal& out) {
  out.kp[2 * k] = float(y);
  out.kp[2 * k + 1] = float(x);
  if (k != 0) follow_edge(k + 3, float(y), float(x), mid, shrt, h, w, steps, out.kp[0], out.kp[1]);
  for (int j = 1; j < kP; ++j)
    if (j != k) follow_edge(j - 1, out.kp[0], out.kp[1], mid, shrt, h, w, steps, out.kp[2 * j], out.kp[2 * j + 1]);
  const int64_t hw = int64_t(h) * w;
  for (int j = 0; j < kP; ++j)
    out.acc[j] = acc[j * hw + int64_t(round_clamp(out.kp[2 * j], h)) * w + round_clamp(out.kp[2 * j + 1], w)];
}

}  // namespace dl::inst

namespace dl::cuda {

// Up to kMax float tensors scanned for non-finite values in one launch (unused slots: n = 0).
struct FiniteCheck {
  static constexpr int kMax = 5;
  const float* x[kMax] = {};
  int64_t n[kMax] = {};
};
// first_bad[t] (kMax device slots) = index of the first non-finite element of tensor t, or
// ULLONG_MAX when none (the launcher initialises the slots itself).
void fusion_check_finite(unsigned long long* first_bad, const FiniteCheck& args, cudaStream_t s);
// labels[i] = first argmax over K planes; thing[i] = isthing_lut[label].
void fusion_argmax(int32_t* labels, uint8_t* thing, const float* semantic, const uint8_t* isthing_lut, int k,
                   int64_t hw, cudaStream_t s);
// Short-range votes of all P keypoints into acc (P planes), weight lut[heat] * weight.
void fusion_vote_short(unsigned long long* acc, const float* heat, const float* shrt, const float* lut, int h, int w,
                       float min_vote_weight, float weight, cudaStream_t s);
// Long-range offsets refined at thing pixels into refined (2P planes), and their votes (weight > 0).
void fusion_vote_long(unsigned long long* acc, float* refined, const uint8_t* thing, const float* lng,
                      const float* shrt, int h, int w, int steps, float weight, cudaStream_t s);
// 3x3 local maxima with acc > thr: (keypoint * H * W + pixel) appended to list (unordered), count
// in *count (may exceed capacity: then only capacity entries are written).
void fusion_candidates(int* count, int* list, int capacity, const unsigned long long* acc, int h, int w,
                       unsigned long long thr, cudaStream_t s);
// Expands list[c] for c < min(*count, capacity) (count read on the device: no host round trip).
void fusion_expand(inst::Proposal* out, const int* list, const int* count, int capacity, const float* mid,
                   const float* shrt, const unsigned long long* acc, int h, int w, int steps, cudaStream_t s);
// owner[i]: -1 void, label (stuff), or k + j (instance j nearest by assign_cost, lowest j on ties);
// then per-owner area, bbox (y0, x0, y1, x1 as 4 planes of k + n) and class votes (n * k).
void fusion_assign(int32_t* owner, const int32_t* labels, const uint8_t* thing, const float* refined,
                   const float* inst_kp, const float* inst_bar, int n, int k, int h, int w, cudaStream_t s);
void fusion_stats(unsigned long long* area, int* bbox, unsigned long long* class_votes, const int32_t* owner,
                  const int32_t* labels, int k, int n, int h, int w, cudaStream_t s);
void fusion_ids(int32_t* ids, const int32_t* owner, const int32_t* owner_to_id, int64_t hw, cudaStream_t s);

// Device copy of the sigmoid table (host_lut: kLutSize floats), uploaded on the first call only.
const float* fusion_sigmoid_lut(const float* host_lut);
// Stream-ordered copies without a synchronisation. The host buffer must stay alive and unchanged
// until the stream is synchronised (pageable memory is staged by the driver; pinned memory is not).
void fusion_h2d_async(void* dst, const void* src, size_t bytes, cudaStream_t s);
void fusion_d2h_async(void* dst, const void* src, size_t bytes, cudaStream_t s);
void fusion_sync(cudaStream_t s);
// The calling thread's page-locked host buffer of at least `bytes` bytes, kept and reused across
// calls (grown when too small; growing first synchronises stream()); contents are not preserved.
void* fusion_pinned_host(size_t bytes);
void fusion_release_pinned_host();

}  // namespace dl::cuda
