// Depthwise convolution (groups == c_in == c_out) on the CPU.
// Non-obvious decision: the forward pass (and the stride-1 grad-input, which is the forward pass on
// gy with the flipped filter: a gather, no races) works on blocks of L channels with the vector
// running over channels: the L planes are transposed into a zero-padded (row, column, channel)
// buffer, so every tap of every pixel is one aligned vector load and no bounds are checked.
// Channels left over (fewer than L) and grad-weight use per-plane kernels: each plane is copied into
// a zero-padded buffer split into stride phases, so every tap reads a contiguous, always-valid run
// and whole rows run as vectors; k = 3, 5, 7 are unrolled at compile time, other k loop at run time.
// With stride > 1, grad-input scatters into the one gx plane each thread owns. Grad-weight is a
// per-channel reduction: vector accumulators in T per plane, summed in double.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu/conv_fast.h"
#include "core/cpu/simd.h"

namespace dl::cpu {
namespace {


inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
inline int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}
inline int64_t round_up(int64_t a, int64_t b) {
  return (a + b - 1) / b * b;
}

// Output columns [lo, hi) for which in-column o*s + off lies in [0, w_in).
inline void valid_range(int64_t off, int64_t s, int64_t w_in, int64_t w_out, int64_t& lo, int64_t& hi) {
  lo = std::min(w_out, std::max<int64_t>(0, ceil_div(-off, s)));
  hi = std::min<int64_t>(w_out, floor_div(w_in - 1 - off, s) + 1);
  if (hi < lo) hi = lo;
}

// out[oy, ox] = init + sum_{ky,kx} wk[ky,kx] * in[oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] (zero
// outside the input). Pads may be negative (the stride-1 grad-input uses (k-1)*d - pad).
struct PlaneGeom {
  int64_t h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

// Thread-local buffers for one plane, sized once per call.
constexpr int kMaxRows = 4;  // output rows computed together by the vertical-stride-1 kernel

template <class T>
struct Scratch {
  int64_t wop;           // output row length rounded up to the vector width
  int64_t wq;            // length of one phase row
  std::vector<T> phase;  // (h, s, wq)
  std::vector<T> zero;   // (s, wq) of zeros: rows outside the input
  std::vector<T> row;    // (wop): one output row / one padded gy row
  std::vector<T> gpad;   // (ho, wop): zero-padded gy plane (grad-weight)
  std::vector<const T*> tab;
  explicit Scratch(const PlaneGeom& p, bool for_weight) {
    wop = round_up(p.wo, Simd<T>::L);
    wq = wop + ((p.kw - 1) * p.dw) / p.sw + 1;
    phase.assign(size_t(p.h * p.sw * wq), T(0));
    zero.assign(size_t(p.sw * wq), T(0));
    row.assign(size_t(kMaxRows * wop), T(0));
    if (for_weight) gpad.assign(size_t(p.ho * wop), T(0));
    tab.resize(size_t(p.kh * p.kw));
    set_offsets(p);
  }
  // phase[iy, q, j] = in[iy, j*s + q - pw] (zero outside).
  void build(const T* in, const PlaneGeom& p) {
    const int64_t s = p.sw;
    for (int64_t iy = 0; iy < p.h; ++iy) {
      const T* xr = in + iy * p.w;
      for (int64_t q = 0; q < s; ++q) {
        T* dst = phase.data() + (iy * s + q) * wq;
        int64_t lo, hi;  // j with 0 <= j*s + q - pw < w
        valid_range(q - p.pw, s, p.w, wq, lo, hi);
        std::fill(dst, dst + lo, T(0));
        if (s == 1) {
          std::memcpy(dst + lo, xr + lo + q - p.pw, sizeof(T) * (hi - lo));
        } else {
          for (int64_t j = lo; j < hi; ++j) dst[j] = xr[j * s + q - p.pw];
        }
        std::fill(dst + hi, dst + wq, T(0));
      }
    }
  }
  // Start of the contiguous run read by tap (ky, kx) for output row oy: row(oy, ky) + kx_off[kx].
  const T* row_base(const PlaneGeom& p, int64_t oy, int64_t ky) const {
    return input_row(p, oy * p.sh - p.ph + ky * p.dh);
  }
  const T* input_row(const PlaneGeom& p, int64_t iy) const {
    return (iy >= 0 && iy < p.h) ? phase.data() + iy * p.sw * wq : zero.data();
  }
  std::vector<int64_t> kx_off;
  void set_offsets(const PlaneGeom& p) {
    kx_off.resize(size_t(p.kw));
    for (int64_t kx = 0; kx < p.kw; ++kx) kx_off[kx] = (kx * p.dw % p.sw) * wq + kx * p.dw / p.sw;
  }
  const T* tap(const PlaneGeom& p, int64_t oy, int64_t ky, int64_t kx) const {
    return row_base(p, oy, ky) + kx_off[kx];
  }
};

// NB vectors of outputs starting at column ox, stored to dst. K > 0: square K x K kernel unrolled at
// compile time; each weight is broadcast once and used for NB blocks, and every block keeps one
// accumulator per kernel row (independent FMA chains). K == 0: any kernel, loops at run time.
template <class T, int K, int NB>
inline void fwd_blocks(T* dst, const T* const* tab, const T* wv, T init, int64_t ox, int64_t kh, int64_t kw) {
  using S = Simd<T>;
  using V = typename S::V;
  V acc[NB];
  for (int b = 0; b < NB; ++b) acc[b] = S::splat(init);
  if constexpr (K > 0) {
#pragma GCC unroll 8
    for (int ky = 0; ky < K; ++ky) {
      V a[NB];
      for (int b = 0; b < NB; ++b) a[b] = V{};
#pragma GCC unroll 8
      for (int kx = 0; kx < K; ++kx) {
        const T wt = wv[ky * K + kx];
        const T* src = tab[ky * K + kx] + ox;
        for (int b = 0; b < NB; ++b) a[b] += wt * S::load(src + b * S::L);
      }
      for (int b = 0; b < NB; ++b) acc[b] += a[b];
    }
  } else {
    for (int64_t ky = 0; ky < kh; ++ky) {
      V a[NB];
      for (int b = 0; b < NB; ++b) a[b] = V{};
      for (int64_t kx = 0; kx < kw; ++kx) {
        const T wt = wv[ky * kw + kx];
        const T* src = tab[ky * kw + kx] + ox;
        for (int b = 0; b < NB; ++b) a[b] += wt * S::load(src + b * S::L);
      }
      for (int b = 0; b < NB; ++b) acc[b] += a[b];
    }
  }
  for (int b = 0; b < NB; ++b) S::store(dst + b * S::L, acc[b]);
}

template <class T, int K>
void plane_fwd(T* out, const T* in, const T* wk, T init, const PlaneGeom& p, Scratch<T>& sc) {
  using S = Simd<T>;
  constexpr int64_t L = S::L;
  sc.build(in, p);
  const T* const* tab = sc.tab.data();
  T* row = sc.row.data();  // (wop): the row is computed in whole vectors, then the wo columns copied
  for (int64_t oy = 0; oy < p.ho; ++oy) {
    for (int64_t ky = 0; ky < p.kh; ++ky) {
      const T* b = sc.row_base(p, oy, ky);
      for (int64_t kx = 0; kx < p.kw; ++kx) sc.tab[ky * p.kw + kx] = b + sc.kx_off[kx];
    }
    int64_t ox = 0;
    for (; ox + 4 * L <= sc.wop; ox += 4 * L) fwd_blocks<T, K, 4>(row + ox, tab, wk, init, ox, p.kh, p.kw);
    switch ((sc.wop - ox) / L) {
      case 3:
        fwd_blocks<T, K, 3>(row + ox, tab, wk, init, ox, p.kh, p.kw);
        break;
      case 2:
        fwd_blocks<T, K, 2>(row + ox, tab, wk, init, ox, p.kh, p.kw);
        break;
      case 1:
        fwd_blocks<T, K, 1>(row + ox, tab, wk, init, ox, p.kh, p.kw);
        break;
      default:
        break;
    }
    std::memcpy(out + oy * p.wo, row, sizeof(T) * p.wo);
  }
}

// R output rows oy0 + r*dh (r < R) at once, for vertical stride 1: output row r, kernel row ky reads
// input row j = r + ky of rows[], so each loaded input vector feeds up to R rows (fewer loads per
// FMA, R*NB independent accumulators). NB vectors from column ox; results go to dst[r] + ox.
template <class T, int K, int R, int NB>
inline void fwd_rows(T* const* dst, const T* const* rows, const int64_t* kxo, const typename Simd<T>::V* wv,
                     T init, int64_t ox) {
  using S = Simd<T>;
  using V = typename S::V;
  V acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = S::splat(init);
#pragma GCC unroll 1
  for (int j = 0; j < K + R - 1; ++j) {
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      const T* src = rows[j] + kxo[kx] + ox;
      V xv[NB];
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) xv[b] = S::load(src + b * S::L);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const int ky = j - r;
        if (ky < 0 || ky >= K) continue;
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) acc[r][b] += wv[ky * K + kx] * xv[b];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) S::store(dst[r] + ox + b * S::L, acc[r][b]);
}

