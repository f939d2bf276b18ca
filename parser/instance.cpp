// CPU reference of instance prediction and panoptic fusion, and the host side of the CUDA path
// (which runs the same stages as kernels from cuda/fusion.cu and shares grouping and the segment
// table with the CPU code here).
//
// The non-obvious decision: no stage allocates per pixel, and pixel assignment evaluates an
// instance only when the exact lower bound 5 |mean(p) - mean(q_j)| <= sum_k |p_k - q_jk| (triangle
// inequality) cannot rule it out, which makes it nearly O(1) per pixel yet equal to brute force.
// With AVX-512 the per-pixel stages run sixteen pixels per vector with the scalar code's exact
// operations (bench_fusion --hash checks that every output bit stays the same).
#include "parser/instance.h"

#include <omp.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/cpu/simd.h"
#include "cuda/fusion.h"

namespace dl {
namespace {

constexpr double kPi = 3.14159265358979323846;
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point& t) {
  const auto now = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - t).count();
  t = now;
  return ms;
}

const char* kHeadNames[5] = {"semantic", "heatmap", "long_offsets", "short_offsets", "mid_offsets"};

std::array<const Tensor*, 5> heads(const HeadOutputs& out) {
  return {&out.semantic, &out.heatmap, &out.long_offsets, &out.short_offsets, &out.mid_offsets};
}

// [0, c, y, x] of a flat index into a [1, C, H, W] tensor.
std::string index_str(int64_t i, int64_t h, int64_t w) {
  std::ostringstream os;
  os << "[0, " << i / (h * w) << ", " << (i / w) % h << ", " << i % w << "]";
  return os.str();
}

void check_finite_cpu(const Tensor& t, const char* name) {
  const float* p = t.data<float>();
  const int64_t n = t.numel();
  uint32_t bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
  for (int64_t b = 0; b < n; b += 4096) {
    const int64_t e = std::min(n, b + 4096);
    uint32_t f = 0;
    for (int64_t i = b; i < e; ++i) {
      uint32_t u;
      std::memcpy(&u, p + i, 4);
      f |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    }
    bad |= f;
  }
  if (!bad) return;
  for (int64_t i = 0; i < n; ++i)
    DL_CHECK(std::isfinite(p[i]), "predict_panoptic: head output '" << name << "' " << t.shape_str()
                                                                     << " holds a non-finite value " << p[i] << " at "
                                                                     << index_str(i, t.size(2), t.size(3)));
}

std::vector<uint8_t> thing_lut(const ClassMap& classes) {
  std::vector<uint8_t> lut(classes.num_classes());
  for (int32_t c = 0; c < classes.num_classes(); ++c) lut[c] = classes.isthing(c) ? 1 : 0;
  return lut;
}

std::array<float, 10> instance_kp(const DetectedInstance& d) {
  std::array<float, 10> q;
  for (int k = 0; k < kNumKeypoints; ++k) {
    q[2 * k] = d.keypoints[k][0];
    q[2 * k + 1] = d.keypoints[k][1];
  }
  return q;
}

// Instance keypoints as 2P floats each, and their means (for the assignment lower bound).
void instance_tables(const std::vector<DetectedInstance>& instances, std::vector<float>& kp, std::vector<float>& bar) {
  kp.resize(instances.size() * 10);
  bar.resize(instances.size() * 2);
  for (size_t j = 0; j < instances.size(); ++j) {
    auto q = instance_kp(instances[j]);
    std::copy(q.begin(), q.end(), kp.begin() + j * 10);
    float sy = 0, sx = 0;
    for (int k = 0; k < kNumKeypoints; ++k) {
      sy += q[2 * k];
      sx += q[2 * k + 1];
    }
    bar[2 * j] = sy / 5.0f;
    bar[2 * j + 1] = sx / 5.0f;
  }
}

// Rows of accumulators zeroed at a time ahead of the non-atomic short-range votes (~100 KB at
// 1441 columns: stays in L2).
constexpr int64_t kZeroAhead = 8;

// Adds fixed-point votes to one accumulator plane `a`: atomically when threads share the plane;
// with LazyZero (short-range votes of a thread's own plane: see vote_short_cpu), the rows from
// `*zeroed` on are zeroed first when a vote reaches them.
template <bool Atomic, bool LazyZero = false>
struct PlaneAdd {
  unsigned long long* a;
  int64_t hw, w;
  int64_t* zeroed;
  void operator()(int64_t i, unsigned long long v) const {
    if (Atomic) {
      if (v) __atomic_fetch_add(a + i, v, __ATOMIC_RELAXED);  // vector splats pass zeros too
      return;
    }
    if (LazyZero && i >= *zeroed) zero_to(std::min(hw, (i / w + kZeroAhead) * w));
    a[i] += v;
  }
  void zero_to(int64_t end) const {
    std::memset(a + *zeroed, 0, size_t(end - *zeroed) * sizeof *a);
    *zeroed = end;
  }
};

// Per-thread row buffers of the vote passes: compacted voting pixels of one row.
struct RowScratch {
  std::vector<float> py, px, wv;  // vote positions and weights (long-range: refined offsets)
  std::vector<int> xs;            // columns of thing pixels
  std::vector<uint16_t> masks;    // thing-pixel mask of each 16 columns
  explicit RowScratch(int w) : py(w + 16), px(w + 16), wv(w + 16), xs(w + 16), masks(w / 16 + 1) {}
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define DL_FUSION_AVX512 1
// GCC 12 warns about the deliberately undefined vectors inside its AVX-512 intrinsics when they
// are inlined into fp-contract=off functions (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Sixteen pixels per vector. Every function here performs the scalar code's IEEE operations
// (cuda/fusion.h) lane by lane in the same order, without FMA, so the bits stay those of the
// scalar, AVX2 and CUDA paths.

inline __m512i lane_index() { return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0); }

// f_clamp: v > lo ? (v < hi ? v : hi) : lo (NaN -> lo).
inline __m512 clamp16(__m512 v, __m512 lo, __m512 hi) {
  const __m512 t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, hi, _CMP_LT_OQ), hi, v);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, lo, _CMP_GT_OQ), lo, t);
}

// The four taps of the splat() calls of the first `lanes` lanes: tap t of lane j adds val[t][j]
// at idx[t][j]. Taps that splat() skips (outside the image, value 0) hold 0 at an index inside the
// image, so that adding every tap gives the same sums without a branch per tap. When all lanes of
// a tap hit one accumulator (the long-range votes of one instance, mostly), their sum is added
// once instead of through a chain of dependent read-modify-writes.
struct Taps16 {
  alignas(64) int32_t idx[4][16];
  alignas(64) unsigned long long val[4][16];
  unsigned long long sum[4];
  int lanes;
  unsigned uniform;  // bit t: every lane of tap t has the same index
  template <class Add>
  void add_to(const Add& add) const {
    if (uniform == 0) {  // the usual case with noisy offsets: no test per tap
      for (int j = 0; j < lanes; ++j)
        for (int t = 0; t < 4; ++t) add(idx[t][j], val[t][j]);  // lane-major: independent chains
      return;
    }
    for (int t = 0; t < 4; ++t)
      if (uniform >> t & 1) add(idx[t][0], sum[t]);
    for (int j = 0; j < lanes && uniform != 0xf; ++j)
      for (int t = 0; t < 4; ++t)
        if (!(uniform >> t & 1)) add(idx[t][j], val[t][j]);
  }
};

__attribute__((optimize("fp-contract=off"))) void splat16(Taps16& out, __m512 py, __m512 px, __m512 weight,
                                                          int lanes, int h, int w) {
  const __mmask16 active = cpu::lane_mask(lanes);
  out.lanes = lanes;
  out.uniform = 0;
  const __mmask16 m = active & _mm512_cmp_ps_mask(py, _mm512_set1_ps(-1.0f), _CMP_GT_OQ) &
       _mm512_cmp_ps_mask(py, _mm512_set1_ps(float(h)), _CMP_LT_OQ) &
       _mm512_cmp_ps_mask(px, _mm512_set1_ps(-1.0f), _CMP_GT_OQ) &
       _mm512_cmp_ps_mask(px, _mm512_set1_ps(float(w)), _CMP_LT_OQ);
  const __m512 fy = _mm512_floor_ps(py), fx = _mm512_floor_ps(px);
  const __m512i y0 = _mm512_cvttps_epi32(fy), x0 = _mm512_cvttps_epi32(fx);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 ty = _mm512_sub_ps(py, fy), tx = _mm512_sub_ps(px, fx);
  const __m512 wy[2] = {_mm512_sub_ps(one, ty), ty}, wx[2] = {_mm512_sub_ps(one, tx), tx};
  const __m512 ws = _mm512_mul_ps(weight, _mm512_set1_ps(inst::kVoteScale));
  const __m512i zero = _mm512_setzero_si512(), h1 = _mm512_set1_epi32(h - 1), w1 = _mm512_set1_epi32(w - 1);
  for (int a = 0; a < 2; ++a) {
    const __m512i yy = _mm512_add_epi32(y0, _mm512_set1_epi32(a));
    const __mmask16 ma = m & _mm512_cmpge_epi32_mask(yy, zero) & _mm512_cmple_epi32_mask(yy, h1);
    const __m512i row = _mm512_mullo_epi32(_mm512_min_epi32(_mm512_max_epi32(yy, zero), h1), _mm512_set1_epi32(w));
    for (int b = 0; b < 2; ++b) {
      const __m512i xx = _mm512_add_epi32(x0, _mm512_set1_epi32(b));
      const __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_mul_ps(wy[a], wx[b]), ws), _MM_FROUND_CUR_DIRECTION);
      const __mmask16 mt = ma & _mm512_cmpge_epi32_mask(xx, zero) & _mm512_cmple_epi32_mask(xx, w1) &
                           _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
      const __m512 vt = _mm512_maskz_mov_ps(mt, v);
      const int t = 2 * a + b;
      const __m512i idx = _mm512_add_epi32(row, _mm512_min_epi32(_mm512_max_epi32(xx, zero), w1));
      const __m512i v0 = _mm512_cvttps_epu64(_mm512_castps512_ps256(vt));
      const __m512i v1 = _mm512_cvttps_epu64(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vt), 1)));
      _mm512_store_si512(out.idx[t], idx);
      _mm512_store_si512(out.val[t], v0);
      _mm512_store_si512(out.val[t] + 8, v1);
      if (_mm512_mask_cmpneq_epi32_mask(active, idx, _mm512_set1_epi32(out.idx[t][0])) == 0) {
        out.uniform |= 1u << t;
        out.sum[t] = _mm512_reduce_add_epi64(_mm512_add_epi64(v0, v1));
      }
    }
  }
}

