// Single-precision matrix product on one thread: our own AVX-512 kernel where the compiler targets
// AVX-512, OpenBLAS otherwise. Callers thread it (conv_gemm.cpp splits into panels per OpenMP thread).
#pragma once
#include <cstdint>

namespace dl::cpu {

// Row-major C[M,N] = op(A)[M,K] * op(B)[K,N] + beta * C on the calling thread.
// op(A) = A^T when ta (A stored [K, lda]), else A (stored [M, lda]); likewise for B.
// beta == 0 never reads C (it may hold garbage, NaN included).
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float beta, float* c, int64_t ldc);

// The same product through OpenBLAS (single-threaded): the fallback, and what bench_gemm compares with.
void sgemm_openblas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float beta, float* c, int64_t ldc);

// Sets OpenBLAS to one thread (once): OpenMP does all our threading and the two pools must not nest.
void blas_single_threaded();

// Which implementation sgemm() runs: "avx512" or "openblas". DEEPERLAB_GEMM=openblas forces OpenBLAS
// (read once) for comparisons.
const char* sgemm_backend();

}  // namespace dl::cpu