template <class T, int K, int R>
void fwd_row_group(T* out, const T* wk, T init, const PlaneGeom& p, Scratch<T>& sc, int64_t oy0) {
  constexpr int64_t L = Simd<T>::L;
  const T* rows[K + R - 1];
  for (int j = 0; j < K + R - 1; ++j) rows[j] = sc.input_row(p, oy0 - p.ph + j * p.dh);
  T* dst[R];
  for (int r = 0; r < R; ++r) dst[r] = sc.row.data() + r * sc.wop;
  const int64_t* kxo = sc.kx_off.data();
  // Weights pre-broadcast to whole vectors: the FMAs take them as aligned memory operands, which
  // leaves the registers to the R*NB accumulators.
  typename Simd<T>::V wv[K * K];
  for (int i = 0; i < K * K; ++i) wv[i] = Simd<T>::splat(wk[i]);
  int64_t ox = 0;
  for (; ox + 4 * L <= sc.wop; ox += 4 * L) fwd_rows<T, K, R, 4>(dst, rows, kxo, wv, init, ox);
  switch ((sc.wop - ox) / L) {
    case 3:
      fwd_rows<T, K, R, 3>(dst, rows, kxo, wv, init, ox);
      break;
    case 2:
      fwd_rows<T, K, R, 2>(dst, rows, kxo, wv, init, ox);
      break;
    case 1:
      fwd_rows<T, K, R, 1>(dst, rows, kxo, wv, init, ox);
      break;
    default:
      break;
  }
  for (int r = 0; r < R; ++r) std::memcpy(out + (oy0 + r * p.dh) * p.wo, dst[r], sizeof(T) * p.wo);
}