// Splats the n compacted votes (py, px, wv) of a row buffer.
template <class Add>
void splat_compacted(const RowScratch& s, const float* wv, int n, int h, int w, const Add& add) {
  Taps16 taps;
  for (int j = 0; j < n; j += 16) {
    splat16(taps, _mm512_loadu_ps(s.py.data() + j), _mm512_loadu_ps(s.px.data() + j), _mm512_loadu_ps(wv + j),
            std::min(16, n - j), h, w);
    taps.add_to(add);
  }
}

// c[r] and c[r + 1] for sixteen indices r: sixteen 8-byte loads of float pairs (half the loads of
// single floats; scalar loads assembled into vectors beat vpgatherdq on the AMD EPYC dev machine),
// split into the pairs' first and second elements. At edge lanes (x0 = w - 1, where the pair starts
// one column early) both taps are the second element.
inline void gather_pairs(const float* c, __m512i r, __mmask16 edge, __m512& first, __m512& second) {
  alignas(64) int32_t id[16];
  _mm512_store_si512(id, r);
  auto ld = [&](int j) { long long v; std::memcpy(&v, c + id[j], 8); return v; };
  const __m512i lo = _mm512_set_epi64(ld(7), ld(6), ld(5), ld(4), ld(3), ld(2), ld(1), ld(0));
  const __m512i hi = _mm512_set_epi64(ld(15), ld(14), ld(13), ld(12), ld(11), ld(10), ld(9), ld(8));
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  second = _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, odd, hi));
  first = _mm512_mask_blend_ps(edge, _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, even, hi)), second);
}

// refine_at for sixteen pixels (fy, fx) with offsets (my, mx); needs w >= 2.
__attribute__((optimize("fp-contract=off"))) void refine16(__m512& my, __m512& mx, __m512 fy, __m512 fx,
                                                           const float* sy, const float* sx, int h, int w, int steps) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 hmax = _mm512_set1_ps(float(h - 1)), wmax = _mm512_set1_ps(float(w - 1));
  const __m512i h1 = _mm512_set1_epi32(h - 1), w2 = _mm512_set1_epi32(w - 2), vw = _mm512_set1_epi32(w);
  for (int s = 0; s < steps; ++s) {
    const __m512 py = clamp16(_mm512_add_ps(fy, my), zero, hmax), px = clamp16(_mm512_add_ps(fx, mx), zero, wmax);
    const __m512 fly = _mm512_floor_ps(py), flx = _mm512_floor_ps(px);
    const __m512i y0 = _mm512_cvttps_epi32(fly), x0 = _mm512_cvttps_epi32(flx);
    const __m512i y1 = _mm512_min_epi32(_mm512_add_epi32(y0, _mm512_set1_epi32(1)), h1);
    const __m512i xp = _mm512_min_epi32(x0, w2);  // first column of the pair read
    const __mmask16 edge = _mm512_cmpgt_epi32_mask(x0, w2);
    const __m512 ty = _mm512_sub_ps(py, fly), tx = _mm512_sub_ps(px, flx);
    const __m512 uy = _mm512_sub_ps(one, ty), ux = _mm512_sub_ps(one, tx);
    const __m512 w00 = _mm512_mul_ps(uy, ux), w01 = _mm512_mul_ps(uy, tx);
    const __m512 w10 = _mm512_mul_ps(ty, ux), w11 = _mm512_mul_ps(ty, tx);
    const __m512i r0 = _mm512_add_epi32(_mm512_mullo_epi32(y0, vw), xp);
    const __m512i r1 = _mm512_add_epi32(_mm512_mullo_epi32(y1, vw), xp);
    auto interp = [&](const float* c) {
      __m512 c00, c01, c10, c11;
      gather_pairs(c, r0, edge, c00, c01);
      gather_pairs(c, r1, edge, c10, c11);
      __m512 v = _mm512_mul_ps(w00, c00);
      v = _mm512_add_ps(v, _mm512_mul_ps(w01, c01));
      v = _mm512_add_ps(v, _mm512_mul_ps(w10, c10));
      return _mm512_add_ps(v, _mm512_mul_ps(w11, c11));
    };
    my = _mm512_add_ps(my, interp(sy));
    mx = _mm512_add_ps(mx, interp(sx));
  }
}

// Short-range votes of row y: pixels whose logit passes the cut are compacted with their vote
// positions and weights, then splatted sixteen at a time. Returns whether a logit was non-finite.
template <class Add>
__attribute__((optimize("fp-contract=off"))) bool vote_short_row16(RowScratch& s, const float* hrow,
                                                                   const float* syrow, const float* sxrow, int y,
                                                                   int h, int w, const float* lut, float cut,
                                                                   float min_w, float weight, const Add& add) {
  const __m512i expo = _mm512_set1_epi32(0x7f800000);
  const __m512 fy = _mm512_set1_ps(float(y));
  __mmask16 bad = 0;
  int n = 0;
  for (int x = 0; x < w; x += 16) {
    const __mmask16 tm = cpu::lane_mask(w - x);
    // The next row's lines: the hardware prefetcher does not keep up with these masked loads.
    _mm_prefetch(reinterpret_cast<const char*>(hrow + w + x), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(syrow + w + x), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(sxrow + w + x), _MM_HINT_T0);
    const __m512 l = _mm512_maskz_loadu_ps(tm, hrow + x);
    bad |= _mm512_mask_cmpeq_epi32_mask(tm, _mm512_and_si512(_mm512_castps_si512(l), expo), expo);
    __mmask16 m = _mm512_mask_cmp_ps_mask(tm, l, _mm512_set1_ps(cut), _CMP_NLT_UQ);  // !(l < cut)
    if (!m) continue;
    // sigmoid_lut_index
    const __m512 lc = clamp16(l, _mm512_set1_ps(-16.0f), _mm512_set1_ps(16.0f));
    const __m512i li = _mm512_add_epi32(
        _mm512_cvttps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(lc, _mm512_set1_ps(float(inst::kLutPerUnit))),
                                                 _MM_FROUND_CUR_DIRECTION)),
        _mm512_set1_epi32(inst::kLutHalf));
    const __m512 hv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, li, lut, 4);
    m = _mm512_mask_cmp_ps_mask(m, hv, _mm512_set1_ps(min_w), _CMP_GE_OQ);
    const __m512 fx = _mm512_cvtepi32_ps(_mm512_add_epi32(lane_index(), _mm512_set1_epi32(x)));
    const __m512 py = _mm512_add_ps(fy, _mm512_maskz_loadu_ps(m, syrow + x));
    const __m512 px = _mm512_add_ps(fx, _mm512_maskz_loadu_ps(m, sxrow + x));
    _mm512_storeu_ps(s.py.data() + n, _mm512_maskz_compress_ps(m, py));
    _mm512_storeu_ps(s.px.data() + n, _mm512_maskz_compress_ps(m, px));
    _mm512_storeu_ps(s.wv.data() + n, _mm512_maskz_compress_ps(m, _mm512_mul_ps(hv, _mm512_set1_ps(weight))));
    n += __builtin_popcount(m);
  }
  splat_compacted(s, s.wv.data(), n, h, w, add);
  return bad != 0;
}

// Long-range refinement and votes of row y's thing pixels: their columns and offsets are
// compacted, refined and splatted sixteen at a time, and the refined offsets stored back in place.
template <class Add>
__attribute__((optimize("fp-contract=off"))) void vote_long_row16(RowScratch& s, const uint8_t* trow,
                                                                  const float* lyrow, const float* lxrow, float* ryrow,
                                                                  float* rxrow, const float* sy, const float* sx,
                                                                  int y, int h, int w, int steps, float weight,
                                                                  const Add& add) {
  int n = 0;
  for (int x = 0; x < w; x += 16) {
    const __mmask16 tm = cpu::lane_mask(w - x);
    _mm_prefetch(reinterpret_cast<const char*>(lyrow + w + x), _MM_HINT_T0);  // as in vote_short_row16
    _mm_prefetch(reinterpret_cast<const char*>(lxrow + w + x), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(trow + w + x), _MM_HINT_T0);
    const __m128i t = _mm_maskz_loadu_epi8(tm, trow + x);
    const __mmask16 m = _mm_test_epi8_mask(t, t);
    s.masks[x / 16] = m;
    if (!m) continue;
    _mm512_storeu_si512(s.xs.data() + n,
                        _mm512_maskz_compress_epi32(m, _mm512_add_epi32(lane_index(), _mm512_set1_epi32(x))));
    _mm512_storeu_ps(s.py.data() + n, _mm512_maskz_compress_ps(m, _mm512_maskz_loadu_ps(m, lyrow + x)));
    _mm512_storeu_ps(s.px.data() + n, _mm512_maskz_compress_ps(m, _mm512_maskz_loadu_ps(m, lxrow + x)));
    n += __builtin_popcount(m);
  }
  if (n == 0) return;
  // Lanes past n hold stale values; refinement clamps every sample position, so they read inside
  // the image, and they neither vote nor are stored.
  const __m512 fy = _mm512_set1_ps(float(y));
  Taps16 taps;
  for (int j = 0; j < n; j += 16) {
    __m512 my = _mm512_loadu_ps(s.py.data() + j), mx = _mm512_loadu_ps(s.px.data() + j);
    const __m512 fx = _mm512_cvtepi32_ps(_mm512_loadu_si512(s.xs.data() + j));
    refine16(my, mx, fy, fx, sy, sx, h, w, steps);
    _mm512_storeu_ps(s.py.data() + j, my);
    _mm512_storeu_ps(s.px.data() + j, mx);
    if (weight > 0.0f) {
      splat16(taps, _mm512_add_ps(fy, my), _mm512_add_ps(fx, mx), _mm512_set1_ps(weight), std::min(16, n - j), h, w);
      taps.add_to(add);
    }
  }
  for (int x = 0, done = 0; x < w; x += 16) {
    const __mmask16 m = s.masks[x / 16];
    if (!m) continue;
    _mm512_mask_storeu_ps(ryrow + x, m, _mm512_maskz_expand_ps(m, _mm512_loadu_ps(s.py.data() + done)));
    _mm512_mask_storeu_ps(rxrow + x, m, _mm512_maskz_expand_ps(m, _mm512_loadu_ps(s.px.data() + done)));
    done += __builtin_popcount(m);
  }
}

