// CPU reference kernels of the DeeperLab losses (parser/losses.h), templated on the float type
// (float for training, double for finite-difference checks). Reductions return (sum, count) pairs
// so that the front-end, and the CUDA mirror in cuda/loss.h, share one normalisation rule.
// Layouts: logits (N, K, HW), labels/weights/mask (N, HW), pairs of offset channels (N, 2C, HW).
#pragma once
#include <cstdint>

namespace dl::cpu {

// Number of labels outside {-1} U [0, k): the front-end turns a non-zero count into an error.
int64_t count_bad_labels(const int32_t* labels, int64_t n, int32_t k);
// First bad label (index, value) for the error message; returns false when there is none.
bool first_bad_label(const int32_t* labels, int64_t n, int32_t k, int64_t& index, int32_t& value);

// ---- bootstrapped (hard-mined) softmax cross-entropy ----
// loss[i, p] = w[i, p] * (logsumexp_c x[i, c, p] - x[i, label, p]); 0 where label < 0 or w == 0.
template <class T>
void softmax_ce_fwd(T* loss, const T* logits, const int32_t* labels, const T* weights, int64_t n, int64_t k,
                    int64_t hw);
// Per image: marks exactly `keep` pixels with the largest loss (ties at the keep-th value broken by
// the lower pixel index) in mask (1 kept, 0 not) and writes the sum of their losses to kept_sum[i].
template <class T>
void topk_mask(uint8_t* mask, T* kept_sum, const T* loss, int64_t n, int64_t hw, int64_t keep);
// gx[i, c, p] = gy[0] * factor * mask * w * (softmax_c - [c == label]).
template <class T>
void softmax_ce_bwd(T* gx, const T* gy, const T* logits, const int32_t* labels, const T* weights,
                    const uint8_t* mask, T factor, int64_t n, int64_t k, int64_t hw);

// ---- sigmoid cross-entropy with a per-pixel weight (wc = 1: broadcast over c; wc = c) ----
// sum_count[0] = sum over elements with w > 0 of w * (max(x, 0) - x t + log(1 + exp(-|x|))),
// sum_count[1] = their number.
template <class T>
void sigmoid_ce_fwd(T* sum_count, const T* x, const T* t, const T* w, int64_t n, int64_t c, int64_t wc,
                    int64_t hw);
// gx = gy[0] / count * w * (sigmoid(x) - t) on elements with w > 0 (0 when count == 0).
template <class T>
void sigmoid_ce_bwd(T* gx, const T* gy, const T* sum_count, const T* x, const T* t, const T* w, int64_t n,
                    int64_t c, int64_t wc, int64_t hw);

// ---- L1 on (dy, dx) offset pairs with a per-pair mask (mc = 1: broadcast over pairs; mc = c) ----
// sum_count[0] = sum over active (mask > 0) (i, pair, p) of (|dy| + |dx|) * mask * inv_scale,
// sum_count[1] = number of active (i, pair, p).
template <class T>
void offset_l1_fwd(T* sum_count, const T* pred, const T* target, const T* mask, T inv_scale, int64_t n,
                   int64_t c, int64_t mc, int64_t hw);
// gx = gy[0] / count * sign(pred - target) * mask * inv_scale on active entries.
template <class T>
void offset_l1_bwd(T* gx, const T* gy, const T* sum_count, const T* pred, const T* target, const T* mask,
                   T inv_scale, int64_t n, int64_t c, int64_t mc, int64_t hw);

}  // namespace dl::cpu
