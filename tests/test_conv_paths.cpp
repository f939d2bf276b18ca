// Every fast CPU convolution path (pointwise GEMM, im2col + GEMM, depthwise) against the direct
// reference on random odd shapes, forward + grad-input + grad-weight, in float and double; the
// dispatcher through the conv2d op; and finite-difference gradient checks through each path.
#include <omp.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <vector>

#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_fast.h"
#include "core/cpu/kernels.h"
#include "tests/testing.h"

using namespace dl;
using dl::testing::gradcheck;
using dl::testing::param;

namespace {

template <class T>
std::vector<T> random_vec(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& e : v) e = T(nd(gen));
  return v;
}

// Worst relative error, relative to max(|want|, mean |want|) so near-zero sums from cancellation
// do not dominate; reports the worst element and its index.
template <class T>
void require_close(const std::vector<T>& got, const std::vector<T>& want, double tol, const char* what) {
  REQUIRE(got.size() == want.size());
  double mean = 0;
  for (T v : want) mean += std::fabs(double(v));
  mean = std::max(mean / double(std::max<size_t>(want.size(), 1)), 1e-30);
  double worst = 0;
  size_t wi = 0;
  bool nan = false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(double(got[i])) || std::isnan(double(want[i]))) {
      nan = true;
      wi = i;
      break;
    }
    const double e = std::fabs(double(got[i]) - double(want[i])) / std::max(std::fabs(double(want[i])), mean);
    if (e > worst) {
      worst = e;
      wi = i;
    }
  }
  INFO(what << ": worst rel error " << worst << " at index " << wi << " (got " << double(got[wi]) << ", want "
            << double(want[wi]) << ")" << (nan ? " NaN!" : ""));
  REQUIRE(!nan);
  REQUIRE(worst <= tol);
}

enum class Path { Pointwise, Im2col, Depthwise, Dispatch };

template <class T>
struct PathFns {
  std::function<void(T*, const T*, const T*, const T*, const ConvGeom&)> fwd;
  std::function<void(T*, const T*, const T*, const ConvGeom&)> bwd_input, bwd_weight;
};

template <class T>
PathFns<T> path_fns(Path p) {
  switch (p) {
    case Path::Pointwise:
      return {cpu::conv2d_fwd_pointwise<T>, cpu::conv2d_bwd_input_pointwise<T>,
              cpu::conv2d_bwd_weight_pointwise<T>};
    case Path::Im2col:
      return {cpu::conv2d_fwd_im2col<T>, cpu::conv2d_bwd_input_im2col<T>, cpu::conv2d_bwd_weight_im2col<T>};
    case Path::Depthwise:
      return {cpu::conv2d_fwd_depthwise<T>, cpu::conv2d_bwd_input_depthwise<T>,
              cpu::conv2d_bwd_weight_depthwise<T>};
    case Path::Dispatch:
      break;
  }
  return {cpu::conv2d_fwd<T>, cpu::conv2d_bwd_input<T>, cpu::conv2d_bwd_weight<T>};
}

// Runs forward, grad-input and grad-weight through `p` and through the reference and compares.
template <class T>
void check_path(Path p, const ConvGeom& g, bool bias, double tol, uint64_t seed) {
  const size_t nx = size_t(g.n * g.c_in * g.h * g.w), ny = size_t(g.n * g.c_out * g.h_out * g.w_out),
               nw = size_t(g.c_out * g.cin_per_group() * g.kh * g.kw);
  auto x = random_vec<T>(nx, seed), w = random_vec<T>(nw, seed + 1), gy = random_vec<T>(ny, seed + 2),
       b = random_vec<T>(size_t(g.c_out), seed + 3);
  const T* bp = bias ? b.data() : nullptr;
  auto fns = path_fns<T>(p);
  // Outputs start as NaN so an element a path forgets to write fails the comparison.
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> y(ny, nan), y_ref(ny, nan), gx(nx, nan), gx_ref(nx, nan), gw(nw, nan), gw_ref(nw, nan);
  fns.fwd(y.data(), x.data(), w.data(), bp, g);
  cpu::conv2d_fwd_direct(y_ref.data(), x.data(), w.data(), bp, g);
  require_close(y, y_ref, tol, "forward");
  fns.bwd_input(gx.data(), gy.data(), w.data(), g);
  cpu::conv2d_bwd_input_direct(gx_ref.data(), gy.data(), w.data(), g);
  require_close(gx, gx_ref, tol, "grad-input");
  fns.bwd_weight(gw.data(), gy.data(), x.data(), g);
  cpu::conv2d_bwd_weight_direct(gw_ref.data(), gy.data(), x.data(), g);
  require_close(gw, gw_ref, tol, "grad-weight");
}

template <class T>
double tol_for() {
  return sizeof(T) == 4 ? 1e-4 : 1e-10;
}