// Pixel assignment's instance table and grid (see assign_pixels_into).
struct AssignGrid {
  const float *kp, *bar;  // 2P keypoints and 2 means per instance
  const int *cell_start, *cell_items;
  int n, gh, gw;
  float cell;
};

// assign_cost for sixteen pixels with predicted keypoints p[0..9] against instance keypoints q.
__attribute__((optimize("fp-contract=off"))) inline __m512 assign_cost16(const __m512* p, const float* q) {
  __m512 s = _mm512_setzero_ps();
  for (int k = 0; k < 5; ++k) {
    const __m512 dy = _mm512_sub_ps(p[2 * k], _mm512_set1_ps(q[2 * k]));
    const __m512 dx = _mm512_sub_ps(p[2 * k + 1], _mm512_set1_ps(q[2 * k + 1]));
    s = _mm512_add_ps(s, _mm512_sqrt_ps(_mm512_add_ps(_mm512_mul_ps(dy, dy), _mm512_mul_ps(dx, dx))));
  }
  return s;
}

// Pixel assignment of the lanes `m` of sixteen pixels (y, x..x+15), searched in vectors: the bound
// starts from instance `guess` for every lane and the candidates are the instances of the union of
// the lanes' grid squares. For a pixel whose predictions and costs are finite the answer, the
// lowest index among the least costs, does not depend on where the search starts or in which
// order it goes (the bound is exact), so it equals the scalar search's. Returns the lanes done
// (their instance in bj); pixels with non-finite or far-off predictions are left to the scalar
// search, whose answer may depend on the previous pixel's.
__attribute__((optimize("fp-contract=off"))) __mmask16 assign16(int32_t* bj_out, const float* ref, int64_t hw,
                                                                int64_t i, int y, int x, __mmask16 m, int guess,
                                                                const AssignGrid& g) {
  const __m512 fy = _mm512_set1_ps(float(y));
  const __m512 fx = _mm512_cvtepi32_ps(_mm512_add_epi32(lane_index(), _mm512_set1_epi32(x)));
  const __m512 big = _mm512_set1_ps(1e6f);
  __m512 p[10];
  __mmask16 ok = m;
  for (int k = 0; k < 10; ++k) {  // predicted_keypoints
    p[k] = _mm512_add_ps(k % 2 ? fx : fy, _mm512_maskz_loadu_ps(m, ref + k * hw + i));
    ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(p[k]), _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
  }
  auto mean = [&](int c) {
    __m512 v = _mm512_add_ps(p[c], p[c + 2]);
    for (int k = c + 4; k < 10; k += 2) v = _mm512_add_ps(v, p[k]);
    return _mm512_div_ps(v, _mm512_set1_ps(5.0f));
  };
  const __m512 py = mean(0), px = mean(1);
  auto margin = [](__m512 best) {  // as in assign_pixels_into
    return _mm512_add_ps(_mm512_mul_ps(best, _mm512_set1_ps(1.0001f)), _mm512_set1_ps(0.01f));
  };
  auto bound = [&](__m512 best) { return _mm512_mul_ps(margin(best), margin(best)); };
  __m512 best = assign_cost16(p, g.kp + 10 * guess);
  __m512i bj = _mm512_set1_epi32(guess);
  __m512 b2 = bound(best);
  const __m512 rq = _mm512_div_ps(margin(best), _mm512_set1_ps(5.0f));
  ok &= _mm512_cmp_ps_mask(rq, big, _CMP_LT_OQ) & _mm512_cmp_ps_mask(_mm512_abs_ps(py), big, _CMP_LT_OQ) &
        _mm512_cmp_ps_mask(_mm512_abs_ps(px), big, _CMP_LT_OQ);
  if (!ok) return 0;
  // The union of the lanes' cell ranges.
  const __m512 cell = _mm512_set1_ps(g.cell);
  auto cell_lo = [&](__m512 c) {
    return std::max(0, int(_mm512_mask_reduce_min_ps(ok, _mm512_floor_ps(_mm512_div_ps(_mm512_sub_ps(c, rq), cell)))));
  };
  auto cell_hi = [&](__m512 c, int top) {
    return std::min(top, int(_mm512_mask_reduce_max_ps(ok, _mm512_floor_ps(_mm512_div_ps(_mm512_add_ps(c, rq), cell)))));
  };
  const int cy0 = cell_lo(py), cy1 = cell_hi(py, g.gh - 1), cx0 = cell_lo(px), cx1 = cell_hi(px, g.gw - 1);
  auto consider = [&](int j) {
    if (j == guess) return;
    const __m512 dy = _mm512_sub_ps(py, _mm512_set1_ps(g.bar[2 * j]));
    const __m512 dx = _mm512_sub_ps(px, _mm512_set1_ps(g.bar[2 * j + 1]));
    const __m512 lb = _mm512_mul_ps(_mm512_set1_ps(25.0f), _mm512_add_ps(_mm512_mul_ps(dy, dy), _mm512_mul_ps(dx, dx)));
    const __mmask16 pass = _mm512_mask_cmp_ps_mask(ok, lb, b2, _CMP_LE_OQ);
    if (!pass) return;
    const __m512 c = assign_cost16(p, g.kp + 10 * j);
    const __m512i vj = _mm512_set1_epi32(j);
    const __mmask16 upd = _mm512_mask_cmp_ps_mask(pass, c, best, _CMP_LT_OQ) |
                          (_mm512_mask_cmp_ps_mask(pass, c, best, _CMP_EQ_OQ) & _mm512_cmplt_epi32_mask(vj, bj));
    best = _mm512_mask_mov_ps(best, upd, c);
    bj = _mm512_mask_mov_epi32(bj, upd, vj);
    b2 = bound(best);
  };
  if (cy0 <= cy1 && cx0 <= cx1) {
    if (int64_t(cy1 - cy0 + 1) * (cx1 - cx0 + 1) >= g.n) {
      for (int j = 0; j < g.n; ++j) consider(j);
    } else {
      for (int cy = cy0; cy <= cy1; ++cy)
        for (int cx = cx0; cx <= cx1; ++cx)
          for (int c = g.cell_start[cy * g.gw + cx]; c < g.cell_start[cy * g.gw + cx + 1]; ++c)
            consider(g.cell_items[c]);
    }
  }
  _mm512_storeu_si512(bj_out, bj);
  return ok;
}
#pragma GCC diagnostic pop
#endif

// Short-range votes into planes k0..k1-1; returns whether every heatmap logit is finite (checked
// on the way, as every logit is read). Atomic (the rows shared by several threads): `acc` must be
// zero already. Otherwise (one thread per plane) `acc` may hold anything and each plane is zeroed
// here, a few rows ahead of the votes: noisy heatmaps make about one pixel in ten vote near
// itself, and read-modify-writes of accumulator lines zeroed long before (and evicted since)
// would each wait for memory; lines zeroed just ahead are still in cache.
template <bool Atomic>
bool vote_short_cpu(unsigned long long* acc, const float* heat, const float* shrt, int h, int w, float min_w,
                    float weight, int k0, int k1) {
  uint32_t bad = 0;
  const float* lut = inst::sigmoid_lut().data();
  const int64_t hw = int64_t(h) * w;
  // Quick exact reject on the raw logit: the table is non-decreasing, so sigmoid_lut_index(l) >=
  // m (the first index reaching min_w) needs rint(l * 256) >= m - kLutHalf, i.e. l >= (m - kLutHalf - 1) / 256.
  int m = 0;
  while (m < inst::kLutSize && !(lut[m] >= min_w)) ++m;
  const float cut = m == 0 ? -1e30f : float(m - inst::kLutHalf - 1) / float(inst::kLutPerUnit);
  // One parallel region; the keypoints' passes need no barrier between them (integer atomics).
#pragma omp parallel if (Atomic) reduction(| : bad)
  {
    RowScratch scratch(w);
    for (int k = k0; k < k1; ++k) {
      const float* hk = heat + k * hw;
      const float* sy = shrt + (2 * k) * hw;
      const float* sx = shrt + (2 * k + 1) * hw;
      int64_t zeroed = 0;
      const PlaneAdd<Atomic, !Atomic> add{acc + k * hw, hw, w, &zeroed};
#pragma omp for schedule(static) nowait
      for (int y = 0; y < h; ++y) {
        const int64_t row = int64_t(y) * w;
        const float* hrow = hk + row;
#ifdef DL_FUSION_AVX512
        bad |= uint32_t(vote_short_row16(scratch, hrow, sy + row, sx + row, y, h, w, lut, cut, min_w, weight, add));
#else
        uint32_t row_bad = 0;
        auto vote = [&](int x) {
          const int64_t i = row + x;
          const float hv = lut[inst::sigmoid_lut_index(hrow[x])];
          if (!(hv >= min_w)) return;
          inst::splat(inst::f_add(float(y), sy[i]), inst::f_add(float(x), sx[i]), h, w, inst::f_mul(hv, weight),
                      add);
        };
        int x = 0;
#ifdef __AVX2__
        // Eight logits at a time: most pixels are far from every keypoint and are rejected here.
        const __m256 vcut = _mm256_set1_ps(cut);
        const __m256i expo = _mm256_set1_epi32(0x7f800000);
        __m256i vbad = _mm256_setzero_si256();
        for (; x + 8 <= w; x += 8) {
          const __m256 l = _mm256_loadu_ps(hrow + x);
          vbad = _mm256_or_si256(vbad, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(l), expo), expo));
          unsigned mask = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(l, vcut, _CMP_NLT_UQ)));  // !(l < cut)
          while (mask) {
            vote(x + __builtin_ctz(mask));
            mask &= mask - 1;
          }
        }
        row_bad |= uint32_t(!_mm256_testz_si256(vbad, vbad));