// Vertical stride 1: output rows in groups {oy0, oy0 + dh, ...} that share input rows.
template <class T, int K>
void plane_fwd_rows(T* out, const T* in, const T* wk, T init, const PlaneGeom& p, Scratch<T>& sc) {
  sc.build(in, p);
  const int64_t step = kMaxRows * p.dh;
  for (int64_t blk = 0; blk < p.ho; blk += step)
    for (int64_t off = 0; off < p.dh && blk + off < p.ho; ++off) {
      const int64_t oy0 = blk + off;
      const int64_t nr = std::min<int64_t>(kMaxRows, (p.ho - 1 - oy0) / p.dh + 1);
      switch (nr) {
        case 4:
          fwd_row_group<T, K, 4>(out, wk, init, p, sc, oy0);
          break;
        case 3:
          fwd_row_group<T, K, 3>(out, wk, init, p, sc, oy0);
          break;
        case 2:
          fwd_row_group<T, K, 2>(out, wk, init, p, sc, oy0);
          break;
        default:
          fwd_row_group<T, K, 1>(out, wk, init, p, sc, oy0);
          break;
      }
    }
}

template <class T>
void plane_fwd_any(T* out, const T* in, const T* wk, T init, const PlaneGeom& p, Scratch<T>& sc) {
  if (p.kh == p.kw && p.sh == 1) {
    if (p.kw == 3) return plane_fwd_rows<T, 3>(out, in, wk, init, p, sc);
    if (p.kw == 5) return plane_fwd_rows<T, 5>(out, in, wk, init, p, sc);
    if (p.kw == 7) return plane_fwd_rows<T, 7>(out, in, wk, init, p, sc);
  }
  if (p.kh == p.kw) {
    if (p.kw == 3) return plane_fwd<T, 3>(out, in, wk, init, p, sc);
    if (p.kw == 5) return plane_fwd<T, 5>(out, in, wk, init, p, sc);
    if (p.kw == 7) return plane_fwd<T, 7>(out, in, wk, init, p, sc);
  }
  plane_fwd<T, 0>(out, in, wk, init, p, sc);
}

