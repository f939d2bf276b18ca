// CPU reference kernels of the losses (core/cpu/loss.h). Reductions sum fixed chunks in parallel
// and then the chunk partials in order, so results do not depend on the thread count. Hard-pixel
// selection is std::nth_element on a copy of each image's losses (NaN sorted as +inf so that the
// selection stays well-defined; the NaN still reaches the loss value). Small inputs run serially.
#include "core/cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace dl::cpu {

namespace {
constexpr int64_t kChunk = 4096;
// Below this many elements a parallel region costs more than it saves (and on a loaded machine
// far more: the threads of a barrier wait for each other's time slices).
constexpr int64_t kParallelMin = 1 << 15;

// Sums f(i0, i1) -> (sum, count) over [0, total) in fixed chunks; deterministic.
template <class F>
void chunked_sum(double& sum, double& count, int64_t total, F f) {
  const int64_t nchunks = (total + kChunk - 1) / kChunk;
  std::vector<double> s(nchunks), c(nchunks);
#pragma omp parallel for schedule(static) if (nchunks >= 4)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t a = ch * kChunk, b = std::min(total, a + kChunk);
    f(a, b, s[ch], c[ch]);
  }
  sum = 0;
  count = 0;
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    sum += s[ch];
    count += c[ch];
  }
}

template <class T>
T softplus_neg_abs(T x) {  // log(1 + exp(-|x|)), stable
  return std::log1p(std::exp(-std::fabs(x)));
}
}  // namespace

int64_t count_bad_labels(const int32_t* labels, int64_t n, int32_t k) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += (labels[i] < -1 || labels[i] >= k);
  return bad;
}

bool first_bad_label(const int32_t* labels, int64_t n, int32_t k, int64_t& index, int32_t& value) {
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < -1 || labels[i] >= k) {
      index = i;
      value = labels[i];
      return true;
    }
  return false;
}

// ---------------------------------------------------------------------------------------------
template <class T>
void softmax_ce_fwd(T* loss, const T* logits, const int32_t* labels, const T* weights, int64_t n, int64_t k,
                    int64_t hw) {
  constexpr int64_t B = 256;  // pixels per block: channel loops stay contiguous
  const int64_t nblocks = (hw + B - 1) / B;
#pragma omp parallel for schedule(static) if (n * k * hw >= kParallelMin)
  for (int64_t ib = 0; ib < n * nblocks; ++ib) {
    const int64_t i = ib / nblocks, p0 = (ib % nblocks) * B, p1 = std::min(hw, p0 + B);
    const T* x = logits + i * k * hw;
    T mx[B], se[B];
    for (int64_t p = p0; p < p1; ++p) mx[p - p0] = -std::numeric_limits<T>::infinity(), se[p - p0] = 0;
    for (int64_t c = 0; c < k; ++c)
      for (int64_t p = p0; p < p1; ++p) mx[p - p0] = std::max(mx[p - p0], x[c * hw + p]);
    for (int64_t c = 0; c < k; ++c)
      for (int64_t p = p0; p < p1; ++p) se[p - p0] += std::exp(x[c * hw + p] - mx[p - p0]);
    for (int64_t p = p0; p < p1; ++p) {
      const int32_t l = labels[i * hw + p];
      const T w = weights[i * hw + p];
      if (l < 0 || w == T(0)) {
        loss[i * hw + p] = 0;
        continue;
      }
      loss[i * hw + p] = w * (mx[p - p0] + std::log(se[p - p0]) - x[l * hw + p]);
    }
  }
}

template <class T>
void topk_mask(uint8_t* mask, T* kept_sum, const T* loss, int64_t n, int64_t hw, int64_t keep) {
  keep = std::min(keep, hw);
  std::vector<T> v(hw);
  for (int64_t i = 0; i < n; ++i) {
    const T* l = loss + i * hw;
    uint8_t* m = mask + i * hw;
    auto key = [](T x) { return std::isnan(x) ? std::numeric_limits<T>::infinity() : x; };
    for (int64_t p = 0; p < hw; ++p) v[p] = key(l[p]);
    double s = 0;
    if (keep <= 0) {
      std::fill(m, m + hw, uint8_t(0));
    } else {
      std::nth_element(v.begin(), v.begin() + (keep - 1), v.end(), std::greater<T>());
      const T thr = v[keep - 1];
      int64_t greater = 0;
      for (int64_t p = 0; p < hw; ++p) greater += key(l[p]) > thr;
      int64_t ties_left = keep - greater;  // >= 1: thr itself is among the kept
      for (int64_t p = 0; p < hw; ++p) {
        const T kp = key(l[p]);
        const bool kept = kp > thr || (kp == thr && ties_left-- > 0);
        m[p] = kept;
        if (kept) s += double(l[p]);
      }
    }
    kept_sum[i] = T(s);
  }
}