#endif
        for (; x < w; ++x) {
          uint32_t u;
          std::memcpy(&u, hrow + x, 4);
          row_bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
          if (hrow[x] < cut) continue;
          vote(x);
        }
        bad |= row_bad;
#endif
      }
      if (!Atomic) add.zero_to(hw);
    }
  }
  return bad == 0;
}

#if defined(__AVX2__) && !defined(DL_FUSION_AVX512)
// refine_at for eight pixels (y, xs[0..7]) of one row at once: the same IEEE operations in the
// same order as the scalar version (no FMA), so the results are bit-identical to it and to CUDA.
// GCC contracts mul+add intrinsics into FMA too: forbid it here.
__attribute__((optimize("fp-contract=off"))) void refine8(float* my_out, float* mx_out, const float* ly, const float* lx, const int* xs, int y,
                    const float* sy, const float* sx, int h, int w, int steps) {
  const __m256i xi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs));
  __m256 my = _mm256_i32gather_ps(ly, xi, 4), mx = _mm256_i32gather_ps(lx, xi, 4);
  const __m256 fy = _mm256_set1_ps(float(y)), fx = _mm256_cvtepi32_ps(xi);
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 hmax = _mm256_set1_ps(float(h - 1)), wmax = _mm256_set1_ps(float(w - 1));
  const __m256i ih = _mm256_set1_epi32(h - 1), iw = _mm256_set1_epi32(w - 1), vw = _mm256_set1_epi32(w);
  for (int s = 0; s < steps; ++s) {
    // f_clamp(v, lo, hi) = v > lo ? (v < hi ? v : hi) : lo
    __m256 py = _mm256_add_ps(fy, my), px = _mm256_add_ps(fx, mx);
    py = _mm256_blendv_ps(zero, _mm256_blendv_ps(hmax, py, _mm256_cmp_ps(py, hmax, _CMP_LT_OQ)),
                          _mm256_cmp_ps(py, zero, _CMP_GT_OQ));
    px = _mm256_blendv_ps(zero, _mm256_blendv_ps(wmax, px, _mm256_cmp_ps(px, wmax, _CMP_LT_OQ)),
                          _mm256_cmp_ps(px, zero, _CMP_GT_OQ));
    const __m256 fly = _mm256_floor_ps(py), flx = _mm256_floor_ps(px);
    const __m256i y0 = _mm256_cvttps_epi32(fly), x0 = _mm256_cvttps_epi32(flx);
    const __m256i y1 = _mm256_min_epi32(_mm256_add_epi32(y0, _mm256_set1_epi32(1)), ih);
    const __m256i x1 = _mm256_min_epi32(_mm256_add_epi32(x0, _mm256_set1_epi32(1)), iw);
    const __m256 ty = _mm256_sub_ps(py, fly), tx = _mm256_sub_ps(px, flx);
    const __m256 uy = _mm256_sub_ps(one, ty), ux = _mm256_sub_ps(one, tx);
    const __m256 w00 = _mm256_mul_ps(uy, ux), w01 = _mm256_mul_ps(uy, tx);
    const __m256 w10 = _mm256_mul_ps(ty, ux), w11 = _mm256_mul_ps(ty, tx);
    const __m256i r0 = _mm256_mullo_epi32(y0, vw), r1 = _mm256_mullo_epi32(y1, vw);
    const __m256i i00 = _mm256_add_epi32(r0, x0), i01 = _mm256_add_epi32(r0, x1);
    const __m256i i10 = _mm256_add_epi32(r1, x0), i11 = _mm256_add_epi32(r1, x1);
    auto interp = [&](const float* c) {
      __m256 v = _mm256_mul_ps(w00, _mm256_i32gather_ps(c, i00, 4));
      v = _mm256_add_ps(v, _mm256_mul_ps(w01, _mm256_i32gather_ps(c, i01, 4)));
      v = _mm256_add_ps(v, _mm256_mul_ps(w10, _mm256_i32gather_ps(c, i10, 4)));
      return _mm256_add_ps(v, _mm256_mul_ps(w11, _mm256_i32gather_ps(c, i11, 4)));
    };
    my = _mm256_add_ps(my, interp(sy));
    mx = _mm256_add_ps(mx, interp(sx));
  }
  _mm256_storeu_ps(my_out, my);
  _mm256_storeu_ps(mx_out, mx);
}
#endif

// Long-range refinement and votes into planes k0..k1-1 (Atomic: the rows shared by several threads).
template <bool Atomic>
void vote_long_cpu(unsigned long long* acc, float* refined, const uint8_t* thing, const float* lng, const float* shrt,
                   int h, int w, int steps, float weight, int k0, int k1) {
  const int64_t hw = int64_t(h) * w;
  // One keypoint at a time (six streaming planes instead of thirty-five), all in one parallel
  // region: the keypoints' passes need no barrier between them (integer atomics).
#pragma omp parallel if (Atomic)
  {
    RowScratch s(w);
    for (int k = k0; k < k1; ++k) {
      const float *ly = lng + (2 * k) * hw, *lx = lng + (2 * k + 1) * hw;
      const float *sy = shrt + (2 * k) * hw, *sx = shrt + (2 * k + 1) * hw;
      float *ry = refined + (2 * k) * hw, *rx = refined + (2 * k + 1) * hw;
      const PlaneAdd<Atomic> add{acc + k * hw, hw, w, nullptr};  // zeroed by the short-range pass or before
#pragma omp for schedule(dynamic, 8) nowait
      for (int y = 0; y < h; ++y) {
        const int64_t row = int64_t(y) * w;
#ifdef DL_FUSION_AVX512
        if (w >= 2) {
          vote_long_row16(s, thing + row, ly + row, lx + row, ry + row, rx + row, sy, sx, y, h, w, steps, weight, add);
          continue;
        }
#endif
        float *oy = s.py.data(), *ox = s.px.data();
        int* xs = s.xs.data();
        int n = 0;
        for (int x = 0; x < w; ++x) {
          xs[n] = x;
          n += thing[row + x] ? 1 : 0;
        }
        if (n == 0) continue;
        int done = 0;
#if defined(__AVX2__) && !defined(DL_FUSION_AVX512)
        for (; done + 8 <= n; done += 8)
          refine8(oy + done, ox + done, ly + row, lx + row, xs + done, y, sy, sx, h, w, steps);
#endif
        for (; done < n; ++done) {
          const int64_t i = row + xs[done];
          float my = ly[i], mx = lx[i];
          inst::refine_at(my, mx, y, xs[done], sy, sx, h, w, steps);
          oy[done] = my;
          ox[done] = mx;
        }
        for (int j = 0; j < n; ++j) {
          const int x = xs[j];
          ry[row + x] = oy[j];
          rx[row + x] = ox[j];
          if (weight > 0.0f)
            inst::splat(inst::f_add(float(y), oy[j]), inst::f_add(float(x), ox[j]), h, w, weight, add);
        }
      }
    }
  }
}

