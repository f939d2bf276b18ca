// Portable vectors for CPU kernels (GCC vector extensions at the target's widest width) and an
// L x L in-register transpose, shared by the depthwise kernels and the GEMM packing.
#pragma once
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace dl::cpu {

// The widest vector the target has (portable builds get SSE2's 16 bytes).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <class T>
struct Simd {
  static constexpr int L = kVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kVecBytes)));
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V splat(T s) { return V{} + s; }
  static double sum(V v) {
    double s = 0;
    for (int i = 0; i < L; ++i) s += double(v[i]);
    return s;
  }
};

#ifdef __AVX512F__
// The first `count` of 16 lanes (count clamped to [0, 16]).
inline __mmask16 lane_mask(int count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}
#endif

#if defined(__GNUC__) && !defined(__clang__)
// L x L transpose of L vectors in registers through __builtin_shuffle (GCC only).
#define DL_CPU_TRANSPOSE 1
template <class T>
struct Transpose {
  using S = Simd<T>;
  using V = typename S::V;
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef I Vi __attribute__((vector_size(kVecBytes)));
  Vi lo[8], hi[8];  // masks per round (half-size h = L/2, L/4, ..., 1)
  int rounds = 0;
  Transpose() {
    for (int h = S::L / 2; h >= 1; h /= 2, ++rounds) {
      for (int p = 0; p < S::L; ++p) {
        const int seg = p / (2 * h), q = p % (2 * h);
        lo[rounds][p] = q < h ? I(seg * 2 * h + q) : I(S::L + seg * 2 * h + q - h);
        hi[rounds][p] = q < h ? I(seg * 2 * h + h + q) : I(S::L + seg * 2 * h + q);
      }
    }
  }
  // r[i][j] -> r[j][i]: each round swaps the off-diagonal blocks of size h.
  void operator()(V* r) const {
    constexpr int kRounds = S::L == 16 ? 4 : S::L == 8 ? 3 : S::L == 4 ? 2 : 1;
#pragma GCC unroll 4
    for (int round = 0; round < kRounds; ++round) {
      const int h = S::L >> (round + 1);
#pragma GCC unroll 16
      for (int i = 0; i < S::L; ++i)
        if (!(i & h)) {
          const V a = r[i], b = r[i + h];
          r[i] = __builtin_shuffle(a, b, lo[round]);
          r[i + h] = __builtin_shuffle(a, b, hi[round]);
        }
    }
  }
};
#endif

}  // namespace dl::cpu