template <class T>
void softmax_ce_bwd(T* gx, const T* gy, const T* logits, const int32_t* labels, const T* weights,
                    const uint8_t* mask, T factor, int64_t n, int64_t k, int64_t hw) {
  const T g = gy[0] * factor;
#pragma omp parallel for schedule(static) if (n * k * hw >= kParallelMin)
  for (int64_t ip = 0; ip < n * hw; ++ip) {
    const int64_t i = ip / hw, p = ip % hw;
    const T* x = logits + i * k * hw;
    T* gxi = gx + i * k * hw;
    const int32_t l = labels[ip];
    const T w = weights[ip];
    if (!mask[ip] || l < 0 || w == T(0)) {
      for (int64_t c = 0; c < k; ++c) gxi[c * hw + p] = 0;
      continue;
    }
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < k; ++c) mx = std::max(mx, x[c * hw + p]);
    T se = 0;
    for (int64_t c = 0; c < k; ++c) se += std::exp(x[c * hw + p] - mx);
    const T gw = g * w;
    for (int64_t c = 0; c < k; ++c) {
      const T s = std::exp(x[c * hw + p] - mx) / se;
      gxi[c * hw + p] = gw * (s - (c == l ? T(1) : T(0)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
template <class T>
void sigmoid_ce_fwd(T* sum_count, const T* x, const T* t, const T* w, int64_t n, int64_t c, int64_t wc,
                    int64_t hw) {
  double s, cnt;
  chunked_sum(s, cnt, n * c * hw, [&](int64_t a, int64_t b, double& ps, double& pc) {
    double ls = 0, lc = 0;
    for (int64_t e = a; e < b; ++e) {
      const int64_t i = e / (c * hw), ch = (e / hw) % c, p = e % hw;
      const T we = w[(i * wc + (wc == 1 ? 0 : ch)) * hw + p];
      if (!(we > T(0))) continue;
      const T xe = x[e];
      ls += double(we * (std::max(xe, T(0)) - xe * t[e] + softplus_neg_abs(xe)));
      lc += 1;
    }
    ps = ls;
    pc = lc;
  });
  sum_count[0] = T(s);
  sum_count[1] = T(cnt);
}

template <class T>
void sigmoid_ce_bwd(T* gx, const T* gy, const T* sum_count, const T* x, const T* t, const T* w, int64_t n,
                    int64_t c, int64_t wc, int64_t hw) {
  const T g = sum_count[1] > T(0) ? gy[0] / sum_count[1] : T(0);
  const int64_t total = n * c * hw;
#pragma omp parallel for schedule(static) if (total >= kParallelMin)
  for (int64_t e = 0; e < total; ++e) {
    const int64_t i = e / (c * hw), ch = (e / hw) % c, p = e % hw;
    const T we = w[(i * wc + (wc == 1 ? 0 : ch)) * hw + p];
    if (!(we > T(0))) {
      gx[e] = 0;
      continue;
    }
    const T s = T(1) / (T(1) + std::exp(-x[e]));
    gx[e] = g * we * (s - t[e]);
  }
}

// ---------------------------------------------------------------------------------------------
template <class T>
void offset_l1_fwd(T* sum_count, const T* pred, const T* target, const T* mask, T inv_scale, int64_t n,
                   int64_t c, int64_t mc, int64_t hw) {
  double s, cnt;
  chunked_sum(s, cnt, n * c * hw, [&](int64_t a, int64_t b, double& ps, double& pc) {
    double ls = 0, lc = 0;
    for (int64_t e = a; e < b; ++e) {  // e = (i, pair, p)
      const int64_t i = e / (c * hw), k = (e / hw) % c, p = e % hw;
      const T m = mask[(i * mc + (mc == 1 ? 0 : k)) * hw + p];
      if (!(m > T(0))) continue;
      const int64_t oy = ((i * 2 * c) + 2 * k) * hw + p, ox = oy + hw;
      ls += double((std::fabs(pred[oy] - target[oy]) + std::fabs(pred[ox] - target[ox])) * m * inv_scale);
      lc += 1;
    }
    ps = ls;
    pc = lc;
  });
  sum_count[0] = T(s);
  sum_count[1] = T(cnt);
}

template <class T>
void offset_l1_bwd(T* gx, const T* gy, const T* sum_count, const T* pred, const T* target, const T* mask,
                   T inv_scale, int64_t n, int64_t c, int64_t mc, int64_t hw) {
  const T g = sum_count[1] > T(0) ? gy[0] / sum_count[1] : T(0);
  const int64_t total = n * c * hw;
  auto sgn = [](T d) { return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0)); };
#pragma omp parallel for schedule(static) if (total >= kParallelMin)
  for (int64_t e = 0; e < total; ++e) {
    const int64_t i = e / (c * hw), k = (e / hw) % c, p = e % hw;
    const T m = mask[(i * mc + (mc == 1 ? 0 : k)) * hw + p];
    const int64_t oy = ((i * 2 * c) + 2 * k) * hw + p, ox = oy + hw;
    if (!(m > T(0))) {
      gx[oy] = 0;
      gx[ox] = 0;
      continue;
    }
    const T f = g * m * inv_scale;
    gx[oy] = f * sgn(pred[oy] - target[oy]);
    gx[ox] = f * sgn(pred[ox] - target[ox]);
  }
}

#define DL_INSTANTIATE(T)                                                                                   \
  template void softmax_ce_fwd<T>(T*, const T*, const int32_t*, const T*, int64_t, int64_t, int64_t);       \
  template void topk_mask<T>(uint8_t*, T*, const T*, int64_t, int64_t, int64_t);                            \
  template void softmax_ce_bwd<T>(T*, const T*, const T*, const int32_t*, const T*, const uint8_t*, T,      \
                                  int64_t, int64_t, int64_t);                                               \
  template void sigmoid_ce_fwd<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);    \
  template void sigmoid_ce_bwd<T>(T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                  int64_t, int64_t);                                                        \
  template void offset_l1_fwd<T>(T*, const T*, const T*, const T*, T, int64_t, int64_t, int64_t, int64_t);  \
  template void offset_l1_bwd<T>(T*, const T*, const T*, const T*, const T*, const T*, T, int64_t, int64_t, \
                                 int64_t, int64_t);
DL_INSTANTIATE(float)
DL_INSTANTIATE(double)
#undef DL_INSTANTIATE

}  // namespace dl::cpu