// acc[ky*kw + kx] += sum_{oy,ox} gy[oy, ox] * x[oy*sh - ph + ky*dh, ox*sw - pw + kx*dw].
template <class T, int K>
void plane_weight(double* acc, const T* gy, const T* x, const PlaneGeom& p, Scratch<T>& sc) {
  using S = Simd<T>;
  using V = typename S::V;
  sc.build(x, p);
  for (int64_t oy = 0; oy < p.ho; ++oy)
    std::memcpy(sc.gpad.data() + oy * sc.wop, gy + oy * p.wo, sizeof(T) * p.wo);
  const int64_t kh = K ? K : p.kh, kw = K ? K : p.kw;
  int64_t ky_start = 0;
  if constexpr (K > 1) {
    if (p.sh == 1) {
      // Kernel rows in pairs (ky, ky+1), walking the input rows: input row iy meets gy rows
      // iy + ph - ky*dh and one dh above it, so each loaded x vector feeds two accumulators.
      const T* zero_g = sc.zero.data();  // at least wop zeros
      for (; ky_start + 1 < K; ky_start += 2) {
        const int64_t ky = ky_start;
        V a0[K], a1[K];
        for (int kx = 0; kx < K; ++kx) a0[kx] = a1[kx] = V{};
        for (int64_t iy = 0; iy < p.h; ++iy) {
          const int64_t oy_a = iy + p.ph - ky * p.dh, oy_b = oy_a - p.dh;
          const bool va = oy_a >= 0 && oy_a < p.ho, vb = oy_b >= 0 && oy_b < p.ho;
          if (!va && !vb) continue;
          const T* ga = va ? sc.gpad.data() + oy_a * sc.wop : zero_g;
          const T* gb = vb ? sc.gpad.data() + oy_b * sc.wop : zero_g;
          const T* b = sc.input_row(p, iy);
          const T* t[K];
          for (int kx = 0; kx < K; ++kx) t[kx] = b + sc.kx_off[kx];
          for (int64_t ox = 0; ox < sc.wop; ox += S::L) {
            const V gva = S::load(ga + ox), gvb = S::load(gb + ox);
#pragma GCC unroll 8
            for (int kx = 0; kx < K; ++kx) {
              const V xv = S::load(t[kx] + ox);
              a0[kx] += gva * xv;
              a1[kx] += gvb * xv;
            }
          }
        }
        for (int kx = 0; kx < K; ++kx) {
          acc[ky * K + kx] += S::sum(a0[kx]);
          acc[(ky + 1) * K + kx] += S::sum(a1[kx]);
        }
      }
    }
  }
  for (int64_t ky = ky_start; ky < kh; ++ky) {
    int64_t oy0, oy1;  // rows whose tap ky lies inside the input
    valid_range(ky * p.dh - p.ph, p.sh, p.h, p.ho, oy0, oy1);
    if constexpr (K > 0) {
      V a[K];
      for (int kx = 0; kx < K; ++kx) a[kx] = V{};
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        const T* g = sc.gpad.data() + oy * sc.wop;
        const T* b = sc.row_base(p, oy, ky);
        const T* t[K];
        for (int kx = 0; kx < K; ++kx) t[kx] = b + sc.kx_off[kx];
        for (int64_t ox = 0; ox < sc.wop; ox += S::L) {
          const V gv = S::load(g + ox);
#pragma GCC unroll 8
          for (int kx = 0; kx < K; ++kx) a[kx] += gv * S::load(t[kx] + ox);
        }
      }
      for (int kx = 0; kx < K; ++kx) acc[ky * K + kx] += S::sum(a[kx]);
    } else {
      for (int64_t kx = 0; kx < kw; ++kx) {
        V a{};
        for (int64_t oy = oy0; oy < oy1; ++oy) {
          const T* g = sc.gpad.data() + oy * sc.wop;
          const T* t = sc.tap(p, oy, ky, kx);
          for (int64_t ox = 0; ox < sc.wop; ox += S::L) a += S::load(g + ox) * S::load(t + ox);
        }
        acc[ky * kw + kx] += S::sum(a);
      }
    }
  }
}