ConvGeom geom(const Shape& x, int64_t c_out, int64_t k, const Conv2dOptions& o) {
  return conv_geometry(x, {c_out, x[1] / o.groups, k, k}, o);
}

}  // namespace

TEST_CASE("pointwise 1x1 GEMM vs direct, 1x5x17x34 and 2x3x9x7, float and double", "[conv][paths]") {
  const struct {
    Shape x;
    int64_t c_out;
  } cases[] = {{{1, 5, 17, 34}, 7}, {{2, 3, 9, 7}, 4}, {{3, 8, 1, 5}, 2}};
  for (const auto& c : cases)
    for (bool bias : {false, true}) {
      ConvGeom g = geom(c.x, c.c_out, 1, Conv2dOptions{});
      REQUIRE(g.is_pointwise());
      DYNAMIC_SECTION("pointwise " << shape_str(c.x) << " -> " << c.c_out << " bias=" << bias) {
        check_path<float>(Path::Pointwise, g, bias, tol_for<float>(), 11);
        check_path<double>(Path::Pointwise, g, bias, tol_for<double>(), 12);
      }
    }
}

TEST_CASE("pointwise grad-weight with a long depth and few channels: depth split over threads", "[conv][paths]") {
  // 40x45 = 1800 pixels of depth for a 5x6 weight: too few rows or columns to split, so the
  // threads take slices of the depth (three threads, whatever the machine, to get uneven slices).
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  ConvGeom g = geom({2, 6, 40, 45}, 5, 1, Conv2dOptions{});
  check_path<float>(Path::Pointwise, g, false, tol_for<float>(), 13);
  check_path<double>(Path::Pointwise, g, true, tol_for<double>(), 14);
  omp_set_num_threads(saved);
}

TEST_CASE("dense im2col k=1,3,5,7 s=1,2 d=1,2,6 'same' vs direct, float and double", "[conv][paths]") {
  const struct {
    Shape x;
    int64_t c_out;
  } shapes[] = {{{1, 5, 17, 34}, 3}, {{2, 3, 9, 7}, 4}};
  for (const auto& sh : shapes)
    for (int64_t k : {1, 3, 5, 7})
      for (int64_t s : {1, 2})
        for (int64_t d : {1, 2, 6}) {
          if (k == 1 && d > 1) continue;
          DYNAMIC_SECTION("im2col k=" << k << " s=" << s << " d=" << d << " " << shape_str(sh.x)) {
            ConvGeom g = geom(sh.x, sh.c_out, k, Conv2dOptions::same(k, s, d));
            const bool bias = (k + s + d) % 2 == 0;
            check_path<float>(Path::Im2col, g, bias, tol_for<float>(), 21);
            check_path<double>(Path::Im2col, g, bias, tol_for<double>(), 22);
          }
        }
}

TEST_CASE("dense im2col without and with extra padding, non-square kernel and stride", "[conv][paths]") {
  Conv2dOptions valid;  // no padding
  valid.stride_h = 2;
  valid.stride_w = 1;
  Conv2dOptions wide;  // more padding than 'same'
  wide.pad_h = 4;
  wide.pad_w = 3;
  wide.dil_h = 2;
  const ConvGeom gs[] = {conv_geometry({2, 3, 11, 13}, {4, 3, 3, 5}, valid),
                         conv_geometry({1, 2, 9, 10}, {3, 2, 3, 3}, wide)};
  for (size_t i = 0; i < 2; ++i)
    DYNAMIC_SECTION("im2col " << (i ? "pad 4x3 d=2x1 3x3 1x2x9x10" : "valid 3x5 s=2x1 2x3x11x13")) {
      check_path<float>(Path::Im2col, gs[i], true, tol_for<float>(), 31);
      check_path<double>(Path::Im2col, gs[i], false, tol_for<double>(), 32);
    }
}

TEST_CASE("depthwise k=1,3,5,7,9 s=1,2 d=1,2,6,18 'same' vs direct, float and double", "[conv][paths]") {
  // The 23x120 input gives the dilation-18 kernels an interior; 9 exercises the generic fallback.
  const Shape shapes[] = {{1, 5, 17, 34}, {2, 3, 9, 7}, {1, 2, 23, 120}};
  for (const auto& x : shapes)
    for (int64_t k : {1, 3, 5, 7, 9})
      for (int64_t s : {1, 2})
        for (int64_t d : {1, 2, 6, 18}) {
          if ((k == 1 && d > 1) || (d == 18 && x[3] < 100) || (d < 18 && x[3] == 120)) continue;
          DYNAMIC_SECTION("depthwise k=" << k << " s=" << s << " d=" << d << " " << shape_str(x)) {
            ConvGeom g = geom(x, x[1], k, Conv2dOptions::same(k, s, d, x[1]));
            REQUIRE(g.is_depthwise());
            const bool bias = (k + s) % 2 == 0;
            check_path<float>(Path::Depthwise, g, bias, tol_for<float>(), 41);
            check_path<double>(Path::Depthwise, g, bias, tol_for<double>(), 42);
          }
        }
}