// The predicted keypoints p (2P floats) of thing pixel i at (y, x).
inline void predicted_keypoints(float* p, const float* refined, int64_t hw, int64_t i, int y, int x) {
  for (int k = 0; k < kNumKeypoints; ++k) {
    p[2 * k] = inst::f_add(float(y), refined[(2 * k) * hw + i]);
    p[2 * k + 1] = inst::f_add(float(x), refined[(2 * k + 1) * hw + i]);
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
namespace inst {

const std::vector<float>& sigmoid_lut() {
  static const std::vector<float> lut = [] {
    std::vector<float> t(kLutSize);
    for (int i = 0; i < kLutSize; ++i) t[i] = float(1.0 / (1.0 + std::exp(-double(i - kLutHalf) / kLutPerUnit)));
    return t;
  }();
  return lut;
}

void check_config(const InferenceConfig& cfg) {
  DL_CHECK(cfg.radius > 0 && std::isfinite(cfg.radius), "inference config: radius must be > 0, got " << cfg.radius);
  DL_CHECK(cfg.refine_steps >= 0 && cfg.refine_steps <= 100,
           "inference config: refine_steps must be in [0, 100], got " << cfg.refine_steps);
  DL_CHECK(cfg.short_weight >= 0 && cfg.long_weight >= 0 && cfg.short_weight + cfg.long_weight > 0 &&
               cfg.short_weight <= 1000 && cfg.long_weight <= 1000,
           "inference config: score weights must be in [0, 1000] and not both 0, got short "
               << cfg.short_weight << " long " << cfg.long_weight);
  DL_CHECK(cfg.keypoint_threshold >= 0 && std::isfinite(cfg.keypoint_threshold),
           "inference config: keypoint_threshold must be >= 0, got " << cfg.keypoint_threshold);
  DL_CHECK(cfg.nms_radius >= 0 && std::isfinite(cfg.nms_radius),
           "inference config: nms_radius must be >= 0, got " << cfg.nms_radius);
  DL_CHECK(cfg.box_nms_iou >= 0 && cfg.box_nms_iou <= 1,
           "inference config: box_nms_iou must be in [0, 1], got " << cfg.box_nms_iou);
  DL_CHECK(cfg.min_area >= 0, "inference config: min_area must be >= 0, got " << cfg.min_area);
  DL_CHECK(cfg.min_vote_weight >= 0 && cfg.min_vote_weight <= 1,
           "inference config: min_vote_weight must be in [0, 1], got " << cfg.min_vote_weight);
}

double vote_scale(const InferenceConfig& cfg) { return 1.0 / (double(kVoteScale) * kPi * cfg.radius * cfg.radius); }

unsigned long long threshold_acc(const InferenceConfig& cfg) {
  return static_cast<unsigned long long>(std::floor(cfg.keypoint_threshold / vote_scale(cfg)));
}

bool candidate_before(const KeypointCandidate& a, const KeypointCandidate& b) {
  if (a.acc != b.acc) return a.acc > b.acc;
  if (a.keypoint != b.keypoint) return a.keypoint < b.keypoint;
  if (a.y != b.y) return a.y < b.y;
  return a.x < b.x;
}

std::vector<DetectedInstance> group_sorted(const std::vector<KeypointCandidate>& sorted, const InferenceConfig& cfg,
                                           double scale, const std::function<void(size_t, Proposal&)>& expand) {
  std::vector<DetectedInstance> found;
  const double r2 = cfg.nms_radius * cfg.nms_radius;
  for (size_t c = 0; c < sorted.size(); ++c) {
    const KeypointCandidate& cand = sorted[c];
    bool reject = false;
    for (const auto& d : found) {
      const double dy = double(d.keypoints[cand.keypoint][0]) - cand.y;
      const double dx = double(d.keypoints[cand.keypoint][1]) - cand.x;
      if (dy * dy + dx * dx <= r2) {
        reject = true;
        break;
      }
    }
    if (reject) continue;
    Proposal p;
    expand(c, p);
    DetectedInstance d;
    unsigned long long sum = 0;
    for (int k = 0; k < kNumKeypoints; ++k) {
      d.keypoints[k] = {p.kp[2 * k], p.kp[2 * k + 1]};
      sum += p.acc[k];
    }
    d.score = double(sum) * scale / kNumKeypoints;
    d.seed_keypoint = cand.keypoint;
    found.push_back(d);
  }
  return box_nms(std::move(found), cfg.box_nms_iou);
}

PanopticMap build_segments(const FusionStats& st, size_t n, const ClassMap& classes, const InferenceConfig& cfg,
                           int64_t height, int64_t width, std::vector<int32_t>& owner_to_id) {
  const int32_t K = classes.num_classes();
  PanopticMap pm;
  pm.height = height;
  pm.width = width;
  owner_to_id.assign(K + n, 0);
  int32_t next = 1;
  auto add = [&](size_t owner, int32_t train_id) {
    const int64_t area = st.area[owner];
    if (area == 0 || area < cfg.min_area) return;
    SegmentInfo s;
    s.id = next++;
    s.category_id = classes.classes[train_id].id;
    s.area = area;
    s.bbox = {st.x0[owner], st.y0[owner], st.x1[owner] - st.x0[owner] + 1, st.y1[owner] - st.y0[owner] + 1};
    owner_to_id[owner] = s.id;
    pm.segments.push_back(s);
  };
  for (int32_t c = 0; c < K; ++c)
    if (!classes.isthing(c)) add(c, c);
  for (size_t j = 0; j < n; ++j) {
    const int64_t* v = st.class_votes.data() + j * K;
    int32_t best = 0;
    for (int32_t c = 1; c < K; ++c)
      if (v[c] > v[best]) best = c;
    add(K + j, best);
  }
  return pm;
}

}  // namespace inst

// ------------------------------------------------------------------------------------------------
namespace {
// Shapes, dtypes and devices; NaN/Inf (CPU) for heads first_finite..4 (the decoder checks the
// semantic map and the heatmap itself while reading them).
void check_head_outputs_from(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg,
                             int first_finite) {
  inst::check_config(cfg);
  DL_CHECK(classes.num_classes() > 0, "predict_panoptic: the class map is empty");
  auto hs = heads(out);
  for (int t = 0; t < 5; ++t)
    DL_CHECK(hs[t]->defined(), "predict_panoptic: head output '" << kHeadNames[t] << "' is undefined");
  const Tensor& sem = out.semantic;
  DL_CHECK(sem.dim() == 4 && sem.size(0) == 1,
           "predict_panoptic: semantic must be [1, K, H, W] (one image), got " << sem.shape_str());
  const int64_t h = sem.size(2), w = sem.size(3);
  DL_CHECK(h > 0 && w > 0 && h * w < (int64_t(1) << 31) / 16,
           "predict_panoptic: image size " << h << "x" << w << " out of range");
  const int64_t want[5] = {classes.num_classes(), kNumKeypoints, 2 * kNumKeypoints, 2 * kNumKeypoints,
                           2 * kNumEdges};
  for (int t = 0; t < 5; ++t) {
    const Tensor& x = *hs[t];
    DL_CHECK(x.dtype() == DType::F32, "predict_panoptic: head output '" << kHeadNames[t] << "' must be F32, got "
                                                                        << x.desc());
    DL_CHECK(x.device() == sem.device(), "predict_panoptic: head output '" << kHeadNames[t] << "' is on "
                                                                           << device_name(x.device())
                                                                           << " but semantic is on "
                                                                           << device_name(sem.device()));
    DL_CHECK(x.shape() == (Shape{1, want[t], h, w}),
             "predict_panoptic: head output '" << kHeadNames[t] << "' must be " << shape_str({1, want[t], h, w})
                                               << " (" << (t == 0 ? "K = number of classes" : "P = 5, E = 8")
                                               << "), got " << x.shape_str());
  }
  if (cfg.check_finite && !sem.is_cuda())
    for (int t = first_finite; t < 5; ++t) check_finite_cpu(*hs[t], kHeadNames[t]);
}
}  // namespace

void check_head_outputs(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg) {
  check_head_outputs_from(out, classes, cfg, 0);
}

namespace {
// One class plane c of a block of n pixels: best/lab take the logit and c where it is greater
// (first maximum wins; plane 0 initialises them). Returns whether a logit is non-finite.
inline uint32_t argmax_plane(const float* p, float* best, int32_t* lab, int64_t n, int32_t c) {
#ifdef DL_FUSION_AVX512
  const __m512i expo = _mm512_set1_epi32(0x7f800000), cv = _mm512_set1_epi32(c);
  __mmask16 bad = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 tm = cpu::lane_mask(int(std::min<int64_t>(16, n - i)));
    const __m512 v = _mm512_maskz_loadu_ps(tm, p + i);
    bad |= _mm512_mask_cmpeq_epi32_mask(tm, _mm512_and_si512(_mm512_castps_si512(v), expo), expo);
    const __mmask16 gt = c == 0 ? tm : _mm512_mask_cmp_ps_mask(tm, v, _mm512_loadu_ps(best + i), _CMP_GT_OQ);
    _mm512_mask_storeu_ps(best + i, gt, v);
    _mm512_mask_storeu_epi32(lab + i, gt, cv);
  }
  return bad != 0;
#else
  const uint32_t* u = reinterpret_cast<const uint32_t*>(p);
  uint32_t f = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool gt = c == 0 || p[i] > best[i];
    best[i] = gt ? p[i] : best[i];
    lab[i] = gt ? c : lab[i];
    f |= uint32_t((u[i] & 0x7f800000u) == 0x7f800000u);
  }
  return f;
#endif
}

void semantic_argmax_into(const Tensor& semantic, std::vector<int32_t>& labels, bool check_finite = false) {
  DL_CHECK(semantic.dim() == 4 && semantic.size(0) == 1 && !semantic.is_cuda(),
           "semantic_argmax: want a CPU [1, K, H, W] tensor, got " << semantic.desc());
  const int64_t K = semantic.size(1), hw = semantic.size(2) * semantic.size(3);
  const float* s = semantic.data<float>();
  labels.resize(hw);
  constexpr int64_t kBlock = 512;
  uint32_t bad = 0;
  // Blocks of pixels, class plane by class plane, the finiteness test on the same loads. Each
  // plane's next block is prefetched: the hardware prefetcher restarts at every 4 KB page of each
  // of the K interleaved streams.
#pragma omp parallel for schedule(static) reduction(| : bad)
  for (int64_t b = 0; b < hw; b += kBlock) {
    const int64_t n = std::min(kBlock, hw - b);
    alignas(64) float best[kBlock];
    for (int64_t c = 0; c < K; ++c) {
      const float* p = s + c * hw + b;
      for (int64_t i = kBlock; i < std::min(2 * kBlock, hw - b); i += 16) __builtin_prefetch(p + i, 0, 2);
      bad |= argmax_plane(p, best, labels.data() + b, n, int32_t(c));
    }
  }
  if (!check_finite) bad = 0;
  if (bad) check_finite_cpu(semantic, "semantic");
}
}  // namespace

std::vector<int32_t> semantic_argmax(const Tensor& semantic) {
  std::vector<int32_t> labels;
  semantic_argmax_into(semantic, labels);
  return labels;
}

Tensor refine_offsets(const Tensor& offsets, const Tensor& short_offsets, const std::vector<int>& target, int steps) {
  DL_CHECK(offsets.dim() == 4 && offsets.size(0) == 1 && !offsets.is_cuda() && offsets.dtype() == DType::F32,
           "refine_offsets: want a CPU F32 [1, 2C, H, W] tensor, got " << offsets.desc());
  const int64_t h = offsets.size(2), w = offsets.size(3), hw = h * w;
  DL_CHECK(short_offsets.shape() == (Shape{1, 2 * kNumKeypoints, h, w}) && !short_offsets.is_cuda(),
           "refine_offsets: short offsets must be CPU [1, 10, " << h << ", " << w << "], got " << short_offsets.desc());
  DL_CHECK(int64_t(target.size()) * 2 == offsets.size(1),
           "refine_offsets: " << target.size() << " targets for " << offsets.size(1) << " channels");
  Tensor r = offsets.clone();
  float* m = r.data<float>();
  const float* s = short_offsets.data<float>();
  for (size_t c = 0; c < target.size(); ++c) {
    const int l = target[c];
    DL_CHECK(l >= 0 && l < kNumKeypoints, "refine_offsets: target keypoint " << l << " out of range");
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t i = y * w + x;
        inst::refine_at(m[(2 * c) * hw + i], m[(2 * c + 1) * hw + i], int(y), int(x), s + (2 * l) * hw,
                        s + (2 * l + 1) * hw, int(h), int(w), steps);
      }
  }
  return r;
}