// ---- channel-blocked kernel ----
// Row vectors waste lanes on narrow planes (33 columns fill 48 lanes) and split most loads across
// cache lines. Here L channels are processed together with the vector running over channels: the L planes are
// transposed into a zero-padded (row, column, channel) buffer, each tap is one vector of L channel weights,
// and every load is a whole aligned vector. Transposes are L x L register shuffles.
#ifdef DL_CPU_TRANSPOSE
#define DL_DW_CHANNEL_BLOCKS 1

template <class T>
struct BlockScratch {
  using S = Simd<T>;
  using V = typename S::V;
  int64_t hp, wp, wpr;
  std::vector<V> pbuf;  // (hp, wpr) pixels of L channels
  std::vector<T> rows;  // (L, wpr): one padded input row per channel before the transpose
  std::vector<V> wb;    // (kh*kw) taps of L channel weights
  std::vector<T> orow;  // (L, round_up(wo, L)): one output row per channel after the transpose
  Transpose<T> tr;
  explicit BlockScratch(const PlaneGeom& p) {
    hp = (p.ho - 1) * p.sh + (p.kh - 1) * p.dh + 1;
    wp = (p.wo - 1) * p.sw + (p.kw - 1) * p.dw + 1;
    wpr = round_up(wp, S::L);
    pbuf.resize(size_t(hp * wpr));
    rows.resize(size_t(S::L * wpr));
    wb.resize(size_t(p.kh * p.kw));
    orow.resize(size_t(S::L * round_up(p.wo, S::L)));
  }
};