TEST_CASE("depthwise channel blocks (>= one vector of channels) vs direct", "[conv][paths]") {
  // 19 channels: one or two whole channel blocks plus a remainder through the plane kernels.
  for (int64_t k : {3, 5, 7, 9})
    for (int64_t s : {1, 2})
      for (int64_t d : {1, 2, 6}) {
        DYNAMIC_SECTION("depthwise blocks k=" << k << " s=" << s << " d=" << d << " 2x19x11x13") {
          const Shape x{2, 19, 11, 13};
          ConvGeom g = geom(x, 19, k, Conv2dOptions::same(k, s, d, 19));
          check_path<float>(Path::Depthwise, g, d == 1, tol_for<float>(), 91);
          check_path<double>(Path::Depthwise, g, d == 2, tol_for<double>(), 92);
        }
      }
  Conv2dOptions wide;  // padding beyond (k - 1) * d: the grad-input gather sees negative padding
  wide.groups = 17;
  wide.pad_h = 4;
  wide.pad_w = 5;
  DYNAMIC_SECTION("depthwise blocks 3x3 pad 4x5 1x17x6x9") {
    ConvGeom g = conv_geometry({1, 17, 6, 9}, {17, 1, 3, 3}, wide);
    check_path<float>(Path::Depthwise, g, true, tol_for<float>(), 93);
    check_path<double>(Path::Depthwise, g, true, tol_for<double>(), 94);
  }
}

TEST_CASE("depthwise without padding, extra padding, non-square kernel and stride", "[conv][paths]") {
  Conv2dOptions valid;
  valid.groups = 4;
  valid.stride_h = 1;
  valid.stride_w = 2;
  Conv2dOptions wide;
  wide.groups = 3;
  wide.pad_h = wide.pad_w = 5;  // larger than (k - 1) * d: negative padding in the grad-input gather
  Conv2dOptions sq;
  sq.groups = 2;
  sq.stride_h = sq.stride_w = 2;
  sq.pad_h = 0;
  sq.pad_w = 3;
  const ConvGeom gs[] = {conv_geometry({2, 4, 12, 15}, {4, 1, 3, 5}, valid),
                         conv_geometry({1, 3, 8, 11}, {3, 1, 3, 3}, wide),
                         conv_geometry({1, 2, 16, 19}, {2, 1, 7, 7}, sq)};
  const char* names[] = {"depthwise valid 3x5 s=1x2 2x4x12x15", "depthwise 3x3 pad 5 1x3x8x11",
                         "depthwise 7x7 s=2 pad 0x3 1x2x16x19"};
  for (size_t i = 0; i < 3; ++i) DYNAMIC_SECTION(names[i]) {
      REQUIRE(gs[i].is_depthwise());
      check_path<float>(Path::Depthwise, gs[i], true, tol_for<float>(), 51);
      check_path<double>(Path::Depthwise, gs[i], false, tol_for<double>(), 52);
    }
}

TEST_CASE("depthwise vs the generic grouped conv: same numbers through both", "[conv][paths]") {
  // The depthwise kernels and the dense im2col path on each channel alone must agree with each
  // other and with the grouped direct loop (which check_path compares against).
  for (int64_t k : {3, 7})
    for (int64_t s : {1, 2})
      DYNAMIC_SECTION("depthwise vs per-channel dense k=" << k << " s=" << s << " d=2 1x4x13x21") {
        const Shape xs{1, 4, 13, 21};
        ConvGeom g = geom(xs, 4, k, Conv2dOptions::same(k, s, 2, 4));
        ConvGeom g1 = geom({1, 1, 13, 21}, 1, k, Conv2dOptions::same(k, s, 2, 1));
        auto x = random_vec<double>(size_t(4 * 13 * 21), 61), w = random_vec<double>(size_t(4 * k * k), 62);
        auto gy = random_vec<double>(size_t(4 * g.h_out * g.w_out), 63);
        const int64_t hw = 13 * 21, ohw = g.h_out * g.w_out;
        std::vector<double> y(4 * ohw), y1(4 * ohw), gx(4 * hw), gx1(4 * hw), gw(4 * k * k), gw1(4 * k * k);
        cpu::conv2d_fwd_depthwise(y.data(), x.data(), w.data(), (const double*)nullptr, g);
        cpu::conv2d_bwd_input_depthwise(gx.data(), gy.data(), w.data(), g);
        cpu::conv2d_bwd_weight_depthwise(gw.data(), gy.data(), x.data(), g);
        for (int64_t c = 0; c < 4; ++c) {
          cpu::conv2d_fwd_im2col(y1.data() + c * ohw, x.data() + c * hw, w.data() + c * k * k,
                                 (const double*)nullptr, g1);
          cpu::conv2d_bwd_input_im2col(gx1.data() + c * hw, gy.data() + c * ohw, w.data() + c * k * k, g1);
          cpu::conv2d_bwd_weight_im2col(gw1.data() + c * k * k, gy.data() + c * ohw, x.data() + c * hw, g1);
        }
        require_close(y, y1, 1e-12, "forward");
        require_close(gx, gx1, 1e-12, "grad-input");
        require_close(gw, gw1, 1e-12, "grad-weight");
        check_path<double>(Path::Depthwise, g, false, 1e-12, 64);
      }
}