namespace {
// Buffers reuse their capacity (no page faults or zeroing of fresh memory); `ref` keeps stale
// values at non-thing pixels, which nothing reads.
void vote_scores_into(const HeadOutputs& out, const std::vector<int32_t>& labels, const ClassMap& classes,
                      const InferenceConfig& cfg, double short_weight, double long_weight, VoteMaps& v,
                      std::vector<float>& ref, std::vector<uint8_t>& thing) {
  DL_CHECK(!out.semantic.is_cuda(), "vote_scores: CPU head outputs expected");
  const int h = int(out.semantic.size(2)), w = int(out.semantic.size(3));
  const int64_t hw = int64_t(h) * w;
  DL_CHECK(int64_t(labels.size()) == hw, "vote_scores: " << labels.size() << " labels for " << h << "x" << w);
  v.height = h;
  v.width = w;
  v.scale = inst::vote_scale(cfg);
  v.acc.resize(size_t(kNumKeypoints) * hw);
  const std::vector<uint8_t> lut = thing_lut(classes);
  thing.resize(hw);
  for (int64_t i = 0; i < hw; ++i) thing[i] = lut[labels[i]];
  ref.resize(size_t(2 * kNumKeypoints) * hw);
  // Up to five threads: whole keypoint planes per thread (plain adds, the short-range pass zeroes
  // its plane lazily); more: the rows of each plane shared, atomic adds into zeroed planes.
  const bool atomic = omp_get_max_threads() > kNumKeypoints;
  const bool vote_short = short_weight > 0;
  if (atomic || !vote_short) {
    unsigned long long* acc0 = v.acc.data();
    const int64_t n_acc = int64_t(v.acc.size());
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n_acc; b += 1 << 16) std::fill(acc0 + b, acc0 + std::min(n_acc, b + (1 << 16)), 0ull);
  }
  const float sw = float(short_weight), mw = float(cfg.min_vote_weight), lw = float(long_weight);
  const float *heat = out.heatmap.data<float>(), *shrt = out.short_offsets.data<float>();
  const float* lng = out.long_offsets.data<float>();
  bool finite = true;
  if (atomic) {
    if (vote_short) finite = vote_short_cpu<true>(v.acc.data(), heat, shrt, h, w, mw, sw, 0, kNumKeypoints);
    vote_long_cpu<true>(v.acc.data(), ref.data(), thing.data(), lng, shrt, h, w, cfg.refine_steps, lw, 0,
                        kNumKeypoints);
  } else {
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : finite)
    for (int k = 0; k < kNumKeypoints; ++k) {
      if (vote_short) finite = vote_short_cpu<false>(v.acc.data(), heat, shrt, h, w, mw, sw, k, k + 1) && finite;
      vote_long_cpu<false>(v.acc.data(), ref.data(), thing.data(), lng, shrt, h, w, cfg.refine_steps, lw, k, k + 1);
    }
  }
  if ((!vote_short || !finite) && cfg.check_finite) check_finite_cpu(out.heatmap, "heatmap");
}
}  // namespace

VoteMaps vote_scores(const HeadOutputs& out, const std::vector<int32_t>& labels, const ClassMap& classes,
                     const InferenceConfig& cfg, double short_weight, double long_weight,
                     std::vector<float>* refined_long) {
  VoteMaps v;
  std::vector<float> local;
  std::vector<float>& ref = refined_long ? *refined_long : local;
  ref.assign(size_t(2 * kNumKeypoints) * out.semantic.size(2) * out.semantic.size(3), 0.0f);
  std::vector<uint8_t> thing;
  vote_scores_into(out, labels, classes, cfg, short_weight, long_weight, v, ref, thing);
  return v;
}

VoteMaps vote_scores(const HeadOutputs& out, const std::vector<int32_t>& labels, const ClassMap& classes,
                     const InferenceConfig& cfg, double short_weight, double long_weight) {
  return vote_scores(out, labels, classes, cfg, short_weight, long_weight, nullptr);
}

std::vector<KeypointCandidate> find_candidates(const VoteMaps& votes, double threshold) {
  const int64_t h = votes.height, w = votes.width, hw = h * w;
  const unsigned long long thr = static_cast<unsigned long long>(std::floor(threshold / votes.scale));
  std::vector<KeypointCandidate> all;
#pragma omp parallel
  {
    std::vector<KeypointCandidate> mine;
    for (int k = 0; k < kNumKeypoints; ++k) {
      const unsigned long long* a = votes.acc.data() + k * hw;
#pragma omp for schedule(static) nowait
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const unsigned long long v = a[y * w + x];
          if (v <= thr) continue;
          bool is_max = true;
          for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(h - 1, y + 1) && is_max; ++yy)
            for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(w - 1, x + 1); ++xx)
              if (a[yy * w + xx] > v) {
                is_max = false;
                break;
              }
          if (is_max) mine.push_back({k, int32_t(y), int32_t(x), v, double(v) * votes.scale});
        }
    }
#pragma omp critical
    all.insert(all.end(), mine.begin(), mine.end());
  }
  std::sort(all.begin(), all.end(), inst::candidate_before);
  return all;
}

std::vector<DetectedInstance> group_instances(const std::vector<KeypointCandidate>& candidates, const VoteMaps& votes,
                                              const HeadOutputs& out, const InferenceConfig& cfg) {
  const int h = int(votes.height), w = int(votes.width);
  const float* mid = out.mid_offsets.data<float>();
  const float* shrt = out.short_offsets.data<float>();
  return inst::group_sorted(candidates, cfg, votes.scale, [&](size_t c, inst::Proposal& p) {
    const auto& cand = candidates[c];
    inst::expand_candidate(cand.keypoint, cand.y, cand.x, mid, shrt, votes.acc.data(), h, w, cfg.refine_steps, p);
  });
}

std::vector<DetectedInstance> box_nms(std::vector<DetectedInstance> instances, double iou_threshold) {
  std::stable_sort(instances.begin(), instances.end(),
                   [](const DetectedInstance& a, const DetectedInstance& b) { return a.score > b.score; });
  struct Box {
    double y0, x0, y1, x1;
  };
  auto box_of = [](const DetectedInstance& d) {
    Box b{1e30, 1e30, -1e30, -1e30};
    for (const auto& k : d.keypoints) {
      b.y0 = std::min(b.y0, double(k[0]));
      b.y1 = std::max(b.y1, double(k[0]));
      b.x0 = std::min(b.x0, double(k[1]));
      b.x1 = std::max(b.x1, double(k[1]));
    }
    return b;  // pixel centres: the box covers [y0, y1 + 1) x [x0, x1 + 1)
  };
  std::vector<DetectedInstance> kept;
  std::vector<Box> kept_boxes;
  for (const auto& d : instances) {
    const Box b = box_of(d);
    const double area = (b.y1 - b.y0 + 1) * (b.x1 - b.x0 + 1);
    bool drop = false;
    for (const Box& o : kept_boxes) {
      const double ih = std::min(b.y1, o.y1) - std::max(b.y0, o.y0) + 1;
      const double iw = std::min(b.x1, o.x1) - std::max(b.x0, o.x0) + 1;
      if (ih <= 0 || iw <= 0) continue;
      const double inter = ih * iw, oarea = (o.y1 - o.y0 + 1) * (o.x1 - o.x0 + 1);
      if (inter / (area + oarea - inter) > iou_threshold) {
        drop = true;
        break;
      }
    }
    if (drop) continue;
    kept.push_back(d);
    kept_boxes.push_back(b);
  }
  return kept;
}

std::vector<int32_t> assign_pixels_bruteforce(const std::vector<int32_t>& labels, const std::vector<float>& refined_long,
                                              const std::vector<DetectedInstance>& instances, const ClassMap& classes,
                                              int64_t height, int64_t width) {
  const int64_t hw = height * width;
  std::vector<int32_t> out(hw, -1);
  if (instances.empty()) return out;
  std::vector<float> kp, bar;
  instance_tables(instances, kp, bar);
  const auto lut = thing_lut(classes);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const int64_t i = y * width + x;
      if (!lut[labels[i]]) continue;
      float p[10];
      predicted_keypoints(p, refined_long.data(), hw, i, int(y), int(x));
      float best = 0;
      int32_t bj = -1;
      for (size_t j = 0; j < instances.size(); ++j) {
        const float c = inst::assign_cost(p, kp.data() + 10 * j);
        if (bj < 0 || c < best) {
          best = c;
          bj = int32_t(j);
        }
      }
      out[i] = bj;
    }
  return out;
}

