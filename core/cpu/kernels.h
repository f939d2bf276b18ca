// CPU reference kernels, forward and backward, templated on the float type (float for compute,
// double for finite-difference checks). Outputs first, then inputs, then sizes (llm.c order).
// cuda/<family>.cu mirrors each family with the same names on float and a stream.
#pragma once
#include <cstdint>

#include "core/geometry.h"

namespace dl::cpu {

// ---- conv.cpp: dense / grouped / depthwise / pointwise convolution ----
template <class T> void conv2d_fwd(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g);
template <class T> void conv2d_bwd_input(T* gx, const T* gy, const T* w, const ConvGeom& g);
template <class T> void conv2d_bwd_weight(T* gw, const T* gy, const T* x, const ConvGeom& g);
template <class T> void conv2d_bwd_bias(T* gb, const T* gy, const ConvGeom& g);

// ---- batchnorm.cpp (x: N, C, HW) ----
// Batch mean and biased variance per channel.
template <class T> void batch_norm_stats(T* mean, T* var, const T* x, int64_t n, int64_t c, int64_t hw);
// y = (x - mean) * invstd * w + b; w/b may be null (1 / 0).
template <class T>
void batch_norm_fwd(T* y, const T* x, const T* mean, const T* invstd, const T* w, const T* b, int64_t n,
                    int64_t c, int64_t hw);
// Training-mode backward (statistics depend on x). gw/gb may be null.
template <class T>
void batch_norm_bwd_train(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                          const T* w, int64_t n, int64_t c, int64_t hw);
// Eval-mode backward (statistics are constants). gx/gw/gb may be null.
template <class T>
void batch_norm_bwd_eval(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                         const T* w, int64_t n, int64_t c, int64_t hw);

// ---- elementwise.cpp ----
template <class T> void relu_fwd(T* y, const T* x, int64_t n);
template <class T> void relu_bwd(T* gx, const T* gy, const T* y, int64_t n);  // uses the output
template <class T> void relu6_fwd(T* y, const T* x, int64_t n);
template <class T> void relu6_bwd(T* gx, const T* gy, const T* x, int64_t n);  // uses the input
template <class T> void sigmoid_fwd(T* y, const T* x, int64_t n);
template <class T> void sigmoid_bwd(T* gx, const T* gy, const T* y, int64_t n);
template <class T> void add_fwd(T* y, const T* a, const T* b, int64_t n);
template <class T> void sub_fwd(T* y, const T* a, const T* b, int64_t n);
template <class T> void mul_fwd(T* y, const T* a, const T* b, int64_t n);
template <class T> void scale_fwd(T* y, const T* x, T s, int64_t n);
template <class T> void axpy(T* y, T a, const T* x, int64_t n);  // y += a * x
template <class T> double sum_all(const T* x, int64_t n);      // double accumulation
template <class T> void fill(T* y, T v, int64_t n);

// ---- pool.cpp ----
template <class T> void global_avg_pool_fwd(T* y, const T* x, int64_t nc, int64_t hw);
template <class T> void global_avg_pool_bwd(T* gx, const T* gy, int64_t nc, int64_t hw);

// ---- shuffle.cpp: copies that move elements around ----
// Copies a (outer, inner_src) array into columns [offset, offset + inner_src) of an (outer, inner_dst)
// array (concat forward); the reverse (slice) when `scatter` is false.
template <class T>
void copy_columns(T* dst, const T* src, int64_t outer, int64_t inner_dst, int64_t inner_src, int64_t offset,
                  bool into_dst);
// (nc, h, w) <-> (nc, oh, ow) window copy: dst[y][x] = src[y + top][x + left] for the crop; the pad
// writes src into a zeroed dst at (top, left).
template <class T>
void crop2d_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
                int64_t ow);
template <class T>
void pad2d_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
               int64_t ow);
template <class T>
void space_to_depth_fwd(T* y, const T* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b);
template <class T>
void depth_to_space_fwd(T* y, const T* x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t b);  // c = in ch

// ---- resize.cpp ----
template <class T>
void resize_bilinear_fwd(T* y, const T* x, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners);
template <class T>
void resize_bilinear_bwd(T* gx, const T* gy, int64_t nc, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         bool align_corners);

}  // namespace dl::cpu