TEST_CASE("dispatcher: conv2d op matches the direct reference for every geometry class", "[conv][paths]") {
  struct Case {
    const char* name;
    Shape x, w;
    Conv2dOptions o;
  };
  const Case cases[] = {
      {"pointwise 2x6x7x9 -> 5", {2, 6, 7, 9}, {5, 6, 1, 1}, Conv2dOptions{}},
      {"dense k=3 s=2 d=1 1x5x17x34", {1, 5, 17, 34}, {4, 5, 3, 3}, Conv2dOptions::same(3, 2, 1, 1)},
      {"depthwise k=7 s=1 d=2 1x5x17x34", {1, 5, 17, 34}, {5, 1, 7, 7}, Conv2dOptions::same(7, 1, 2, 5)},
      {"grouped k=3 g=2 2x4x9x7", {2, 4, 9, 7}, {6, 2, 3, 3}, Conv2dOptions::same(3, 1, 1, 2)},
      {"depthwise 1x1 single channel 1x1x5x6", {1, 1, 5, 6}, {1, 1, 1, 1}, Conv2dOptions{}},
  };
  for (const auto& c : cases) DYNAMIC_SECTION("dispatch " << c.name) {
      ConvGeom g = conv_geometry(c.x, c.w, c.o);
      check_path<float>(Path::Dispatch, g, true, tol_for<float>(), 71);
      check_path<double>(Path::Dispatch, g, true, tol_for<double>(), 72);
      Rng rng(73);
      Tensor x = Tensor::randn(c.x, rng), w = Tensor::randn(c.w, rng), b = Tensor::randn({c.w[0]}, rng);
      Tensor y = conv2d(x, w, b, c.o);
      Tensor y_ref = Tensor::empty(y.shape());
      cpu::conv2d_fwd_direct(y_ref.data<float>(), x.data<float>(), w.data<float>(), b.data<float>(), g);
      require_close(y.to_vector<float>(), y_ref.to_vector<float>(), tol_for<float>(), "conv2d op");
    }
}

TEST_CASE("gradcheck (float64) through each fast path", "[conv][paths][grad]") {
  struct Case {
    const char* name;
    Shape x, w;
    Conv2dOptions o;
  };
  const Case cases[] = {
      {"pointwise 2x3x5x4 -> 2", {2, 3, 5, 4}, {2, 3, 1, 1}, Conv2dOptions{}},
      {"im2col k=3 s=2 d=2 1x2x7x6 -> 3", {1, 2, 7, 6}, {3, 2, 3, 3}, Conv2dOptions::same(3, 2, 2, 1)},
      {"depthwise k=3 s=1 d=2 2x2x7x6", {2, 2, 7, 6}, {2, 1, 3, 3}, Conv2dOptions::same(3, 1, 2, 2)},
      {"depthwise k=5 s=2 d=1 1x2x9x8", {1, 2, 9, 8}, {2, 1, 5, 5}, Conv2dOptions::same(5, 2, 1, 2)},
      {"depthwise k=7 s=1 d=1 1x1x9x10", {1, 1, 9, 10}, {1, 1, 7, 7}, Conv2dOptions::same(7, 1, 1, 1)},
      {"depthwise k=4 (generic) s=1 d=1 1x2x6x7",
       {1, 2, 6, 7},
       {2, 1, 4, 4},
       Conv2dOptions::same(4, 1, 1, 2)},
      {"depthwise channel block k=3 s=1 d=1 1x9x4x5",
       {1, 9, 4, 5},
       {9, 1, 3, 3},
       Conv2dOptions::same(3, 1, 1, 9)},
  };
  for (const auto& c : cases) DYNAMIC_SECTION("gradcheck " << c.name) {
      Rng rng(81);
      Tensor x = param(c.x, rng), w = param(c.w, rng, 0.5), b = param({c.w[0]}, rng);
      gradcheck([&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], c.o); }, {x, w, b});
    }
}