namespace {
void assign_pixels_into(const std::vector<int32_t>& labels, const std::vector<float>& refined_long,
                        const std::vector<DetectedInstance>& instances, const ClassMap& classes, int64_t height,
                        int64_t width, std::vector<int32_t>& out) {
  const int64_t hw = height * width;
  out.assign(hw, -1);
  const int n = int(instances.size());
  if (n == 0) return;
  std::vector<float> kp, bar;
  instance_tables(instances, kp, bar);
  const auto lut = thing_lut(classes);
  const float* ref = refined_long.data();
  // A uniform grid over the instances' mean keypoints (inside the image, as keypoints are clamped):
  // cell lists in CSR form, instance indices ascending.
  const float cell = 32.0f;
  const int gh = int(height / 32) + 1, gw = int(width / 32) + 1;
  std::vector<int> cell_start(size_t(gh) * gw + 1, 0), cell_items(n);
  auto cell_of = [&](int j) {
    const int cy = std::min(gh - 1, std::max(0, int(bar[2 * j] / cell)));
    const int cx = std::min(gw - 1, std::max(0, int(bar[2 * j + 1] / cell)));
    return cy * gw + cx;
  };
  for (int j = 0; j < n; ++j) ++cell_start[cell_of(j) + 1];
  for (size_t c = 0; c + 1 < cell_start.size(); ++c) cell_start[c + 1] += cell_start[c];
  {
    std::vector<int> fill(cell_start.begin(), cell_start.end() - 1);
    for (int j = 0; j < n; ++j) cell_items[fill[cell_of(j)]++] = j;
  }
  // Float rounding may make a computed bound exceed the true one slightly: keep a margin.
  auto margin = [](float b) { return b * 1.0001f + 0.01f; };
#ifdef DL_FUSION_AVX512
  const AssignGrid grid{kp.data(), bar.data(), cell_start.data(), cell_items.data(), n, gh, gw, cell};
#endif
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t y = 0; y < height; ++y) {
    int prev = 0;  // the previous pixel's instance: usually this pixel's too, giving a tight bound
    // Pixel x of the row with predicted keypoints p, their means (py, px) and cost `best` against prev.
    auto assign = [&](int64_t x, const float* p, float py, float px, float best) {
      const int64_t i = y * width + x;
      int bj = prev;
      float m = margin(best), b2 = m * m;
      // Every instance that can beat or tie `best` has 5 |mean p - mean q_j| <= best: its mean lies
      // in the square of half-side m / 5 around the pixel's mean prediction.
      const float rq = m / 5.0f;
      // Far-off or non-finite predictions (offsets near the float range): look at every instance.
      if (!(rq < 1e6f && std::fabs(py) < 1e6f && std::fabs(px) < 1e6f)) {
        for (int j = 0; j < n; ++j) {
          const float c = inst::assign_cost(p, kp.data() + 10 * j);
          if (c < best || (c == best && j < bj)) {
            best = c;
            bj = j;
          }
        }
        out[i] = bj;
        prev = bj;
        return;
      }
      const int cy0 = std::max(0, int(std::floor((py - rq) / cell))), cy1 = std::min(gh - 1, int(std::floor((py + rq) / cell)));
      const int cx0 = std::max(0, int(std::floor((px - rq) / cell))), cx1 = std::min(gw - 1, int(std::floor((px + rq) / cell)));
      auto consider = [&](int j) {
        if (j == bj) return;
        const float dy = py - bar[2 * j], dx = px - bar[2 * j + 1];
        if (25.0f * (dy * dy + dx * dx) > b2) return;
        const float c = inst::assign_cost(p, kp.data() + 10 * j);
        if (c < best || (c == best && j < bj)) {
          best = c;
          bj = j;
          m = margin(best);
          b2 = m * m;
        }
      };
      if (cy0 <= cy1 && cx0 <= cx1) {
        if (int64_t(cy1 - cy0 + 1) * (cx1 - cx0 + 1) >= n) {
          for (int j = 0; j < n; ++j) consider(j);
        } else {
          for (int cy = cy0; cy <= cy1; ++cy)
            for (int cx = cx0; cx <= cx1; ++cx)
              for (int c = cell_start[cy * gw + cx]; c < cell_start[cy * gw + cx + 1]; ++c) consider(cell_items[c]);
        }
      }
      out[i] = bj;
      prev = bj;
    };
    auto assign_scalar = [&](int64_t x) {
      float p[10];
      predicted_keypoints(p, ref, hw, y * width + x, int(y), int(x));
      const float py = (p[0] + p[2] + p[4] + p[6] + p[8]) / 5.0f;
      const float px = (p[1] + p[3] + p[5] + p[7] + p[9]) / 5.0f;
      assign(x, p, py, px, inst::assign_cost(p, kp.data() + 10 * prev));
    };
#ifdef DL_FUSION_AVX512
    for (int64_t x0 = 0; x0 < width; x0 += 16) {
      const int64_t i0 = y * width + x0;
      const int lanes = int(std::min<int64_t>(16, width - x0));
      for (int k = 0; k < 10; ++k)  // the next row's, as in vote_short_row16
        _mm_prefetch(reinterpret_cast<const char*>(ref + k * hw + i0 + width), _MM_HINT_T0);
      unsigned things = 0;
      for (int j = 0; j < lanes; ++j) things |= unsigned(lut[labels[i0 + j]]) << j;
      if (!things) continue;
      alignas(64) int32_t bj[16];
      const unsigned done = assign16(bj, ref, hw, i0, int(y), int(x0), __mmask16(things), prev, grid);
      for (; things; things &= things - 1) {
        const int j = __builtin_ctz(things);
        if (done >> j & 1) {
          out[i0 + j] = bj[j];
          prev = bj[j];
        } else {
          assign_scalar(x0 + j);
        }
      }
    }
#else
    for (int64_t x = 0; x < width; ++x)
      if (lut[labels[y * width + x]]) assign_scalar(x);
#endif
  }
}
}  // namespace

std::vector<int32_t> assign_pixels(const std::vector<int32_t>& labels, const std::vector<float>& refined_long,
                                   const std::vector<DetectedInstance>& instances, const ClassMap& classes,
                                   int64_t height, int64_t width) {
  std::vector<int32_t> out;
  assign_pixels_into(labels, refined_long, instances, classes, height, width, out);
  return out;
}

namespace {
PanopticMap fuse_panoptic_into(const std::vector<int32_t>& labels, const std::vector<int32_t>& assignment,
                               size_t num_instances, const ClassMap& classes, const InferenceConfig& cfg,
                               int64_t height, int64_t width, std::vector<int32_t>& owner) {
  const int32_t K = classes.num_classes();
  const int64_t hw = height * width;
  const size_t n = num_instances, owners = K + n;
  const auto lut = thing_lut(classes);
  owner.resize(hw);
  inst::FusionStats st;
  st.reset(owners, n * K);
#pragma omp parallel
  {
    inst::FusionStats t;
    t.reset(owners, n * K);
    // Statistics per run of pixels with the same owner and label (long runs: one update instead
    // of a chain of dependent per-pixel updates).
#pragma omp for schedule(static)
    for (int64_t y = 0; y < height; ++y) {
      const int32_t* lrow = labels.data() + y * width;
      const int32_t* arow = assignment.data() + y * width;
      int32_t* orow = owner.data() + y * width;
      for (int64_t x = 0; x < width; ++x) {
        const int32_t l = lrow[x], a = arow[x];
        orow[x] = !lut[l] ? l : a >= 0 ? K + a : -1;
      }
      for (int64_t x = 0; x < width;) {
        const int32_t o = orow[x], l = lrow[x];
        int64_t e = x + 1;
        while (e < width && orow[e] == o && lrow[e] == l) ++e;
        if (o >= 0) {
          t.area[o] += e - x;
          if (o >= K) t.class_votes[size_t(o - K) * K + l] += e - x;
          t.y0[o] = std::min(t.y0[o], int32_t(y));
          t.y1[o] = std::max(t.y1[o], int32_t(y));
          t.x0[o] = std::min(t.x0[o], int32_t(x));
          t.x1[o] = std::max(t.x1[o], int32_t(e - 1));
        }
        x = e;
      }
    }
#pragma omp critical
    {
      for (size_t o = 0; o < owners; ++o) {
        st.area[o] += t.area[o];
        st.y0[o] = std::min(st.y0[o], t.y0[o]);
        st.x0[o] = std::min(st.x0[o], t.x0[o]);
        st.y1[o] = std::max(st.y1[o], t.y1[o]);
        st.x1[o] = std::max(st.x1[o], t.x1[o]);
      }
      for (size_t i = 0; i < n * K; ++i) st.class_votes[i] += t.class_votes[i];
    }
  }
  std::vector<int32_t> owner_to_id;
  PanopticMap pm = inst::build_segments(st, n, classes, cfg, height, width, owner_to_id);
  pm.ids.resize(hw);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < hw; ++i) pm.ids[i] = owner[i] < 0 ? 0 : owner_to_id[owner[i]];
  return pm;
}

// Per-thread buffers reused across predict_panoptic calls (about 100 bytes per pixel).
struct Workspace {
  std::vector<int32_t> labels, assignment, owner;
  std::vector<uint8_t> thing;
  std::vector<float> refined;
  VoteMaps votes;
};
Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}
}  // namespace

void release_inference_workspace() {
  workspace() = Workspace();
#ifdef DEEPERLAB_WITH_CUDA
  cuda::fusion_release_pinned_host();
#endif
}

PanopticMap fuse_panoptic(const std::vector<int32_t>& labels, const std::vector<int32_t>& assignment,
                          size_t num_instances, const ClassMap& classes, const InferenceConfig& cfg, int64_t height,
                          int64_t width) {
  std::vector<int32_t> owner;
  return fuse_panoptic_into(labels, assignment, num_instances, classes, cfg, height, width, owner);
}

#ifdef DEEPERLAB_WITH_CUDA
namespace {
PanopticMap predict_panoptic_cuda(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg,
                                  InferenceTimings* timings);
}
#endif

PanopticMap predict_panoptic(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg,
                             InferenceTimings* timings) {
  auto t0 = Clock::now(), t = t0;
  InferenceTimings tm;
  check_head_outputs_from(out, classes, cfg, 2);  // semantic and heatmap: checked while read below
  if (out.semantic.is_cuda()) {
#ifdef DEEPERLAB_WITH_CUDA
    return predict_panoptic_cuda(out, classes, cfg, timings);
#else
    DL_FAIL("predict_panoptic: CUDA head outputs in a build without CUDA");
#endif
  }
  tm.check = ms_since(t);
  const int64_t h = out.semantic.size(2), w = out.semantic.size(3);
  Workspace& ws = workspace();
  semantic_argmax_into(out.semantic, ws.labels, cfg.check_finite);
  tm.argmax = ms_since(t);
  vote_scores_into(out, ws.labels, classes, cfg, cfg.short_weight, cfg.long_weight, ws.votes, ws.refined, ws.thing);
  tm.refine_vote = ms_since(t);
  const auto candidates = find_candidates(ws.votes, cfg.keypoint_threshold);
  tm.candidates = ms_since(t);
  const auto instances = group_instances(candidates, ws.votes, out, cfg);
  tm.grouping = ms_since(t);
  assign_pixels_into(ws.labels, ws.refined, instances, classes, h, w, ws.assignment);
  tm.assign = ms_since(t);
  PanopticMap pm = fuse_panoptic_into(ws.labels, ws.assignment, instances.size(), classes, cfg, h, w, ws.owner);
  tm.fusion = ms_since(t);
  tm.total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (timings) *timings = tm;
  return pm;
}

}  // namespace dl

