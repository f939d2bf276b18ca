// CUDA launchers of the DeeperLab losses: the float mirror of core/cpu/loss.h, enqueued on `s`.
// Scalars (sums, counts, the upstream gradient) stay in device memory, so a training step does not
// synchronise on the loss; only the label check reads one integer back.
#pragma once
#include <cstdint>

#include "cuda/runtime.h"

namespace dl::cuda {

// Number of labels outside {-1} U [0, k) (synchronises: the front-end raises on a non-zero count).
int64_t count_bad_labels(const int32_t* labels, int64_t n, int32_t k, cudaStream_t s);

void softmax_ce_fwd(float* loss, const float* logits, const int32_t* labels, const float* weights, int64_t n,
                    int64_t k, int64_t hw, cudaStream_t s);
// Exact per-image top-`keep` selection by radix select over the float bits (4 passes of 8 bits,
// no sort); ties at the keep-th value go to the lower pixel index, as on the CPU.
// kept_sum: (n) device floats.
void topk_mask(uint8_t* mask, float* kept_sum, const float* loss, int64_t n, int64_t hw, int64_t keep,
               cudaStream_t s);
// out[0] = sum_i kept_sum[i] * factor.
void scaled_sum(float* out, const float* values, int64_t n, float factor, cudaStream_t s);
void softmax_ce_bwd(float* gx, const float* gy, const float* logits, const int32_t* labels,
                    const float* weights, const uint8_t* mask, float factor, int64_t n, int64_t k, int64_t hw,
                    cudaStream_t s);

void sigmoid_ce_fwd(float* sum_count, const float* x, const float* t, const float* w, int64_t n, int64_t c,
                    int64_t wc, int64_t hw, cudaStream_t s);
void sigmoid_ce_bwd(float* gx, const float* gy, const float* sum_count, const float* x, const float* t,
                    const float* w, int64_t n, int64_t c, int64_t wc, int64_t hw, cudaStream_t s);

void offset_l1_fwd(float* sum_count, const float* pred, const float* target, const float* mask,
                   float inv_scale, int64_t n, int64_t c, int64_t mc, int64_t hw, cudaStream_t s);
void offset_l1_bwd(float* gx, const float* gy, const float* sum_count, const float* pred, const float* target,
                   const float* mask, float inv_scale, int64_t n, int64_t c, int64_t mc, int64_t hw,
                   cudaStream_t s);

// out[0] = sum_count[1] > 0 ? sum_count[0] / sum_count[1] : 0.
void mean_of_sum_count(float* out, const float* sum_count, cudaStream_t s);

}  // namespace dl::cuda
