// Single-threaded SGEMM with an AVX-512 register-blocked micro-kernel (GotoBLAS/BLIS structure).
// Why our own: the OpenBLAS we link may be pinned to its AVX2 (Haswell) kernels by the environment
// (OPENBLAS_CORETYPE), which halves the FMA width on AVX-512 machines; conv 1x1 and im2col are
// nearly all GEMM time.
//
// Blocking: B is packed in KC x NC blocks as NR-wide column panels, A in MC x KC blocks as MR-tall
// row panels (both k-major, zero-padded to full panels); the micro-kernel keeps an MR x NR tile of
// C in 28 zmm registers while one B micro-panel (KC x NR) stays in L1 and the A block in L2.
#include "core/cpu/sgemm.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/cpu/simd.h"

namespace dl::cpu {

void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void sgemm_openblas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float beta, float* c, int64_t ldc) {
  blas_single_threaded();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              1.0f, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

#if defined(__AVX512F__) && defined(DL_CPU_TRANSPOSE)
#define DL_SGEMM_AVX512 1
namespace {
bool openblas_forced() {
  static const bool forced = [] {
    const char* e = std::getenv("DEEPERLAB_GEMM");
    return e && std::strcmp(e, "openblas") == 0;
  }();
  return forced;
}

constexpr int kMR = 14, kNR = 32;
constexpr int64_t kKC = 256, kMC = 12 * kMR, kNC = 64 * kNR;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
// Per-thread packing buffers, allocated on first use and kept (about 2.2 MB per thread).
struct PackBuffers {
  std::unique_ptr<float, AlignedFree> a, b;
  PackBuffers()
      : a(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMC * kKC))),
        b(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKC * kNC))) {}
};


// C[mr x nr] = Ap * Bp + beta * C, where Ap is MR x kc (k-major) and Bp is kc x NR (k-major).
void micro_kernel(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c, int64_t ldc,
                  float beta, int mr, int nr) {
  __m512 acc[kMR][2];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    // The C tile is read or written only after the depth loop: fetch its lines meanwhile.
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
    ap += kMR;
    bp += kNR;
  }
  const __mmask16 m0 = lane_mask(nr), m1 = lane_mask(nr - 16);
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    if (i >= mr) break;
    float* cr = c + i * ldc;
    __m512 v0 = acc[i][0], v1 = acc[i][1];
    if (beta != 0.0f) {  // beta == 0 must not read C
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

// dst[p * stride + j] = src[j * ld + p] for j < rows (zero for rows <= j < width), p < kc: packs
// `rows` source rows that run along the depth into one k-major panel of `width` (<= 16) columns,
// 16 x 16 blocks at a time through the shared register transpose.
void pack_transposed(float* dst, int64_t stride, int width, const float* src, int64_t ld, int rows, int64_t kc) {
  static const Transpose<float> transpose;
  const __mmask16 wm = lane_mask(width);
  Simd<float>::V block[16];
  for (int64_t p = 0; p < kc; p += 16) {
    const int n = int(std::min<int64_t>(16, kc - p));
    const __mmask16 cm = lane_mask(n);  // rows and columns past the block read as zero
    for (int j = 0; j < 16; ++j)
      block[j] = j < rows ? _mm512_maskz_loadu_ps(cm, src + j * ld + p) : _mm512_setzero_ps();
    transpose(block);
    for (int q = 0; q < n; ++q) _mm512_mask_storeu_ps(dst + (p + q) * stride, wm, block[q]);
  }
}

// Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into MR-row panels: dst[panel][p][i].
void pack_a(float* dst, bool ta, const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int mr = int(std::min<int64_t>(kMR, mc - ir));
    float* d = dst + ir * kc;
    if (ta) {  // op(A)[i, p] = a[p * lda + i]: each depth step is a contiguous run of rows
      const __mmask16 m = lane_mask(mr);
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(d + p * kMR, lane_mask(kMR), _mm512_maskz_loadu_ps(m, a + (p0 + p) * lda + i0 + ir));
    } else {  // op(A)[i, p] = a[i * lda + p]: rows run along the depth
      pack_transposed(d, kMR, kMR, a + (i0 + ir) * lda + p0, lda, mr, kc);
    }
  }
}

// Depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-column panels: dst[panel][p][j].
void pack_b(float* dst, bool tb, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
  for (int64_t jr = 0; jr < nc; jr += kNR) {
    const int nr = int(std::min<int64_t>(kNR, nc - jr));
    float* d = dst + jr * kc;
    if (!tb) {  // op(B)[p, j] = b[p * ldb + j]: rows are contiguous
      const __mmask16 m0 = lane_mask(nr), m1 = lane_mask(nr - 16);
      for (int64_t p = 0; p < kc; ++p) {
        const float* s = b + (p0 + p) * ldb + j0 + jr;
        _mm512_store_ps(d + p * kNR, _mm512_maskz_loadu_ps(m0, s));
        _mm512_store_ps(d + p * kNR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
      }
    } else {  // op(B)[p, j] = b[j * ldb + p]: columns run along the depth, two halves of 16
      const float* s = b + (j0 + jr) * ldb + p0;
      pack_transposed(d, kNR, 16, s, ldb, std::min(nr, 16), kc);
      pack_transposed(d + 16, kNR, 16, s + 16 * ldb, ldb, std::max(nr - 16, 0), kc);
    }
  }
}

void sgemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float beta, float* c, int64_t ldc) {
  static thread_local PackBuffers buf;
  float* ap = buf.a.get();
  float* bp = buf.b.get();
  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = std::min(kKC, k - pc);
      const float beta_block = pc == 0 ? beta : 1.0f;  // later depth blocks accumulate
      pack_b(bp, tb, b, ldb, pc, kc, jc, nc);
      for (int64_t ic = 0; ic < m; ic += kMC) {
        const int64_t mc = std::min(kMC, m - ic);
        pack_a(ap, ta, a, lda, ic, mc, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += kNR)
          for (int64_t ir = 0; ir < mc; ir += kMR)
            micro_kernel(kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, beta_block,
                         int(std::min<int64_t>(kMR, mc - ir)), int(std::min<int64_t>(kNR, nc - jr)));
      }
    }
  }
}

}  // namespace
#endif

const char* sgemm_backend() {
#ifdef DL_SGEMM_AVX512
  if (!openblas_forced()) return "avx512";
#endif
  return "openblas";
}

void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
#ifdef DL_SGEMM_AVX512
  if (!openblas_forced()) {
    if (k <= 0) {  // no products: C = beta * C
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
      return;
    }
    return sgemm_avx512(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  }
#endif
  sgemm_openblas(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace dl::cpu