// ------------------------------------------------------------------------------------------------
#ifdef DEEPERLAB_WITH_CUDA
namespace dl {
namespace {

// A device buffer of `bytes` bytes held by a U8 tensor (caching allocator, freed on scope exit).
struct DeviceBuf {
  Tensor t;
  explicit DeviceBuf(size_t bytes) : t(Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::U8, Device::CUDA)) {}
  template <class T>
  T* as() const {
    return static_cast<T*>(t.raw_data());
  }
};

// Stream-ordered upload without a synchronisation: `v` must outlive the next synchronisation
// (every caller below keeps it alive until the final read-back of the call).
template <class T>
DeviceBuf upload(const std::vector<T>& v) {
  DeviceBuf b(v.size() * sizeof(T));
  cuda::fusion_h2d_async(b.as<void>(), v.data(), v.size() * sizeof(T), cuda::stream());
  return b;
}

// Host round trips of the CUDA path (each one a synchronisation, each one needed):
//   1. check: the five first-bad indices (the error must precede any result), one read;
//   2. candidates: the count (sizes the next read; repeated only when the list overflows);
//   3. candidates: list and proposals together (grouping is sequential, on the host);
//   4. fusion: area, bbox and class votes in one buffer (the segment table is built on the host);
//   5. fusion: the id map, through the cached page-locked buffer.
// Everything else (uploads, memsets, kernels) is queued without waiting.
PanopticMap predict_panoptic_cuda(const HeadOutputs& out, const ClassMap& classes, const InferenceConfig& cfg,
                                  InferenceTimings* timings) {
  auto t0 = Clock::now(), t = t0;
  InferenceTimings tm;
  auto stage = [&](double& slot) {
    if (!timings) return;
    cuda::synchronize();
    slot = ms_since(t);
  };
  cudaStream_t s = cuda::stream();
  const int K = int(classes.num_classes());
  const int h = int(out.semantic.size(2)), w = int(out.semantic.size(3));
  const int64_t hw = int64_t(h) * w;
  auto hs = heads(out);
  if (cfg.check_finite) {
    cuda::FiniteCheck fc;
    static_assert(cuda::FiniteCheck::kMax == 5, "one slot per head output");
    for (int k = 0; k < 5; ++k) {
      fc.x[k] = hs[k]->data<float>();
      fc.n[k] = hs[k]->numel();
    }
    DeviceBuf d_first(5 * sizeof(unsigned long long));
    cuda::fusion_check_finite(d_first.as<unsigned long long>(), fc, s);
    unsigned long long first[5];
    cuda::memcpy_d2h(first, d_first.as<void>(), sizeof first);
    for (int k = 0; k < 5; ++k)
      if (first[k] < static_cast<unsigned long long>(hs[k]->numel())) {
        float v = 0;
        cuda::memcpy_d2h(&v, hs[k]->data<float>() + first[k], sizeof(float));
        DL_FAIL("predict_panoptic: head output '" << kHeadNames[k] << "' " << hs[k]->shape_str()
                                                  << " holds a non-finite value " << v << " at "
                                                  << index_str(int64_t(first[k]), h, w));
      }
  }
  stage(tm.check);
  // Argmax and the thing mask.
  const std::vector<uint8_t> h_thing_lut = thing_lut(classes);
  DeviceBuf d_thing_lut = upload(h_thing_lut);
  DeviceBuf d_labels(hw * 4), d_thing(hw);
  cuda::fusion_argmax(d_labels.as<int32_t>(), d_thing.as<uint8_t>(), out.semantic.data<float>(),
                      d_thing_lut.as<uint8_t>(), K, hw, s);
  stage(tm.argmax);
  // Refinement and votes.
  DeviceBuf d_acc(size_t(kNumKeypoints) * hw * 8), d_refined(size_t(2 * kNumKeypoints) * hw * 4);
  cuda::memset_zero(d_acc.as<void>(), size_t(kNumKeypoints) * hw * 8);
  if (cfg.short_weight > 0)
    cuda::fusion_vote_short(d_acc.as<unsigned long long>(), out.heatmap.data<float>(), out.short_offsets.data<float>(),
                            cuda::fusion_sigmoid_lut(inst::sigmoid_lut().data()), h, w, float(cfg.min_vote_weight),
                            float(cfg.short_weight), s);
  cuda::fusion_vote_long(d_acc.as<unsigned long long>(), d_refined.as<float>(), d_thing.as<uint8_t>(),
                         out.long_offsets.data<float>(), out.short_offsets.data<float>(), h, w, cfg.refine_steps,
                         float(cfg.long_weight), s);
  stage(tm.refine_vote);
  // Candidates: compacted on the device and expanded there in the same pass (the expansion reads
  // the count on the device), then list and proposals come back together and are ordered here.
  const double scale = inst::vote_scale(cfg);
  const unsigned long long thr = inst::threshold_acc(cfg);
  // Initial capacity from the image size (small images then also exercise the regrow path).
  int capacity = int(std::clamp<int64_t>(hw / 64, 256, 1 << 14)), count = 0;
  DeviceBuf d_count(4);
  std::unique_ptr<DeviceBuf> d_list, d_prop;
  for (;;) {
    d_list = std::make_unique<DeviceBuf>(size_t(capacity) * 4);
    d_prop = std::make_unique<DeviceBuf>(size_t(capacity) * sizeof(inst::Proposal));
    cuda::memset_zero(d_count.as<void>(), 4);
    cuda::fusion_candidates(d_count.as<int>(), d_list->as<int>(), capacity, d_acc.as<unsigned long long>(), h, w, thr,
                            s);
    cuda::fusion_expand(d_prop->as<inst::Proposal>(), d_list->as<int>(), d_count.as<int>(), capacity,
                        out.mid_offsets.data<float>(), out.short_offsets.data<float>(), d_acc.as<unsigned long long>(),
                        h, w, cfg.refine_steps, s);
    cuda::memcpy_d2h(&count, d_count.as<void>(), 4);
    if (count <= capacity) break;
    capacity = count;
  }
  std::vector<int> list(count);
  std::vector<inst::Proposal> proposals(count);
  if (count > 0) {
    cuda::fusion_d2h_async(list.data(), d_list->as<void>(), size_t(count) * 4, s);
    cuda::fusion_d2h_async(proposals.data(), d_prop->as<void>(), size_t(count) * sizeof(inst::Proposal), s);
    cuda::fusion_sync(s);
  }
  d_list.reset();
  d_prop.reset();
  std::vector<KeypointCandidate> cands(count);
  std::vector<size_t> order(count);
  for (int c = 0; c < count; ++c) {
    const int k = int(list[c] / hw);
    const int64_t i = list[c] % hw;
    const unsigned long long a = proposals[c].acc[k];
    cands[c] = {k, int32_t(i / w), int32_t(i % w), a, double(a) * scale};
  }
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return inst::candidate_before(cands[a], cands[b]); });
  std::vector<KeypointCandidate> sorted(count);
  for (int c = 0; c < count; ++c) sorted[c] = cands[order[c]];
  stage(tm.candidates);
  const auto instances = inst::group_sorted(sorted, cfg, scale,
                                            [&](size_t c, inst::Proposal& p) { p = proposals[order[c]]; });
  stage(tm.grouping);
  // Assignment and per-owner statistics on the device; the segment table on the host.
  const int n = int(instances.size());
  std::vector<float> kp, bar;
  instance_tables(instances, kp, bar);
  DeviceBuf d_kp = upload(kp), d_bar = upload(bar), d_owner(hw * 4);
  cuda::fusion_assign(d_owner.as<int32_t>(), d_labels.as<int32_t>(), d_thing.as<uint8_t>(), d_refined.as<float>(),
                      d_kp.as<float>(), d_bar.as<float>(), n, K, h, w, s);
  stage(tm.assign);
  // One statistics buffer (area | class votes | bbox planes) so that one read brings it all back.
  const size_t owners = size_t(K) + n, nvotes = size_t(n) * K;
  const size_t stats_bytes = (owners + nvotes) * 8 + owners * 16;
  DeviceBuf d_stats(stats_bytes);
  unsigned long long* d_area = d_stats.as<unsigned long long>();
  unsigned long long* d_votes = d_area + owners;
  int* d_bbox = reinterpret_cast<int*>(d_votes + nvotes);
  cuda::fusion_stats(d_area, d_bbox, d_votes, d_owner.as<int32_t>(), d_labels.as<int32_t>(), K, n, h, w, s);
  // The id map's host vector is allocated and zero-filled (page faults) while the kernels run.
  std::vector<int32_t> ids(hw);
  std::vector<unsigned char> raw(stats_bytes);
  cuda::memcpy_d2h(raw.data(), d_stats.as<void>(), stats_bytes);
  std::vector<unsigned long long> area(owners), votes(nvotes);
  std::vector<int32_t> bbox(owners * 4);
  std::memcpy(area.data(), raw.data(), owners * 8);
  if (nvotes) std::memcpy(votes.data(), raw.data() + owners * 8, nvotes * 8);
  std::memcpy(bbox.data(), raw.data() + (owners + nvotes) * 8, owners * 16);
  inst::FusionStats st;
  st.area.assign(area.begin(), area.end());
  st.y0.assign(bbox.begin(), bbox.begin() + owners);
  st.x0.assign(bbox.begin() + owners, bbox.begin() + 2 * owners);
  st.y1.assign(bbox.begin() + 2 * owners, bbox.begin() + 3 * owners);
  st.x1.assign(bbox.begin() + 3 * owners, bbox.end());
  st.class_votes.assign(votes.begin(), votes.end());
  std::vector<int32_t> owner_to_id;
  PanopticMap pm = inst::build_segments(st, n, classes, cfg, h, w, owner_to_id);
  // Final ids: owner -> id on the device, one copy into the cached page-locked buffer (several
  // times faster than into pageable memory), then a parallel host copy into the result.
  DeviceBuf d_o2i = upload(owner_to_id), d_ids(hw * 4);
  cuda::fusion_ids(d_ids.as<int32_t>(), d_owner.as<int32_t>(), d_o2i.as<int32_t>(), hw, s);
  auto* pinned = static_cast<int32_t*>(cuda::fusion_pinned_host(size_t(hw) * 4));
  cuda::fusion_d2h_async(pinned, d_ids.as<void>(), size_t(hw) * 4, s);
  cuda::fusion_sync(s);
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (hw + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, e = std::min(hw, b + kChunk);
    std::memcpy(ids.data() + b, pinned + b, size_t(e - b) * 4);
  }
  pm.ids = std::move(ids);
  stage(tm.fusion);
  tm.total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (timings) *timings = tm;
  return pm;
}

}  // namespace
}  // namespace dl
#endif
