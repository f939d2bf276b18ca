// Deterministic block reductions: a fixed shuffle tree inside each warp, then warp partials summed
// in warp order by warp 0. Same inputs and launch shape give bit-identical results on every run.
#pragma once
#include <cuda_runtime.h>

namespace dl::cuda {

template <class T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// Sum of v over the block; the result is valid in every thread. `smem` holds >= 32 T.
// Every thread of the block must call it (it synchronises). blockDim.x must be a multiple of 32.
template <class T>
__device__ T block_reduce_sum(T v, T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce_sum(v);
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T s = lane < nwarps ? smem[lane] : T(0);
    s = warp_reduce_sum(s);
    if (lane == 0) smem[0] = s;
  }
  __syncthreads();
  return smem[0];
}

}  // namespace dl::cuda