// NX output pixels of one row starting at ox; acc[i] holds pixel ox+i for the L channels. SW > 0:
// horizontal stride fixed at compile time (constant load offsets).
template <class T, int NX, int SW>
inline void block_pixels_s(typename Simd<T>::V* acc, const typename Simd<T>::V* pb, int64_t wpr,
                           const typename Simd<T>::V* wb, typename Simd<T>::V init, const PlaneGeom& p,
                           int64_t oy, int64_t ox) {
  using V = typename Simd<T>::V;
  const int64_t sw = SW > 0 ? SW : p.sw;
  V a[NX];
  for (int i = 0; i < NX; ++i) a[i] = init;
  for (int64_t ky = 0; ky < p.kh; ++ky) {
    const V* row = pb + (oy * p.sh + ky * p.dh) * wpr + ox * sw;
    for (int64_t kx = 0; kx < p.kw; ++kx) {
      const V wv = wb[ky * p.kw + kx];
      const V* src = row + kx * p.dw;
#pragma GCC unroll 16
      for (int i = 0; i < NX; ++i) a[i] += wv * src[i * sw];
    }
  }
  for (int i = 0; i < NX; ++i) acc[i] = a[i];
}
template <class T, int NX>
inline void block_pixels(typename Simd<T>::V* acc, const typename Simd<T>::V* pb, int64_t wpr,
                         const typename Simd<T>::V* wb, typename Simd<T>::V init, const PlaneGeom& p,
                         int64_t oy, int64_t ox) {
  if (p.sw == 1) return block_pixels_s<T, NX, 1>(acc, pb, wpr, wb, init, p, oy, ox);
  if (p.sw == 2) return block_pixels_s<T, NX, 2>(acc, pb, wpr, wb, init, p, oy, ox);
  block_pixels_s<T, NX, 0>(acc, pb, wpr, wb, init, p, oy, ox);
}

template <class T, int NX>
inline void block_pixels_tail(int nx, typename Simd<T>::V* acc, const typename Simd<T>::V* pb, int64_t wpr,
                              const typename Simd<T>::V* wb, typename Simd<T>::V init, const PlaneGeom& p,
                              int64_t oy, int64_t ox) {
  if constexpr (NX >= 1) {
    if (nx == NX) return block_pixels<T, NX>(acc, pb, wpr, wb, init, p, oy, ox);
    block_pixels_tail<T, NX - 1>(nx, acc, pb, wpr, wb, init, p, oy, ox);
  }
}

// Channels c0 .. c0+L-1 of one image: out/in point at channel c0's plane; wk at its weights (kh*kw
// each), flipped when `flip` (the grad-input gather); bias may be null.
template <class T>
void block_fwd(T* out, const T* in, const T* wk, const T* bias, bool flip, const PlaneGeom& p,
               BlockScratch<T>& sc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t kk = p.kh * p.kw, ohw = p.ho * p.wo, ihw = p.h * p.w, wor = round_up(p.wo, L);
  for (int64_t t = 0; t < kk; ++t)
    for (int l = 0; l < L; ++l) sc.wb[t][l] = wk[l * kk + (flip ? kk - 1 - t : t)];
  V init{};
  for (int l = 0; l < L; ++l) init[l] = bias ? bias[l] : T(0);
  // Pack: padded row yy holds input row yy - ph; column xx holds input column xx - pw.
  int64_t lo, hi;  // padded columns that hold input columns
  lo = std::clamp<int64_t>(p.pw, 0, sc.wpr);
  hi = std::clamp<int64_t>(p.pw + p.w, lo, sc.wpr);
  const int64_t src0 = lo - p.pw;  // first input column copied
  V tile[L];
  for (int64_t yy = 0; yy < sc.hp; ++yy) {
    V* prow = sc.pbuf.data() + yy * sc.wpr;
    const int64_t iy = yy - p.ph;
    if (iy < 0 || iy >= p.h) {
      std::fill(prow, prow + sc.wpr, V{});
      continue;
    }
    for (int l = 0; l < L; ++l) {
      T* r = sc.rows.data() + l * sc.wpr;
      const T* src = in + l * ihw + iy * p.w + src0 - lo;
      // Plain loops: rows are short, a library call per row costs more than the copy.
      for (int64_t j = 0; j < lo; ++j) r[j] = T(0);
      for (int64_t j = lo; j < hi; ++j) r[j] = src[j];
      for (int64_t j = hi; j < sc.wpr; ++j) r[j] = T(0);
    }
    for (int64_t xb = 0; xb < sc.wpr; xb += L) {
      for (int l = 0; l < L; ++l) tile[l] = S::load(sc.rows.data() + l * sc.wpr + xb);
      sc.tr(tile);
      for (int j = 0; j < L; ++j) prow[xb + j] = tile[j];
    }
  }
  for (int64_t oy = 0; oy < p.ho; ++oy) {
    for (int64_t ox = 0; ox < p.wo; ox += L) {
      const int nx = int(std::min<int64_t>(L, p.wo - ox));
      if (nx == L) {
        block_pixels<T, L>(tile, sc.pbuf.data(), sc.wpr, sc.wb.data(), init, p, oy, ox);
      } else {
        block_pixels_tail<T, L - 1>(nx, tile, sc.pbuf.data(), sc.wpr, sc.wb.data(), init, p, oy, ox);
        for (int i = nx; i < L; ++i) tile[i] = V{};
      }
      sc.tr(tile);
      for (int l = 0; l < L; ++l) S::store(sc.orow.data() + l * wor + ox, tile[l]);
    }
    for (int l = 0; l < L; ++l) {
      T* dst = out + l * ohw + oy * p.wo;
      const T* src = sc.orow.data() + l * wor;
      for (int64_t j = 0; j < p.wo; ++j) dst[j] = src[j];
    }
  }
}
#endif

