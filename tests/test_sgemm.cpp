// The single-threaded SGEMM (core/cpu/sgemm.cpp) against a float64 reference: every transpose
// combination, odd shapes that leave partial register tiles, shapes that cross the depth, row and
// column blocks, leading dimensions wider than the matrices, beta 0 (C never read), 1 and 0.5.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu/sgemm.h"
#include "tests/testing.h"

using namespace dl;

namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k, pad;  // pad: extra columns in every leading dimension
  float beta;
};

void check(const Problem& p, uint64_t seed) {
  const int64_t lda = (p.ta ? p.m : p.k) + p.pad, ldb = (p.tb ? p.k : p.n) + p.pad, ldc = p.n + p.pad;
  const int64_t a_rows = p.ta ? p.k : p.m, b_rows = p.tb ? p.n : p.k;
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> a(size_t(a_rows * lda)), b(size_t(b_rows * ldb)), c(size_t(p.m * ldc));
  for (auto& v : a) v = u(gen);
  for (auto& v : b) v = u(gen);
  // beta == 0 must not read C: fill it with NaN, which would poison any product that did.
  for (auto& v : c) v = p.beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : u(gen);
  const std::vector<float> c0 = c;
  auto opa = [&](int64_t i, int64_t q) { return double(p.ta ? a[q * lda + i] : a[i * lda + q]); };
  auto opb = [&](int64_t q, int64_t j) { return double(p.tb ? b[j * ldb + q] : b[q * ldb + j]); };

  cpu::sgemm(p.ta, p.tb, p.m, p.n, p.k, a.data(), lda, b.data(), ldb, p.beta, c.data(), ldc);

  double worst = 0;
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = size_t(i * ldc + j);
      if (j >= p.n) {  // padding columns are untouched
        if (std::isnan(c0[at]))
          REQUIRE(std::isnan(c[at]));
        else
          REQUIRE(c[at] == c0[at]);
        continue;
      }
      double want = p.beta == 0.f ? 0.0 : double(p.beta) * double(c0[at]), scale = std::fabs(want);
      for (int64_t q = 0; q < p.k; ++q) {
        want += opa(i, q) * opb(q, j);
        scale += std::fabs(opa(i, q) * opb(q, j));
      }
      const double err = std::fabs(double(c[at]) - want) / std::max(scale, 1e-30);
      REQUIRE(std::isfinite(c[at]));
      worst = std::max(worst, err);
    }
  INFO("backend " << cpu::sgemm_backend() << " ta " << p.ta << " tb " << p.tb << " m " << p.m << " n " << p.n
                  << " k " << p.k << " beta " << p.beta);
  REQUIRE(worst < 4e-6);  // float rounding, relative to the sum of |products|
}

}  // namespace

TEST_CASE("sgemm matches a float64 reference on odd shapes, all transposes") {
  const int64_t shapes[][3] = {{1, 1, 1},  {13, 31, 7},   {14, 32, 16}, {15, 33, 17},
                               {29, 65, 300}, {170, 45, 513}, {3, 100, 1}};
  uint64_t seed = 1;
  for (auto s : shapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.f, 1.f, 0.5f}) check({bool(t & 1), bool(t & 2), s[0], s[1], s[2], 3, beta}, seed++);
}

TEST_CASE("sgemm crosses its column blocks and handles empty products") {
  check({false, true, 20, 2100, 40, 0, 0.f}, 7);  // wider than one packed B block
  check({true, false, 20, 2100, 40, 5, 1.f}, 8);
  // k == 0: C = beta * C; beta == 0 gives zeros even over NaN
  std::vector<float> c = {1.f, 2.f, std::numeric_limits<float>::quiet_NaN(), 4.f};
  cpu::sgemm(false, false, 2, 2, 0, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
  REQUIRE(c[0] == 0.5f);
  REQUIRE(c[1] == 1.f);
  REQUIRE(std::isnan(c[2]));
  cpu::sgemm(false, false, 2, 2, 0, nullptr, 1, nullptr, 2, 0.f, c.data(), 2);
  for (float v : c) REQUIRE(v == 0.f);
}