// Every (image, channel) plane of a depthwise convolution described by p: whole blocks of L channels
// through the channel-blocked kernel where the compiler supports it, the remaining channels (and
// everything on other compilers) through the plane kernels. flip: use the flipped filter.
template <class T>
void depthwise_planes(T* out, const T* in, const T* w, const T* bias, bool flip, const PlaneGeom& p,
                      int64_t n_img, int64_t channels) {
  const int64_t ihw = p.h * p.w, ohw = p.ho * p.wo, kk = p.kh * p.kw;
  constexpr int64_t L = Simd<T>::L;
  int64_t blocks = 0;
#ifdef DL_DW_CHANNEL_BLOCKS
  // Measured faster than the plane kernels at every DeeperLab size (33 to 257 pixels wide); the
  // padded block buffer (one per thread) is capped so huge planes stay on the plane kernels.
  const int64_t block_bytes = ((p.ho - 1) * p.sh + (p.kh - 1) * p.dh + 1) *
                              round_up((p.wo - 1) * p.sw + (p.kw - 1) * p.dw + 1, L) * L * int64_t(sizeof(T));
  if (channels >= L && block_bytes <= (int64_t(64) << 20)) blocks = channels / L;
#endif
  const int64_t rest = channels - blocks * L;
#pragma omp parallel
  {
#ifdef DL_DW_CHANNEL_BLOCKS
    if (blocks > 0) {
      BlockScratch<T> bs(p);
#pragma omp for collapse(2) schedule(static) nowait
      for (int64_t n = 0; n < n_img; ++n)
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t c0 = b * L;
          block_fwd(out + (n * channels + c0) * ohw, in + (n * channels + c0) * ihw, w + c0 * kk,
                    bias ? bias + c0 : nullptr, flip, p, bs);
        }
    }
#endif
    if (rest > 0) {
      Scratch<T> sc(p, false);
      std::vector<T> wf(kk);
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < n_img; ++n)
        for (int64_t r = 0; r < rest; ++r) {
          const int64_t c = blocks * L + r;
          const T* wc = w + c * kk;
          for (int64_t i = 0; i < kk; ++i) wf[i] = flip ? wc[kk - 1 - i] : wc[i];
          plane_fwd_any(out + (n * channels + c) * ohw, in + (n * channels + c) * ihw, wf.data(),
                        bias ? bias[c] : T(0), p, sc);
        }
    }
  }
}

PlaneGeom fwd_plane_geom(const ConvGeom& g) {
  return {g.h, g.w, g.h_out, g.w_out, g.kh, g.kw, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w};
}

}  // namespace

template <class T>
void conv2d_fwd_depthwise(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  depthwise_planes(y, x, w, bias, false, fwd_plane_geom(g), g.n, g.c_in);
}

template <class T>
void conv2d_bwd_input_depthwise(T* gx, const T* gy, const T* w, const ConvGeom& g) {
  const int64_t hw = g.h * g.w, ohw = g.h_out * g.w_out, kk = g.kh * g.kw;
  if (g.stride_h == 1 && g.stride_w == 1) {
    // gx = conv(gy, flip(w)) with padding (k-1)*d - pad, stride 1: a gather per gx pixel.
    const PlaneGeom p{g.h_out,
                      g.w_out,
                      g.h,
                      g.w,
                      g.kh,
                      g.kw,
                      1,
                      1,
                      (g.kh - 1) * g.dil_h - g.pad_h,
                      (g.kw - 1) * g.dil_w - g.pad_w,
                      g.dil_h,
                      g.dil_w};
    depthwise_planes(gx, gy, w, static_cast<const T*>(nullptr), true, p, g.n, g.c_in);
    return;
  }
  // Strided: scatter tap by tap into the gx plane this iteration owns.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c_in; ++c) {
      T* __restrict gxp = gx + (n * g.c_in + c) * hw;
      const T* __restrict gyp = gy + (n * g.c_in + c) * ohw;
      const T* wc = w + c * kk;
      std::memset(gxp, 0, sizeof(T) * hw);
      for (int64_t oy = 0; oy < g.h_out; ++oy) {
        const T* gyr = gyp + oy * g.w_out;
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          const int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dil_h;
          if (iy < 0 || iy >= g.h) continue;
          T* gxr = gxp + iy * g.w;
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            const int64_t off = kx * g.dil_w - g.pad_w;
            int64_t lo, hi;
            valid_range(off, g.stride_w, g.w, g.w_out, lo, hi);
            const T wv = wc[ky * g.kw + kx];
            const int64_t s = g.stride_w;
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) gxr[ox * s + off] += wv * gyr[ox];
          }
        }
      }
    }
}

template <class T>
void conv2d_bwd_weight_depthwise(T* gw, const T* gy, const T* x, const ConvGeom& g) {
  const PlaneGeom p = fwd_plane_geom(g);
  const int64_t hw = g.h * g.w, ohw = g.h_out * g.w_out, kk = g.kh * g.kw;
  const bool k3 = g.kh == 3 && g.kw == 3, k5 = g.kh == 5 && g.kw == 5, k7 = g.kh == 7 && g.kw == 7;
  // Per channel, reduced over the batch inside one iteration: no sharing between threads.
#pragma omp parallel
  {
    Scratch<T> sc(p, true);
    std::vector<double> acc(kk);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.c_in; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.n; ++n) {
        const T* xp = x + (n * g.c_in + c) * hw;
        const T* gyp = gy + (n * g.c_in + c) * ohw;
        if (k3)
          plane_weight<T, 3>(acc.data(), gyp, xp, p, sc);
        else if (k5)
          plane_weight<T, 5>(acc.data(), gyp, xp, p, sc);
        else if (k7)
          plane_weight<T, 7>(acc.data(), gyp, xp, p, sc);
        else
          plane_weight<T, 0>(acc.data(), gyp, xp, p, sc);
      }
      for (int64_t i = 0; i < kk; ++i) gw[c * kk + i] = static_cast<T>(acc[i]);
    }
  }
}

#define DL_INST(T)                                                                          \
  template void conv2d_fwd_depthwise<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void conv2d_bwd_input_depthwise<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void conv2d_bwd_weight_depthwise<T>(T*, const T*, const T*, const ConvGeom&);
DL_INST(float)
DL_INST(double)
#undef DL_INST

}  // namespace dl::cpu
